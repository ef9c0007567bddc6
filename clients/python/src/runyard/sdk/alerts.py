"""Alerts from Python: the alerts your alert rules fired (and cleared) for your experiments.

``run.alerts()`` returns those of one run; ``runyard.alerts(experiment_id=...)`` those of any
experiment (or of all of them). Rules are evaluated by the server as epochs arrive, a moment
after they were logged: ``run.alerts()`` first waits (at most ``RUNYARD_FLUSH_TIMEOUT``) for the
server to have every epoch the run logged, and returns what has been evaluated by then.
Rules themselves are made in the web console or with ``POST /api/v1/alert-rules``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from runyard.sdk.api import Api, RunyardError, retrying
from runyard.sdk.config import Settings

if TYPE_CHECKING:
    from runyard.sdk.run import Run

STATUSES = ("triggered", "resolved")


@dataclass(frozen=True)
class Alert:
    """One alert: a rule fired (``status`` ``"triggered"``) or a re-arming rule's condition
    cleared (``"resolved"``) for an experiment, at ``epoch`` (None for a lifecycle rule)."""

    id: str
    rule_id: str
    rule_name: str
    #: threshold, not_finite, plateau, divergence, gap or lifecycle
    kind: str
    #: info, warning or critical
    severity: str
    status: str
    experiment_id: str
    experiment_name: str
    epoch: int | None
    #: "val_loss diverged in pump-cnn: +38 % over 5 epochs (epoch 41)"
    summary: str
    created_at: datetime
    #: the metric values behind it (the metric, its reference value, the change ...)
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Alert:
        return cls(
            id=str(item["id"]),
            rule_id=str(item["rule_id"]),
            rule_name=str(item.get("rule_name") or ""),
            kind=str(item.get("kind") or ""),
            severity=str(item.get("severity") or ""),
            status=str(item.get("status") or ""),
            experiment_id=str(item["experiment_id"]),
            experiment_name=str(item.get("experiment_name") or ""),
            epoch=item.get("epoch"),
            summary=str(item.get("summary") or ""),
            created_at=parse_time(str(item.get("created_at") or "")),
            values=dict(item.get("values") or {}),
        )

    def __str__(self) -> str:
        return f"[{self.severity}] {self.summary}"


def parse_time(text: str) -> datetime:
    """An API timestamp (``...Z`` or ``...+00:00``, any fraction) as an aware datetime; Python
    3.9's ``fromisoformat`` reads neither ``Z`` nor fractions other than 3 or 6 digits."""
    value = text.strip().replace("Z", "+00:00")
    head, sep, tail = value.partition(".")
    if sep:
        digits = "".join(c for c in tail if c.isdigit())
        value = f"{head}.{(digits + '000000')[:6]}{tail[len(digits) :]}"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RunyardError(f"the server sent an unreadable time {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def list_alerts(
    api: Api,
    *,
    experiment_id: str | None = None,
    rule_id: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[Alert]:
    """Alerts newest first, at most ``limit`` (None: all)."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {list(STATUSES)} or None")
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    params = {"experiment_id": experiment_id, "rule_id": rule_id, "status": status}
    page_size = min(limit or 500, 500)

    def read() -> list[Alert]:
        found: list[Alert] = []
        for item in api.pages("/alerts", limit=page_size, **params):
            found.append(Alert.from_api(item))
            if limit is not None and len(found) >= limit:
                break
        return found

    result: list[Alert] = retrying(read)
    return result


def alerts(
    experiment_id: str | None = None,
    *,
    rule_id: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> list[Alert]:
    """The alerts of ``experiment_id`` (None: of all your experiments), newest first; only
    those of ``rule_id``, only ``status`` ``"triggered"`` or ``"resolved"``, at most ``limit``.
    Raises ``ApiError`` when the server refuses (an unknown id is an empty list)."""
    settings = Settings.load(url=url, api_key=api_key, mode="online")
    if not settings.api_key:
        raise RunyardError("no API key: run `runyard login` or set RUNYARD_API_KEY")
    with Api(settings.url, settings.api_key, settings.timeout) as api:
        return list_alerts(
            api, experiment_id=experiment_id, rule_id=rule_id, status=status, limit=limit
        )


def run_alerts(run: Run, *, status: str | None = None, flush: bool = True) -> list[Alert]:
    """``Run.alerts``: the run's alerts, after waiting for the server to have its epochs."""
    if run.settings.mode != "online":
        raise RunyardError("an offline run has no alerts: `runyard sync` it first")
    if flush and run.finished is None:
        run.flush()
    experiment_id = run.id
    if experiment_id is None:
        raise RunyardError("the run is not on the server yet: it has no alerts")
    with Api(run.settings.url, run.settings.api_key, run.settings.timeout) as api:
        return list_alerts(api, experiment_id=experiment_id, status=status)
