"""Events of the model registry, published by the experiments service (source
``/runyard/experiments``); the key is the registered model's id.

Every payload carries ``owner_id`` (the webhooks service fans events out to the owner's
endpoints by it), the model's id and name, and the owner's names from the experiments
service's read model of users (``null`` while it has not heard of the user). Versions carry
their lineage: the experiment they were made from and its headline metric at that time.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from runyard.shared.events import EventPayload


class _ModelEvent(EventPayload):
    model_id: uuid.UUID
    model_name: str
    owner_id: uuid.UUID
    owner_username: str | None = None
    owner_email: str | None = None
    owner_full_name: str | None = None


class ModelRegistered(_ModelEvent):
    """A registered model was created (it has no versions yet)."""

    event_type = "model.registered"
    description: str | None = None

    def summary(self) -> str:
        return f'Model "{self.model_name}" registered'


class _VersionEvent(_ModelEvent):
    #: the version's number (``version`` is the contract's own version)
    model_version: int
    version_id: uuid.UUID
    #: lineage: the experiment the version was made from (null: unknown or gone)
    experiment_id: uuid.UUID | None = None
    experiment_name: str | None = None
    #: the experiment's headline metric when the version was made (null: none)
    metric_name: str | None = None
    metric_value: float | None = None

    def lineage(self) -> str:
        """The lineage in words: "val_accuracy 0.962 from experiment pump cnn 7" (what is known)."""
        metric = (
            f"{self.metric_name} {self.metric_value:.4g}"
            if self.metric_name and self.metric_value is not None
            else ""
        )
        source = f"experiment {self.experiment_name}" if self.experiment_name else ""
        return f"{metric} from {source}" if metric and source else metric or source

    def summary(self) -> str:
        """One line that says what happened, for titles, digests and chat messages."""
        raise NotImplementedError


class ModelVersionCreated(_VersionEvent):
    """A version was made from an experiment's artifact, or (``logged_model_id``; no
    ``experiment_id``, ``artifact_path`` empty) from the files of an MLflow logged model made
    outside a run. ``status`` is ``ready`` (the files are there, ``size`` and ``sha256``
    recorded), ``pending`` (not uploaded yet) or ``failed``."""

    event_type = "model_version.created"
    artifact_path: str
    logged_model_id: str | None = None
    status: str
    size: int | None = None
    sha256: str | None = None

    def summary(self) -> str:
        lineage = self.lineage()
        line = f"{self.model_name} v{self.model_version} registered"
        line += f" ({lineage})" if lineage else ""
        return line if self.status != "failed" else f"{line}: its artifact is missing"


class ModelVersionAliasSet(_VersionEvent):
    """``alias`` now points at ``model_version``; ``previous_version`` is the one it left (null: the
    alias is new)."""

    event_type = "model_version.alias_set"
    alias: str
    previous_version: int | None = None

    def summary(self) -> str:
        lineage = self.lineage()
        if self.previous_version is None:
            line = f"{self.alias} of {self.model_name} is now v{self.model_version}"
        else:
            line = (
                f"{self.alias} of {self.model_name} moved from v{self.previous_version} "
                f"to v{self.model_version}"
            )
        return f"{line} ({lineage})" if lineage else line


class ModelVersionAliasRemoved(_VersionEvent):
    """``alias`` no longer exists; it pointed at ``model_version``."""

    event_type = "model_version.alias_removed"
    alias: str

    def summary(self) -> str:
        return f"{self.alias} of {self.model_name} removed (it was v{self.model_version})"


class ModelVersionArchived(_VersionEvent):
    """The version is archived: kept, readable, no longer offered by default lists."""

    event_type = "model_version.archived"

    def summary(self) -> str:
        return f"{self.model_name} v{self.model_version} archived"


class ModelVersionDriftDetected(_ModelEvent):
    """The confidence distribution of the version's recent predictions (``window_from`` to
    ``window_to``) moved away from that of its first day of predictions (``baseline_from`` to
    ``baseline_to``): their population stability index ``psi`` reached ``threshold``. Checked
    periodically; at most one event per version per cooldown (``EXPERIMENTS_DRIFT_COOLDOWN_S``)."""

    event_type = "model_version.drift_detected"
    #: the version's number (``version`` is the contract's own version)
    model_version: int
    version_id: uuid.UUID
    psi: float
    threshold: float
    window_from: datetime
    window_to: datetime
    #: predictions with a confidence in the window and in the baseline
    window_count: int
    baseline_from: datetime
    baseline_to: datetime
    baseline_count: int
