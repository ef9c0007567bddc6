"""MLflow 3 logged models on Runyard: what ``mlflow.<flavor>.log_model`` and autologging create,
read, search and finalize (``/api/2.0/mlflow/logged-models``).

A logged model belongs to an MLflow experiment (a Runyard project, or the caller's virtual
"Default" experiment ``0`` when ``project_id`` is null) and usually to a source run (a Runyard
experiment). Its id is MLflow's ``m-<32 hex>``; its ``artifact_uri`` is
``mlflow-artifacts:/<experiment_id>/models/<model_id>/artifacts``, which the artifact proxy
(``artifacts_api``) stores as Runyard artifacts of the source run under ``models/<model_id>/``:
the files show in Runyard's own artifact API and count against the run owner's quota. A model
made outside a run (no source run: ``log_model`` with no active run) keeps its files itself, as
artifacts whose holder is the model (``artifacts.repository.Holder``), under the same limits and
quota.

Search evaluates MLflow's logged-model filter grammar (``name = 'x' AND params.alpha = '0.1'``,
``metrics.rmse < 1``, ``LIKE``/``ILIKE``/``IN``) in memory over the models of the experiments
searched, as MLflow's file store does: logged models are few per experiment.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.experiments.errors import NotFound
from runyard.experiments.mlflow import ids
from runyard.experiments.mlflow.errors import MlflowError, invalid, not_found
from runyard.experiments.models import Experiment, LoggedModel, Project
from runyard.experiments.registry import service as registry_service
from runyard.experiments.repository import get_owned
from runyard.shared.db import utcnow
from runyard.shared.identity import Principal, require_writer

MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
STATUSES = {
    "LOGGED_MODEL_PENDING": "PENDING",
    "LOGGED_MODEL_READY": "READY",
    "LOGGED_MODEL_UPLOAD_FAILED": "UPLOAD_FAILED",
}
STATUS_NUMBERS = {1: "PENDING", 2: "READY", 3: "UPLOAD_FAILED"}
BAD_NAME_CHARACTERS = ("/", ":", ".", "%", '"', "'")
MAX_RESULTS_DEFAULT = 100
MAX_RESULTS_LIMIT = 1000
#: how many models a search looks at (newest first) before filtering
SEARCH_WINDOW = 10_000


def new_model_id() -> str:
    return f"m-{uuid.uuid4().hex}"


def models_prefix(model_id: str) -> str:
    """Where a logged model's files sit among its source run's artifacts."""
    return f"models/{model_id}/"


async def project_of(
    session: AsyncSession, principal: Principal, experiment_id: str, *, write: bool = False
) -> Project | None:
    """The project behind an MLflow experiment id the caller may read (``write``: change and
    add to, so it must be active); ``None`` for experiment ``0``."""
    project_id = ids.parse_experiment_id(experiment_id)
    if project_id is None:
        if write:
            require_writer(principal)
        return None
    try:
        project = await get_owned(
            session, Project, project_id, principal=principal, what="project", write=write
        )
    except NotFound:
        raise not_found(f"No Experiment with id={experiment_id} exists") from None
    if write and project.lifecycle_stage != "active":
        raise invalid(f"The experiment {experiment_id} must be in the 'active' state.")
    return project


async def run_of(
    session: AsyncSession, principal: Principal, run_id: str, *, write: bool = False
) -> Experiment:
    """The run the caller may read (``write``: change, locked until the transaction ends; a
    deleted run is refused, as MLflow does). Not the runs API's own helper, so that it can
    import this module (``record_metrics``)."""
    try:
        run = await get_owned(
            session,
            Experiment,
            ids.parse_run_id(run_id),
            principal=principal,
            what="run",
            write=write,
        )
    except NotFound:
        raise not_found(f"Run with id={run_id} not found") from None
    if write and run.deleted_at is not None:
        raise invalid(
            f"The run {run.id.hex} must be in the 'active' state. Current state is deleted."
        )
    return run


def in_experiment(run: Experiment, experiment_id: str) -> bool:
    """Whether the run (a Runyard experiment) belongs to that MLflow experiment."""
    return ids.experiment_id_of(run.project_id) == experiment_id


# --- the MLflow shape ----------------------------------------------------------------------------


def millis(moment: Any) -> int:
    return int(moment.timestamp() * 1000)


def key_values(mapping: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": str(v)} for k, v in sorted(mapping.items())]


def to_mlflow(model: LoggedModel) -> dict[str, Any]:
    """The ``LoggedModel`` message, as MLflow's JSON."""
    experiment_id = ids.experiment_id_of(model.project_id)
    info: dict[str, Any] = {
        "model_id": model.id,
        "experiment_id": experiment_id,
        "name": model.name,
        "creation_timestamp_ms": millis(model.created_at),
        "last_updated_timestamp_ms": millis(model.updated_at),
        "artifact_uri": f"mlflow-artifacts:/{experiment_id}/models/{model.id}/artifacts",
        "status": f"LOGGED_MODEL_{model.status}",
        "tags": key_values(model.tags),
    }
    if model.model_type:
        info["model_type"] = model.model_type
    if model.source_run_id is not None:
        info["source_run_id"] = ids.run_id_of(model.source_run_id)
    if model.status_message:
        info["status_message"] = model.status_message
    return {
        "info": info,
        "data": {"params": key_values(model.params), "metrics": list(model.metrics)},
    }


# --- use cases -----------------------------------------------------------------------------------


def check_name(name: str | None) -> None:
    if name is None:
        return
    if not name or any(c in name for c in BAD_NAME_CHARACTERS) or len(name) > 255:
        raise invalid(
            f"Invalid model name ({name!r}) provided. Model name must be a non-empty string of "
            f"at most 255 characters and cannot contain the following characters: "
            f"{BAD_NAME_CHARACTERS}"
        )


def pairs(items: Iterable[dict[str, Any]], what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        key = item.get("key")
        if not key or not isinstance(key, str):
            raise invalid(f"A {what} needs a non-empty 'key'.")
        value = item.get("value")
        result[key] = "" if value is None else str(value)
    return result


async def create(
    session: AsyncSession,
    principal: Principal,
    *,
    experiment_id: str,
    name: str | None,
    model_type: str | None,
    source_run_id: str | None,
    params: dict[str, str],
    tags: dict[str, str],
) -> LoggedModel:
    """A PENDING model in the experiment; its source run must be the caller's to write and
    belong to the same experiment (the model's files are kept with it)."""
    check_name(name)
    project = await project_of(session, principal, experiment_id, write=True)
    run: Experiment | None = None
    if source_run_id:
        run = await run_of(session, principal, source_run_id, write=True)
        if not in_experiment(run, experiment_id):
            owner = ids.experiment_id_of(run.project_id)
            raise invalid(
                f"Run {source_run_id} belongs to experiment {owner}, not to experiment "
                f"{experiment_id}."
            )
    owner_id = (
        project.owner_id
        if project is not None
        else (run.owner_id if run is not None else principal.user_id)
    )
    model_id = new_model_id()
    model = LoggedModel(
        id=model_id,
        owner_id=owner_id,
        project_id=project.id if project is not None else None,
        source_run_id=run.id if run is not None else None,
        name=name or f"model-{model_id[2:10]}",
        model_type=model_type or None,
        status="PENDING",
        params=params,
        tags=tags,
        metrics=[],
    )
    session.add(model)
    await session.flush()
    return model


async def get(
    session: AsyncSession,
    principal: Principal,
    model_id: str,
    *,
    write: bool = False,
    allow_deleted: bool = False,
) -> LoggedModel:
    """The model if the caller may read it (``write``: change it; locked until the transaction
    ends); a deleted one only with ``allow_deleted``."""
    if write:
        require_writer(principal)
    model: LoggedModel | None = None
    if MODEL_ID.match(model_id):
        query = select(LoggedModel).where(LoggedModel.id == model_id)
        if write:
            query = query.with_for_update().execution_options(populate_existing=True)
        model = await session.scalar(query)
    allowed = access.can_write if write else access.can_read
    if (
        model is None
        or not allowed(principal, model.owner_id)
        or (model.deleted_at is not None and not allow_deleted)
    ):
        raise not_found(f"Logged model with ID '{model_id}' not found.")
    return model


def touch(model: LoggedModel) -> None:
    model.updated_at = utcnow()


def status_of(value: Any) -> str:
    if isinstance(value, int) and value in STATUS_NUMBERS:
        return STATUS_NUMBERS[value]
    if isinstance(value, str) and value in STATUSES:
        return STATUSES[value]
    raise invalid(
        f"Invalid logged model status {value!r}: one of {', '.join(STATUSES)} is expected."
    )


async def finalize(
    session: AsyncSession, principal: Principal, model_id: str, status: Any
) -> LoggedModel:
    model = await get(session, principal, model_id, write=True)
    model.status = status_of(status)
    touch(model)
    await session.flush()
    if model.status != "PENDING":
        # versions registered from its files while they were being uploaded
        await registry_service.settle_versions_of(session, logged_model_id=model.id)
    return model


async def log_params(
    session: AsyncSession, principal: Principal, model_id: str, params: dict[str, str]
) -> None:
    """Write-once, as a run's params: the same value again is fine, another is refused."""
    model = await get(session, principal, model_id, write=True)
    for key, value in params.items():
        old = model.params.get(key)
        if old is not None and old != value:
            raise invalid(
                f"Changing param values is not allowed. Param with key='{key}' was already "
                f"logged with value='{old}' for logged model ID='{model_id}'. Attempted "
                f"logging new value '{value}'."
            )
    model.params = {**model.params, **params}
    touch(model)


async def set_tags(
    session: AsyncSession, principal: Principal, model_id: str, tags: dict[str, str]
) -> None:
    model = await get(session, principal, model_id, write=True)
    model.tags = {**model.tags, **tags}
    touch(model)


#: MLflow's tag on a logged model listing the registered versions made from it
MODEL_VERSIONS_TAG = "mlflow.modelVersions"


async def note_version(
    session: AsyncSession, principal: Principal, model_id: str, name: str, version: int
) -> None:
    """Adds a registered version made from the model to its ``mlflow.modelVersions`` tag (a
    JSON list of ``{"name", "version"}``), once, as MLflow's server does on
    ``model-versions/create`` with a ``model_id``."""
    model = await get(session, principal, model_id, write=True)
    entry = {"name": name, "version": version}
    try:
        listed = json.loads(model.tags.get(MODEL_VERSIONS_TAG) or "[]")
    except ValueError:
        listed = []
    if not isinstance(listed, list):
        listed = []
    if entry not in listed:
        model.tags = {**model.tags, MODEL_VERSIONS_TAG: json.dumps([*listed, entry])}
        touch(model)


async def delete_tag(session: AsyncSession, principal: Principal, model_id: str, key: str) -> None:
    model = await get(session, principal, model_id, write=True)
    if key not in model.tags:
        raise not_found(f"No tag with key {key!r} found for model with ID {model_id!r}.")
    model.tags = {k: v for k, v in model.tags.items() if k != key}
    touch(model)


async def delete(session: AsyncSession, principal: Principal, model_id: str) -> None:
    """Soft, as MLflow's: the model and its files stay (``get`` with ``allow_deleted``)."""
    model = await get(session, principal, model_id, write=True)
    model.deleted_at = utcnow()
    touch(model)


async def record_metrics(
    session: AsyncSession, principal: Principal, run: Experiment, metrics: list[dict[str, Any]]
) -> None:
    """Metrics a run logged with a ``model_id`` (MLflow 3 links them to the model as well):
    appended to each model's metrics, one value per (key, step, dataset) as for runs. For the
    tracking API's log-metric / log-batch to call with the metrics that carry a ``model_id``."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        if metric.get("model_id"):
            by_model.setdefault(str(metric["model_id"]), []).append(metric)
    for model_id, logged in sorted(by_model.items()):
        model = await get(session, principal, model_id, write=True)
        kept = {metric_key(m): m for m in model.metrics}
        for metric in logged:
            entry = {
                "key": str(metric["key"]),
                "value": json_number(float(metric["value"])),
                "timestamp": int(
                    millis(utcnow()) if metric.get("timestamp") is None else metric["timestamp"]
                ),
                "step": int(metric.get("step") or 0),
                "run_id": ids.run_id_of(run.id),
                "model_id": model_id,
            }
            for extra in ("dataset_name", "dataset_digest"):
                if metric.get(extra):
                    entry[extra] = str(metric[extra])
            kept[metric_key(entry)] = entry
        model.metrics = list(kept.values())
        touch(model)


def json_number(value: float) -> float | str:
    """A value JSONB can hold: MLflow's own words for the ones JSON has none for (the client
    parses ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` as doubles)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def metric_key(metric: dict[str, Any]) -> tuple[Any, ...]:
    return (
        metric.get("key"),
        metric.get("step", 0),
        metric.get("dataset_name"),
        metric.get("dataset_digest"),
    )


# --- search --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    kind: str  # attribute, param, tag, metric
    key: str
    op: str
    value: Any


TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
      | (?P<op>!=|<=|>=|=|<|>)
      | (?P<paren>[(),])
      | (?P<word>`[^`]+`|[\w.]+(?:\.`[^`]+`)?)
    )""",
    re.VERBOSE,
)
KINDS = {
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "metric": "metric",
    "metrics": "metric",
}
ATTRIBUTES = {
    "name",
    "model_id",
    "model_type",
    "status",
    "source_run_id",
    "creation_timestamp",
    "creation_time",
    "last_updated_timestamp",
    "last_updated_time",
}
NUMERIC_ATTRIBUTES = {
    "creation_timestamp",
    "creation_time",
    "last_updated_timestamp",
    "last_updated_time",
}


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise invalid(f"Invalid filter string '{text}': unexpected text at {position}.")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"`":
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def parse_key(word: str) -> tuple[str, str]:
    if word.startswith("`"):
        return "attribute", unquote(word)
    prefix, dot, rest = word.partition(".")
    if dot and prefix.lower() in KINDS:
        return KINDS[prefix.lower()], unquote(rest)
    return "attribute", word


def parse_filter(text: str | None) -> list[Comparison]:
    """``<key> <op> <value> [AND ...]``: MLflow's logged-model filter grammar."""
    if not text or not text.strip():
        return []
    tokens = tokenize(text)
    comparisons: list[Comparison] = []
    i = 0

    def fail(why: str) -> MlflowError:
        return invalid(f"Invalid filter string '{text}': {why}")

    while i < len(tokens):
        kind, word = tokens[i]
        if kind != "word":
            raise fail(f"expected a key, found {word!r}")
        entity, key = parse_key(word)
        i += 1
        if i >= len(tokens):
            raise fail(f"no comparison after {word!r}")
        kind, op = tokens[i]
        if kind == "word" and op.upper() == "NOT" and i + 1 < len(tokens):
            i += 1
            op = "NOT " + tokens[i][1]
            kind = "word"
        op = op.upper()
        if kind not in ("op", "word") or op not in (
            "=",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "LIKE",
            "ILIKE",
            "IN",
            "NOT IN",
        ):
            raise fail(f"unsupported comparison {op!r}")
        i += 1
        value: Any
        if op in ("IN", "NOT IN"):
            if i >= len(tokens) or tokens[i] != ("paren", "("):
                raise fail(f"{op} needs a parenthesized list")
            i += 1
            values: list[str] = []
            while i < len(tokens) and tokens[i] != ("paren", ")"):
                if tokens[i][0] == "string":
                    values.append(unquote(tokens[i][1]))
                elif tokens[i] != ("paren", ","):
                    raise fail(f"unexpected {tokens[i][1]!r} in a list")
                i += 1
            if i >= len(tokens):
                raise fail("unclosed list")
            i += 1
            value = values
        else:
            if i >= len(tokens) or tokens[i][0] not in ("string", "number"):
                raise fail(f"expected a value after {op}")
            value = unquote(tokens[i][1]) if tokens[i][0] == "string" else float(tokens[i][1])
            i += 1
        comparisons.append(check_comparison(Comparison(entity, key, op, value), fail))
        if i < len(tokens):
            if tokens[i][0] != "word" or tokens[i][1].upper() != "AND":
                raise fail(f"expected AND, found {tokens[i][1]!r} (OR is not supported)")
            i += 1
            if i >= len(tokens):
                raise fail("nothing after AND")
    return comparisons


def check_comparison(comparison: Comparison, fail: Callable[[str], MlflowError]) -> Comparison:
    if comparison.kind == "attribute" and comparison.key not in ATTRIBUTES:
        raise fail(f"invalid logged model search key '{comparison.key}'")
    numeric = comparison.kind == "metric" or comparison.key in NUMERIC_ATTRIBUTES
    if comparison.kind == "metric" and comparison.op in ("LIKE", "ILIKE", "IN", "NOT IN"):
        raise fail(f"metrics cannot be compared with {comparison.op}")
    if numeric and comparison.op not in ("IN", "NOT IN"):
        try:
            return Comparison(
                comparison.kind, comparison.key, comparison.op, float(comparison.value)
            )
        except (TypeError, ValueError):
            raise fail(f"'{comparison.key}' needs a number") from None
    if not numeric and comparison.op in ("<", "<=", ">", ">="):
        raise fail(f"'{comparison.key}' cannot be compared with {comparison.op}")
    if not numeric and isinstance(comparison.value, float):
        raise fail(f"'{comparison.key}' needs a quoted string")
    return comparison


def attribute(model: LoggedModel, key: str) -> Any:
    if key in ("creation_timestamp", "creation_time"):
        return millis(model.created_at)
    if key in ("last_updated_timestamp", "last_updated_time"):
        return millis(model.updated_at)
    if key == "model_id":
        return model.id
    if key == "status":
        return f"LOGGED_MODEL_{model.status}"
    if key == "source_run_id":
        return ids.run_id_of(model.source_run_id) if model.source_run_id else None
    return getattr(model, key)


def latest_metric(
    model: LoggedModel, key: str, datasets: list[dict[str, Any]] | None
) -> float | None:
    found = [
        m
        for m in model.metrics
        if m.get("key") == key
        and (
            not datasets
            or any(
                m.get("dataset_name") == d.get("dataset_name")
                and (not d.get("dataset_digest") or m.get("dataset_digest") == d["dataset_digest"])
                for d in datasets
            )
        )
    ]
    if not found:
        return None
    latest = max(found, key=lambda m: (m.get("timestamp", 0), m.get("step", 0)))
    return float(latest["value"])


def like(pattern: str, value: str, *, fold: bool) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if fold else re.DOTALL) is not None


def matches(
    model: LoggedModel, comparison: Comparison, datasets: list[dict[str, Any]] | None
) -> bool:
    lhs: Any
    if comparison.kind == "metric":
        lhs = latest_metric(model, comparison.key, datasets)
    elif comparison.kind == "param":
        lhs = model.params.get(comparison.key)
    elif comparison.kind == "tag":
        lhs = model.tags.get(comparison.key)
    else:
        lhs = attribute(model, comparison.key)
    if lhs is None:
        return False
    value, op = comparison.value, comparison.op
    if op == "=":
        return bool(lhs == value)
    if op == "!=":
        return bool(lhs != value)
    if op == "<":
        return bool(lhs < value)
    if op == "<=":
        return bool(lhs <= value)
    if op == ">":
        return bool(lhs > value)
    if op == ">=":
        return bool(lhs >= value)
    if op in ("LIKE", "ILIKE"):
        return like(str(value), str(lhs), fold=op == "ILIKE")
    if op == "IN":
        return str(lhs) in value
    return str(lhs) not in value  # NOT IN


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid(f"Invalid page token: {token!r}") from None
    if not isinstance(offset, int) or offset < 0:
        raise invalid(f"Invalid page token: {token!r}")
    return offset


def absent(value: Any) -> bool:
    """No value to sort by (a NaN metric neither): sorted last."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def sort_models(
    models: list[LoggedModel],
    order_by: list[dict[str, Any]] | None,
    datasets: list[dict[str, Any]] | None,
) -> list[LoggedModel]:
    """MLflow's order: the requested fields (missing values last), then newest first, then by
    id."""
    keys: list[tuple[Callable[[LoggedModel], Any], bool]] = []
    names: set[str] = set()
    for clause in order_by or []:
        field = str(clause.get("field_name") or "")
        ascending = clause.get("ascending", True) is not False
        entity, _, rest = field.partition(".")
        if rest and entity.lower() in ("metric", "metrics"):
            scoped = (
                [{"dataset_name": clause["dataset_name"], **clause}]
                if clause.get("dataset_name")
                else datasets
            )
            keys.append(
                (lambda m, k=rest, d=scoped: latest_metric(m, k, d), ascending)  # type: ignore[misc]
            )
        elif field in ATTRIBUTES:
            names.add("creation" if field in ("creation_timestamp", "creation_time") else field)
            keys.append((lambda m, k=field: attribute(m, k), ascending))  # type: ignore[misc]
        else:
            raise invalid(f"Invalid order by field name: {field}")
    if "creation" not in names:
        keys.append((lambda m: millis(m.created_at), False))
    if "model_id" not in names:
        keys.append((lambda m: m.id, True))
    ordered = list(models)
    for key, ascending in reversed(keys):
        values = {id(m): key(m) for m in ordered}
        present = [m for m in ordered if not absent(values[id(m)])]
        missing = [m for m in ordered if absent(values[id(m)])]
        present.sort(key=lambda m: values[id(m)], reverse=not ascending)
        ordered = present + missing
    return ordered


async def search(
    session: AsyncSession,
    principal: Principal,
    *,
    experiment_ids: list[str],
    filter_string: str | None,
    datasets: list[dict[str, Any]] | None,
    max_results: int | None,
    order_by: list[dict[str, Any]] | None,
    page_token: str | None,
) -> tuple[list[LoggedModel], str | None]:
    """The models (not deleted) of the experiments the caller may read that pass the filter,
    one page at a time."""
    if datasets and not all(d.get("dataset_name") for d in datasets):
        raise invalid("`dataset_name` in the `datasets` clause must be specified.")
    limit = max_results or MAX_RESULTS_DEFAULT
    if limit < 1 or limit > MAX_RESULTS_LIMIT:
        raise invalid(f"max_results must be between 1 and {MAX_RESULTS_LIMIT}, got {limit}.")
    comparisons = parse_filter(filter_string)
    offset = decode_token(page_token)
    scopes = []
    for experiment_id in dict.fromkeys(experiment_ids):
        try:
            project = await project_of(session, principal, experiment_id)
        except MlflowError:
            continue
        if project is None:
            scopes.append(
                and_(
                    LoggedModel.project_id.is_(None),
                    LoggedModel.owner_id == principal.user_id,
                )
            )
        else:
            scopes.append(LoggedModel.project_id == project.id)
    if not scopes:
        return [], None
    query = (
        select(LoggedModel)
        .where(LoggedModel.deleted_at.is_(None), or_(*scopes))
        .order_by(LoggedModel.created_at.desc(), LoggedModel.id)
        .limit(SEARCH_WINDOW)
    )
    rows = list((await session.scalars(query)).all())
    passed = [m for m in rows if all(matches(m, c, datasets) for c in comparisons)]
    if datasets and not any(c.kind == "metric" for c in comparisons):
        passed = [
            m
            for m in passed
            if any(
                latest_metric(m, str(metric.get("key")), datasets) is not None
                for metric in m.metrics
            )
        ]
    ordered = sort_models(passed, order_by, datasets)
    page = ordered[offset : offset + limit]
    token = encode_token(offset + limit) if len(ordered) > offset + limit else None
    return page, token
