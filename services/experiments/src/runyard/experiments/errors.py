"""Every refusal of the experiments service, each defined once with its status, title and
detail (rendered as problem+json by the shared handlers)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from runyard.shared.http import ProblemError

# --- 4xx of any feature ------------------------------------------------------------------------


class NotFound(ProblemError):
    """No such row, or another user's: the same 404 (ids of others' rows leak nothing)."""

    def __init__(self, what: str) -> None:
        super().__init__(404, "Not Found", f"No such {what}.")


class BadRequest(ProblemError):
    def __init__(self, detail: str, *, loc: list[str | int]) -> None:
        super().__init__(
            400, "Bad Request", detail, errors=[{"loc": loc, "msg": detail, "type": "value_error"}]
        )


class Conflict(ProblemError):
    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(409, "Conflict", detail, **extra)


class NameTaken(Conflict):
    """Names of datasets, experiments, tags, saved searches and campaigns are unique per owner."""

    def __init__(self, what: str, name: str, *, field: str = "name") -> None:
        super().__init__(f"You already have {what} named {name!r}.", field=field)


class ValidationFailed(ProblemError):
    """A 422 shaped like FastAPI's own, for a rule the request models cannot express."""

    def __init__(
        self,
        detail: str,
        *,
        loc: list[str | int],
        msg: str | None = None,
        type_: str = "value_error",
    ) -> None:
        errors = [{"loc": loc, "msg": detail if msg is None else msg, "type": type_}]
        super().__init__(422, "Validation failed", detail, errors=errors)


class InvalidBody(ProblemError):
    """A body read by hand (a form, an upload's fields) that does not match its model."""

    def __init__(self, detail: str, exc: ValidationError) -> None:
        errors = [
            {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        super().__init__(422, "Validation failed", detail, errors=errors)


class NotNullable(ProblemError):
    """A PATCH that sets fields to null which cannot be null."""

    def __init__(self, fields: list[str]) -> None:
        super().__init__(
            422,
            "Validation failed",
            f"{', '.join(fields)} cannot be null.",
            errors=[
                {"loc": ["body", k], "msg": "may not be null", "type": "value_error"}
                for k in fields
            ],
        )


class ContentTooLarge(ProblemError):
    def __init__(self, detail: str, *, max_bytes: int) -> None:
        super().__init__(413, "Content Too Large", detail, max_bytes=max_bytes)


# --- datasets ----------------------------------------------------------------------------------


class UnknownDataset(ValidationFailed):
    """The dataset of an experiment or campaign: one its owner (or an admin) can change."""

    def __init__(self) -> None:
        super().__init__("No such dataset.", loc=["body", "dataset_id"], msg="no such dataset")


class DatasetInUse(Conflict):
    def __init__(self, experiments: int) -> None:
        super().__init__(
            f"{experiments} experiment(s) use this dataset; delete them or point them at another "
            "dataset first.",
            experiments=experiments,
        )


# --- tracking ----------------------------------------------------------------------------------


class InvalidTransition(Conflict):
    def __init__(self, action: str, status: str, allowed: list[str]) -> None:
        super().__init__(
            f"Cannot {action} an experiment that is {status}.",
            current_status=status,
            allowed_actions=allowed,
        )


class ExperimentFinished(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__(
            f"The experiment is {status}; it takes no more training runs.", current_status=status
        )


class RepeatedEpochs(ValidationFailed):
    def __init__(self, epochs: list[int]) -> None:
        super().__init__(
            f"Each epoch may appear once per request; repeated: {epochs[:20]}.",
            loc=["body", "runs"],
            msg="repeated epochs",
        )


class SlugTaken(Conflict):
    def __init__(self, slug: str) -> None:
        super().__init__(f"You already have a tag with the slug {slug!r}.", field="slug")


class EmptySlug(ValidationFailed):
    def __init__(self) -> None:
        super().__init__(
            "A tag needs at least one letter or digit.", loc=["path", "tag"], msg="empty slug"
        )


class InvalidSearch(ProblemError):
    """A filter or order_by the search language refuses; ``extra`` points at the error."""

    def __init__(self, param: str, message: str, extra: dict[str, Any]) -> None:
        title = "Invalid filter" if param == "filter" else "Invalid order_by"
        super().__init__(400, title, message, **extra)


class SearchTimeout(ProblemError):
    def __init__(self, timeout_ms: int) -> None:
        super().__init__(
            503,
            "Search took too long",
            f"The search ran longer than {timeout_ms} ms; narrow it down (a status, model type "
            "or tag, a time range) and try again.",
        )


# --- campaigns ---------------------------------------------------------------------------------


class CampaignFinished(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__(f"The campaign is {status}.", current_status=status)


class BudgetSpent(ProblemError):
    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(409, "Budget spent", detail, **extra)


class CampaignFull(Conflict):
    def __init__(self, trials: int, status: str) -> None:
        super().__init__(f"The campaign already holds its {trials} trials.", current_status=status)


class ArchitectureEvaluated(Conflict):
    def __init__(self, trial_id: str, trial_number: int, digest: str) -> None:
        super().__init__(
            f"This architecture was evaluated before, as trial {trial_number}.",
            existing_trial_id=trial_id,
            existing_trial_number=trial_number,
            architecture_hash=digest,
        )


# --- jobs --------------------------------------------------------------------------------------


class JobFinished(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__(f"The job is {status}.", current_status=status)


class TooManySignals(ValidationFailed):
    def __init__(self, requested: int, most: int) -> None:
        super().__init__(
            f"{requested} signals requested; at most {most} per job.",
            loc=["body", "signals_per_combination"],
            msg=f"too many signals ({requested})",
        )


class LimitExceeded(ProblemError):
    """A 422 naming what the request would take (``requested``) and the ``limit`` it passes."""

    def __init__(self, detail: str, *, loc: list[str | int], requested: int, limit: int) -> None:
        super().__init__(
            422,
            "Limit exceeded",
            detail,
            errors=[{"loc": loc, "msg": detail, "type": "limit_exceeded"}],
            requested=requested,
            limit=limit,
        )


class TooManySamples(LimitExceeded):
    def __init__(self, signals: int, samples: int, limit: int) -> None:
        total = signals * samples
        super().__init__(
            f"The generation would write {total} samples ({signals} signals of {samples} "
            f"samples); at most {limit} per job (EXPERIMENTS_GENERATION_MAX_SAMPLES).",
            loc=["body"],
            requested=total,
            limit=limit,
        )


class QuotaExceeded(LimitExceeded):
    def __init__(self, size: int, used: int, quota: int) -> None:
        super().__init__(
            f"The job needs {size} bytes of signal files and yours already hold {used}; "
            f"{used + size} would pass your quota of {quota} bytes (EXPERIMENTS_USER_QUOTA_BYTES). "
            "Delete datasets you no longer need to free their files.",
            loc=["body"],
            requested=used + size,
            limit=quota,
        )


class TooManyActiveJobs(LimitExceeded):
    def __init__(self, active: int, limit: int) -> None:
        super().__init__(
            f"You have {active} pending or running dataset jobs; at most {limit} at a time "
            "(EXPERIMENTS_USER_MAX_ACTIVE_JOBS). Wait for one to finish, or cancel one.",
            loc=["body"],
            requested=active + 1,
            limit=limit,
        )


class UploadTooLarge(ContentTooLarge):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The upload is larger than {limit} bytes (EXPERIMENTS_UPLOAD_MAX_BYTES).",
            max_bytes=limit,
        )


class MissingFile(ValidationFailed):
    def __init__(self) -> None:
        super().__init__(
            "A multipart import needs a `file` part.",
            loc=["body", "file"],
            msg="field required",
            type_="missing",
        )


class UnsupportedMediaType(ProblemError):
    def __init__(self) -> None:
        super().__init__(
            415,
            "Unsupported Media Type",
            "Send multipart/form-data (an upload) or application/json (a server-side path).",
        )


# --- explanations ------------------------------------------------------------------------------


class ExplanationTooLarge(ContentTooLarge):
    def __init__(self, size: int, max_bytes: int) -> None:
        super().__init__(
            f"explanation_data is {size} bytes as JSON; at most {max_bytes} are stored. Put "
            "large maps in a file and give its file_path.",
            max_bytes=max_bytes,
        )


# --- projects ----------------------------------------------------------------------------------


class UnknownProject(ValidationFailed):
    """The project of an experiment: an active one of the experiment's owner, by id or name."""

    def __init__(self, field: str = "project") -> None:
        super().__init__(
            "No such active project.", loc=["body", field], msg="no such active project"
        )


class ProjectDeleted(Conflict):
    def __init__(self) -> None:
        super().__init__("The project is deleted; restore it first.", lifecycle_stage="deleted")


class ProjectActive(Conflict):
    def __init__(self) -> None:
        super().__init__("The project is not deleted.", lifecycle_stage="active")


# --- artifacts ---------------------------------------------------------------------------------


class InvalidArtifactPath(ValidationFailed):
    def __init__(self, reason: str) -> None:
        super().__init__(
            f"Invalid artifact path: {reason}.", loc=["path", "artifact_path"], msg=reason
        )


class ArtifactTooLarge(ContentTooLarge):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The artifact is larger than {limit} bytes (EXPERIMENTS_ARTIFACT_MAX_BYTES).",
            max_bytes=limit,
        )


class ArtifactQuotaExceeded(ProblemError):
    """413: the upload would take the owner's artifacts past their quota."""

    def __init__(self, size: int, used: int, quota: int) -> None:
        super().__init__(
            413,
            "Artifact quota exceeded",
            f"The artifact is {size} bytes and your artifacts already hold {used}; "
            f"{used + size} would pass your quota of {quota} bytes "
            "(EXPERIMENTS_ARTIFACT_USER_QUOTA_BYTES). Delete artifacts you no longer need.",
            quota="EXPERIMENTS_ARTIFACT_USER_QUOTA_BYTES",
            requested=used + size,
            limit=quota,
        )


class RangeNotSatisfiable(ProblemError):
    def __init__(self, size: int) -> None:
        super().__init__(
            416,
            "Range Not Satisfiable",
            f"The requested range is not within the artifact's {size} bytes.",
            headers={"Content-Range": f"bytes */{size}"},
            size=size,
        )


class ArtifactBodyIncomplete(ProblemError):
    def __init__(self, expected: int, received: int) -> None:
        super().__init__(
            400,
            "Bad Request",
            f"The body ended after {received} of the {expected} bytes its Content-Length "
            "announced.",
        )
