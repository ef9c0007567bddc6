"""``runyard.init()`` / ``runyard.resume()`` and the ``Run`` a training script logs to.

``log()`` validates the metrics, appends one line to the run's write-ahead log and returns: no
network, no lock held by another thread for longer than that write. The sender thread does the
rest. Leaving the ``with`` block (or ``finish()``) writes the end of the run to the log and waits
at most ``RUNYARD_FLUSH_TIMEOUT`` seconds for the server to take everything.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from runyard.sdk import output
from runyard.sdk.api import Api, ApiError, RunyardError, Transient
from runyard.sdk.config import Settings
from runyard.sdk.sender import Sender
from runyard.sdk.upload import RUN_ID_KEY, TERMINAL, Uploader, create_experiment, new_meta
from runyard.sdk.wal import MAX_EPOCH, Metrics, RunDir, Writer, encode_run

if TYPE_CHECKING:
    from runyard.sdk.alerts import Alert

ENDS = {"completed": "complete", "failed": "fail", "cancelled": "cancel"}


class Run:
    """One experiment being trained. Use it as a context manager, or call ``finish()``."""

    def __init__(
        self,
        settings: Settings,
        run_dir: RunDir,
        *,
        name: str,
        experiment_id: str | None,
        next_epoch: int = 1,
        api: Api | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self._dir = run_dir
        self._lock = threading.Lock()
        self._metrics = Metrics(output.warn)
        self._file_lock = run_dir.lock()
        if self._file_lock is None:
            raise RunyardError(f"{run_dir.path} is in use by process {run_dir.holder()}")
        meta = run_dir.read_meta()
        meta["pid"] = os.getpid()
        run_dir.write_meta(meta)
        self._writer = Writer(run_dir.wal_path)
        self._next_epoch = next_epoch
        self._last_epoch: int | None = None
        self._last_values: dict[str, float] = {}
        self._since_kick = 0
        self._summary: dict[str, Any] = {}
        self._pid = os.getpid()
        self.finished: str | None = None
        self._sender: Sender | None = None
        self._api = api
        if settings.mode == "online":
            self._api = api or Api(settings.url, settings.api_key, settings.timeout)
            uploader = Uploader(self._api, run_dir, settings)
            self._sender = Sender(
                uploader,
                batch_seconds=settings.batch_seconds,
                heartbeat_seconds=settings.heartbeat_seconds,
                written=lambda: self._writer.offset,
                report=output.warn,
                sync=self._writer.sync,
            )
            self._sender.start()
        self._experiment_id = experiment_id
        _open_runs.add(self)

    # ------------------------------------------------------------------------------ identity
    @property
    def id(self) -> str | None:
        """The experiment's id on the server; None while it is not created there yet (offline,
        or the server was unreachable at ``init``)."""
        if self._sender is not None and self._sender.uploader.experiment_id:
            return self._sender.uploader.experiment_id
        return self._experiment_id

    @property
    def local_id(self) -> str:
        """The name of the run's local directory; ``runyard sync`` accepts it."""
        return self._dir.name

    @property
    def path(self) -> str:
        return str(self._dir.path)

    # ------------------------------------------------------------------------------- logging
    def log(self, metrics: Mapping[str, Any], epoch: int | None = None) -> None:
        """Record ``metrics`` (any names, numbers) for ``epoch`` (default: the previous one + 1).

        Logging the same epoch again adds to its metrics. Returns as soon as the epoch is in the
        local log; never raises for the server's sake.
        """
        values = self._metrics.clean(metrics)
        with self._lock:
            if self.finished is not None:
                output.warn_once("log-after-finish", "log() after the run finished is ignored")
                return
            if epoch is None:
                epoch = self._next_epoch
            elif not isinstance(epoch, int) or isinstance(epoch, bool):
                try:
                    epoch = _epoch(epoch)
                except (TypeError, ValueError) as exc:
                    output.warn_once("epoch-type", f"epoch {epoch!r} not logged: {exc}")
                    return
            if not 0 <= epoch <= MAX_EPOCH:
                output.warn_once("epoch", f"epoch {epoch} not logged: epochs are 0 to {MAX_EPOCH}")
                return
            if epoch == self._last_epoch:  # the epoch's line is always its whole state
                self._last_values.update(values)
                values = self._last_values
            else:
                self._last_epoch, self._last_values = epoch, values
            self._next_epoch = epoch + 1
            try:
                self._writer.append(encode_run(epoch, values))
            except OSError as exc:
                output.warn_once("disk", f"cannot write {self._dir.wal_path}: {exc}")
                return
            self._since_kick += 1
            if self._since_kick >= self.settings.batch_size and self._sender is not None:
                self._since_kick = 0
                self._sender.kick()

    def summary(
        self,
        final_metrics: Mapping[str, Any] | None = None,
        *,
        best_epoch: int | None = None,
        total_epochs: int | None = None,
    ) -> None:
        """What the completion reports (sent when the run ends)."""
        if final_metrics:
            merged = {
                **self._summary.get("final_metrics", {}),
                **self._metrics.clean(final_metrics),
            }
            self._summary["final_metrics"] = merged
        if best_epoch is not None:
            self._summary["best_epoch"] = int(best_epoch)
        if total_epochs is not None:
            self._summary["total_epochs"] = int(total_epochs)

    def tag(self, *tags: str) -> None:
        for tag in tags:
            self._op({"op": "tag", "tag": str(tag)})

    def untag(self, *tags: str) -> None:
        for tag in tags:
            self._op({"op": "untag", "tag": str(tag)})

    def note(self, text: str) -> None:
        """Set the experiment's notes (Markdown)."""
        self._op({"op": "update", "body": {"notes": str(text)}})

    def update(self, **fields: Any) -> None:
        """Change other fields of the experiment (description, model_path, config ...)."""
        self._op({"op": "update", "body": fields})

    def log_artifact(
        self, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Attach a file to the experiment at ``<artifact_path>/<its name>`` (MLflow's layout).
        The file is copied into the run's log at once (later changes to it do not count) and
        uploaded in the background like metrics: retried, and resumable with ``runyard sync``."""
        import mimetypes
        import shutil
        import uuid
        from pathlib import Path

        source = Path(local_path)
        if not source.is_file():
            raise FileNotFoundError(f"{source} is not a file")
        prefix = (artifact_path or "").strip("/")
        target = f"{prefix}/{source.name}" if prefix else source.name
        copy_id = uuid.uuid4().hex
        copy = self._dir.artifact_copy(copy_id)
        copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(source, copy)
        content_type = mimetypes.guess_type(source.name)[0]
        self._op({"op": "artifact", "file": copy_id, "path": target, "content_type": content_type})

    def log_artifacts(
        self, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Every file under ``local_dir`` (recursively), at ``<artifact_path>/<its path in the
        directory>``."""
        from pathlib import Path

        root = Path(local_dir)
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is not a directory")
        prefix = (artifact_path or "").strip("/")
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            parent = file.relative_to(root).parent.as_posix()
            parts = [part for part in (prefix, "" if parent == "." else parent) if part]
            self.log_artifact(file, "/".join(parts) or None)

    def _op(self, op: Mapping[str, Any]) -> None:
        import json

        with self._lock:
            if self.finished is None:
                self._writer.append((json.dumps(op, separators=(",", ":")) + "\n").encode())
        if self._sender is not None:
            self._sender.kick()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the server has every epoch logged so far (at most ``timeout``, default
        ``RUNYARD_FLUSH_TIMEOUT`` seconds). True when it has; offline always False."""
        if self._sender is None:
            return False
        return self._sender.flush(self.settings.flush_timeout if timeout is None else timeout)

    def alerts(self, status: str | None = None) -> list[Alert]:
        """The alerts this run's experiment triggered (and, for re-arming rules, resolved),
        newest first; ``status`` ``"triggered"`` or ``"resolved"`` for only those. Waits first
        for the server to have the epochs logged so far (see ``runyard.sdk.alerts``)."""
        from runyard.sdk.alerts import run_alerts

        return run_alerts(self, status=status)

    # ---------------------------------------------------------------------------------- end
    def finish(
        self, status: str = "completed", *, error: str | None = None, quiet: bool = False
    ) -> bool:
        """End the run: ``completed``, ``failed`` (with ``error``) or ``cancelled``. Waits at most
        ``RUNYARD_FLUSH_TIMEOUT`` seconds; True when the server has the whole run."""
        if status not in ENDS:
            raise ValueError(f"status must be one of {sorted(ENDS)}")
        with self._lock:
            if self.finished is not None or os.getpid() != self._pid:
                return self.finished is not None
            body: dict[str, Any] = {}
            if status in ("completed", "failed") and self._summary.get("final_metrics"):
                body["final_metrics"] = self._summary["final_metrics"]
            if status == "completed":
                body.update({k: v for k, v in self._summary.items() if k != "final_metrics"})
            elif status == "failed":
                body["error"] = (error or "failed")[-10000:]
            else:
                body["reason"] = (error or "cancelled")[:2000]
            self.finished = status
        self._op_end({"op": "end", "action": ENDS[status], "body": body})
        _open_runs.discard(self)
        return self._close(quiet)

    def _op_end(self, op: Mapping[str, Any]) -> None:
        import json

        self._writer.append((json.dumps(op, separators=(",", ":")) + "\n").encode())

    def _close(self, quiet: bool) -> bool:
        sent = False
        sender = self._sender
        if sender is not None:
            try:
                sent = sender.flush(self.settings.flush_timeout)
            except KeyboardInterrupt:
                output.warn("interrupted while sending the last epochs")
            sender.stop()
        unsent = 0 if sent else self._dir.unsent_epochs()
        self._writer.sync()
        self._writer.close()
        if self._file_lock is not None:
            self._file_lock.release()
        if self._api is not None:
            self._api.close()
        if sent:
            self._dir.remove()
        elif not quiet:
            output.unsent(self, unsent, sender.failing or sender.blocked if sender else None)
        return sent

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        status, error = outcome(exc_type, exc, tb)
        self.finish(status, error=error)

    def __repr__(self) -> str:
        return f"<runyard.Run {self.name!r} id={self.id} status={self.finished or 'open'}>"


def outcome(
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> tuple[str, str | None]:
    """How an exception (or none) ends a run: Ctrl-C cancels, any other error fails it."""
    if exc_type is None or exc is None:
        return "completed", None
    if issubclass(exc_type, KeyboardInterrupt):
        return "cancelled", "interrupted (Ctrl-C)"
    if isinstance(exc, SystemExit) and exc.code in (0, None):
        return "completed", None
    text = "".join(traceback.format_exception_only(exc_type, exc)).strip()
    trace = "".join(traceback.format_tb(tb)) if tb is not None else ""
    return "failed", f"{text}\n\n{trace}" if trace else text


def _epoch(value: Any) -> int:
    number = int(value)
    if number != value:
        raise ValueError(f"epoch must be a whole number, got {value!r}")
    return number


# --------------------------------------------------------------------------- init and resume
def init(
    name: str | None = None,
    *,
    model_type: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    project: str | None = None,
    tags: Sequence[str] = (),
    description: str | None = None,
    notes: str | None = None,
    best_metric: str | None = None,
    best_mode: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    mode: str | None = None,
) -> Run:
    """Start tracking a new experiment. A refused API key or invalid field raises at once
    (``AuthError``, ``ApiError``); an unreachable server does not: the run is kept locally and
    created on the server when it answers. ``dataset`` is a dataset id or the name of one of
    yours (created if you have none by that name); ``project`` likewise a project id or name."""
    import uuid

    settings = Settings.load(url=url, api_key=api_key, mode=mode)
    local_id = str(uuid.uuid4())
    body: dict[str, Any] = {
        "name": name or default_name(model_type),
        "model_type": model_type,
        "hyperparameters": dict(hyperparameters or {}),
        "config": {**dict(config or {}), RUN_ID_KEY: local_id},
        "tags": [str(t) for t in tags],
        "description": description,
        "notes": notes,
        "best_metric": best_metric,
        "best_mode": best_mode,
    }
    body = {k: v for k, v in body.items() if v is not None}
    create = {
        "body": body,
        "dataset": dataset,
        "project": project,
        "config": {RUN_ID_KEY: local_id},
    }
    experiment: dict[str, Any] | None = None
    api: Api | None = None
    if settings.mode == "online":
        api = Api(settings.url, settings.api_key, settings.timeout)
        try:
            experiment = create_experiment(api, body, dataset, project)
        except Transient as exc:
            output.warn(f"{exc}; this run is kept locally and created on the server later")
        except BaseException:
            api.close()
            raise
    meta = new_meta(settings, experiment_id=experiment["id"] if experiment else None, create=create)
    if experiment:
        meta["name"] = experiment["name"]
    run_dir = RunDir.create(settings.runs_dir, experiment["id"] if experiment else local_id, meta)
    return Run(
        settings,
        run_dir,
        name=str(experiment["name"] if experiment else body["name"]),
        experiment_id=experiment["id"] if experiment else None,
        api=api,
    )


def resume(
    experiment_id: str,
    *,
    url: str | None = None,
    api_key: str | None = None,
) -> Run:
    """Log to an existing experiment again (a paused one is resumed, a pending one started).
    Epochs then continue after the experiment's ``total_epochs``."""
    settings = Settings.load(url=url, api_key=api_key, mode="online")
    api = Api(settings.url, settings.api_key, settings.timeout)
    try:
        experiment = api.get(f"/experiments/{experiment_id}")
        status = experiment["status"]
        if status in TERMINAL:
            raise RunyardError(
                f"experiment {experiment_id} is {status}: a finished experiment takes no epochs"
            )
        action = {"paused": "resume", "pending": "start"}.get(status)
        if action:
            try:
                api.post(f"/experiments/{experiment_id}/{action}")
            except ApiError as exc:
                if exc.status != 409:
                    raise
    except BaseException:
        api.close()
        raise
    meta = new_meta(settings, experiment_id=str(experiment["id"]), create=None)
    meta["name"] = experiment["name"]
    run_dir = RunDir(settings.runs_dir / str(experiment["id"]))
    if not run_dir.exists():
        run_dir = RunDir.create(settings.runs_dir, str(experiment["id"]), meta)
    elif any(op.get("op") == "end" for op in run_dir.ops()):
        api.close()
        raise RunyardError(
            f"an earlier run of experiment {experiment_id} ended but is not all on the server: "
            f"upload it first with `{output.sync_command(run_dir.name)}`"
        )
    return Run(
        settings,
        run_dir,
        name=str(experiment["name"]),
        experiment_id=str(experiment["id"]),
        next_epoch=int(experiment.get("total_epochs") or 0) + 1,
        api=api,
    )


def default_name(model_type: str | None) -> str:
    import datetime

    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return f"{model_type or 'run'} {stamp}"


# --------------------------------------------------------------------- runs left open at exit
_open_runs: set[Run] = set()
_uncaught: list[tuple[Any, Any, Any]] = []
_previous_hook = sys.excepthook


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    _uncaught.append((exc_type, exc, tb))
    _previous_hook(exc_type, exc, tb)


def _at_exit() -> None:
    """A run still open when the interpreter exits ends as its script did: failed after an
    uncaught exception, cancelled after Ctrl-C, else completed."""
    exc_type, exc, tb = _uncaught[-1] if _uncaught else (None, None, None)
    status, error = outcome(exc_type, exc, tb)
    for run in list(_open_runs):
        run.finish(status, error=error)


sys.excepthook = _excepthook
atexit.register(_at_exit)
