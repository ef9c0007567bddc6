"""HPO campaigns from a training script: ask for a trial, train it, report, prune.

    for trial in runyard.hpo(campaign_id):
        model = build(**trial.params)
        for epoch in range(1, 51):
            trial.report({"val_accuracy": evaluate(model)}, epoch=epoch)
            if trial.should_prune():
                break

Each trial is a ``Run`` on the experiment the campaign created for it. Asking for the next trial
ends the previous one: completed, or cancelled when the pruner stopped it (the campaign records
it as pruned). Leaving the loop early (``break`` outside a pruned trial, an exception) fails the
trial being trained; ``with trial:`` inside the loop gives the exception's text instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from runyard.sdk import output
from runyard.sdk.api import Api, ApiError, Transient
from runyard.sdk.config import Settings
from runyard.sdk.run import Run
from runyard.sdk.upload import new_meta
from runyard.sdk.wal import RunDir

#: how long ``should_prune`` waits for the sender before it answers without the server
PRUNE_FLUSH_TIMEOUT = 10.0


class Trial(Run):
    """A ``Run`` with the campaign's suggestion: ``params``, ``number``, ``hyperparameters``."""

    campaign_id: str = ""
    number: int = 0
    params: dict[str, Any]
    hyperparameters: dict[str, Any]
    pruned_at: int | None = None

    def report(self, metrics: Mapping[str, Any], epoch: int | None = None) -> None:
        """``log()`` under Optuna's name."""
        self.log(metrics, epoch)

    def should_prune(self) -> bool:
        """Whether the campaign's pruner stops this trial now, given the epochs reported so far.
        Waits for the server to have them (at most 10 s); without a server it answers False."""
        sender = self._sender
        if sender is None or self.id is None or not sender.healthy:
            return False
        if not sender.flush(min(PRUNE_FLUSH_TIMEOUT, self.settings.flush_timeout)):
            return False
        try:
            answer = sender.uploader.api.get(f"/experiments/{self.id}/should-prune")
        except (Transient, ApiError) as exc:
            output.warn_once("should-prune", f"should-prune: {exc}; the trial goes on")
            return False
        if answer.get("should_prune"):
            self.pruned_at = answer.get("step")
            return True
        return False

    def finish(
        self, status: str = "completed", *, error: str | None = None, quiet: bool = False
    ) -> bool:
        if self.pruned_at is not None and status == "completed":
            status, error = "cancelled", f"pruned at epoch {self.pruned_at}"
        return super().finish(status, error=error, quiet=quiet)


def _suggest(api: Api, campaign_id: str, patience: float) -> dict[str, Any] | None:
    """The next suggestion; None when the campaign has no more (budget spent, ended)."""
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            suggestion: dict[str, Any] = api.post(f"/hpo-campaigns/{campaign_id}/suggest")
            return suggestion
        except ApiError as exc:
            if exc.status == 409:
                return None
            raise
        except Transient:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 8.0)


def hpo(
    campaign_id: str,
    *,
    url: str | None = None,
    api_key: str | None = None,
    max_trials: int | None = None,
) -> Iterator[Trial]:
    """Trials of the campaign until its budget is spent (or ``max_trials`` of them)."""
    settings = Settings.load(url=url, api_key=api_key, mode="online")
    asked = 0
    with Api(settings.url, settings.api_key, settings.timeout) as api:
        while max_trials is None or asked < max_trials:
            suggestion = _suggest(api, campaign_id, max(settings.flush_timeout, 5.0))
            if suggestion is None:
                return
            asked += 1
            trial = _trial(settings, campaign_id, suggestion)
            try:
                yield trial
            except GeneratorExit:
                if trial.finished is None:
                    trial.finish(
                        "cancelled" if trial.pruned_at is not None else "failed",
                        error="the HPO loop was left while this trial was being trained",
                    )
                raise
            if trial.finished is None:
                trial.finish()


def _trial(settings: Settings, campaign_id: str, suggestion: Mapping[str, Any]) -> Trial:
    experiment = suggestion["experiment"]
    experiment_id = str(experiment["id"])
    meta = new_meta(settings, experiment_id=experiment_id, create=None)
    meta["name"] = experiment["name"]
    run_dir = RunDir.create(settings.runs_dir, experiment_id, meta)
    api = Api(settings.url, settings.api_key, settings.timeout)
    if experiment.get("status") == "pending":
        with contextlib.suppress(ApiError, Transient):  # the first epoch starts it as well
            api.post(f"/experiments/{experiment_id}/start")
    trial = Trial(
        settings, run_dir, name=str(experiment["name"]), experiment_id=experiment_id, api=api
    )
    trial.campaign_id = campaign_id
    trial.number = int(suggestion["trial_number"])
    trial.params = dict(suggestion.get("params") or {})
    trial.hyperparameters = dict(experiment.get("hyperparameters") or {})
    return trial
