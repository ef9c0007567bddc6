"""MLflow's Model Registry on Runyard's registry (``runyard.experiments.registry``): the use
cases of ``registry_api`` and the MLflow JSON of registered models and model versions.

What maps where:

- a registered model is the caller's Runyard registered model of that name (names are unique
  per owner, as MLflow's are per server); ``user_id`` is the owner's username;
- a model version's ``run_id`` is its experiment (lineage), its files that experiment's
  artifacts: ``source`` ``runs:/<run_id>/<path>`` or the run's
  ``mlflow-artifacts:/<experiment>/<run_id>/artifacts/<path>`` names the artifact ``<path>``;
  ``models:/<model_id>`` (MLflow 3's logged model, what ``register_model`` sends when the run
  has no files at the path) names the logged model's files, ``models/<model_id>/`` of its
  source run;
- ``status``: Runyard's ``pending``/``ready``/``failed`` are ``PENDING_REGISTRATION``,
  ``READY`` and ``FAILED_REGISTRATION``;
- stages: MLflow 3 deprecates them for aliases. ``current_stage`` is ``Archived`` for an
  archived version, else ``None``; transition-stage to ``Archived`` archives the version, any
  other stage is refused (``INVALID_PARAMETER_VALUE``);
- deleting a version that holds an alias is refused (``INVALID_STATE``, HTTP 409): MLflow
  would drop the aliases with it; Runyard makes the move explicit.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.experiments.mlflow import ids, logged_models
from runyard.experiments.mlflow.errors import MlflowError, already_exists, invalid, not_found
from runyard.experiments.models import Experiment, LoggedModel, User
from runyard.experiments.registry import repository, service
from runyard.experiments.registry.errors import ModelNameTaken, UnknownExperiment
from runyard.experiments.registry.models import ModelVersion, RegisteredModel
from runyard.experiments.registry.schemas import (
    ALIAS_PATTERN,
    MAX_TAGS,
    ModelCreate,
    ModelUpdate,
    reserved_alias,
)
from runyard.shared.identity import Principal, require_writer

STATUS = {"pending": "PENDING_REGISTRATION", "ready": "READY", "failed": "FAILED_REGISTRATION"}
STAGES = ("None", "Staging", "Production", "Archived")
#: MLflow's search defaults and limits
MODELS_DEFAULT, MODELS_MAX = 100, 1000
VERSIONS_DEFAULT, VERSIONS_MAX = 10_000, 200_000
RUNS_SOURCE = re.compile(r"^runs:/([0-9a-fA-F-]{32,36})(?:/(.*))?$")
ARTIFACTS_SOURCE = re.compile(
    r"^mlflow-artifacts:/[^/]+/([0-9a-fA-F-]{32,36})/artifacts(?:/(.*))?$"
)
MODELS_SOURCE = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")


def millis(moment: Any) -> int:
    return logged_models.millis(moment)


def key_values(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


# --- MLflow JSON ---------------------------------------------------------------------------------


async def usernames(session: AsyncSession, owner_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not owner_ids:
        return {}
    rows = await session.execute(
        select(User.user_id, User.username).where(User.user_id.in_(owner_ids))
    )
    return {user_id: username for user_id, username in rows}


def version_json(
    model: RegisteredModel, version: ModelVersion, aliases: list[str], user: str | None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "name": model.name,
        "version": str(version.version),
        "creation_timestamp": millis(version.created_at),
        "last_updated_timestamp": millis(version.updated_at),
        "user_id": user or "",
        "current_stage": "Archived" if version.archived_at is not None else "None",
        "description": version.description or "",
        "source": version.source or "",
        "status": STATUS[version.status],
        "tags": key_values(version.tags),
        "aliases": aliases,
    }
    if version.experiment_id is not None:
        answer["run_id"] = ids.run_id_of(version.experiment_id)
    if version.status_message:
        answer["status_message"] = version.status_message
    if version.source and (found := MODELS_SOURCE.match(version.source)):
        answer["model_id"] = found.group(1)
    return answer


async def versions_json(
    session: AsyncSession, pairs: Sequence[tuple[RegisteredModel, ModelVersion]]
) -> list[dict[str, Any]]:
    aliases = await repository.aliases_by_version(session, [v.id for _, v in pairs])
    users = await usernames(session, {m.owner_id for m, _ in pairs})
    return [version_json(m, v, aliases[v.id], users.get(m.owner_id)) for m, v in pairs]


async def model_json(
    session: AsyncSession, model: RegisteredModel, *, latest: bool = True
) -> dict[str, Any]:
    aliases = (await repository.aliases_by_model(session, [model.id]))[model.id]
    user = (await usernames(session, {model.owner_id})).get(model.owner_id)
    answer: dict[str, Any] = {
        "name": model.name,
        "creation_timestamp": millis(model.created_at),
        "last_updated_timestamp": millis(model.updated_at),
        "user_id": user or "",
        "description": model.description or "",
        "tags": key_values(model.tags),
        "aliases": [{"alias": a, "version": str(v)} for a, v in aliases.items()],
    }
    if latest:
        found = await latest_versions(session, model, [])
        if found:
            answer["latest_versions"] = await versions_json(session, [(model, v) for v in found])
    return answer


# --- checks --------------------------------------------------------------------------------------


def check_model_name(name: str | None, param: str = "name") -> str:
    if not name:
        raise invalid(f"Missing value for required parameter '{param}'.")
    if len(name) > 255 or "/" in name or ":" in name or name != name.strip():
        raise invalid(
            f"Invalid model name ({name!r}): at most 255 characters, no '/' or ':', and no "
            "leading or trailing whitespace."
        )
    return name


def parse_version(value: Any) -> int:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        raise invalid(f"Parameter 'version' must be an integer, got '{value}'.") from None
    if number < 1 or number > 2**31 - 1:
        raise invalid(f"Parameter 'version' must be a positive integer, got '{value}'.")
    return number


def check_alias(alias: str | None) -> str:
    if not alias:
        raise invalid("Missing value for required parameter 'alias'.")
    if not re.match(ALIAS_PATTERN, alias) or reserved_alias(alias):
        raise invalid(
            f"Invalid alias name: '{alias}'. Aliases may only contain alphanumerics, '_' and "
            "'-', and cannot be 'latest' or 'v<number>'."
        )
    return alias


def check_tag(key: str | None, value: str | None) -> tuple[str, str]:
    if not key:
        raise invalid("Missing value for required parameter 'key'.")
    if len(key) > 250:
        raise invalid(f"Tag key '{key[:50]}...' is longer than 250 characters.")
    value = "" if value is None else str(value)
    if len(value) > 5000:
        raise invalid(f"Tag value for '{key}' is longer than 5000 characters.")
    return key, value


# --- registered models ---------------------------------------------------------------------------


async def get_model(
    session: AsyncSession, principal: Principal, name: str | None, *, write: bool = False
) -> RegisteredModel:
    """The caller's registered model ``name`` (``write``: locked until the transaction ends)."""
    name = check_model_name(name)
    if write:
        require_writer(principal)
    model = await repository.by_name(session, principal.user_id, name, lock=write)
    if model is None:
        raise not_found(f"Registered Model with name={name} not found")
    return model


async def create_model(
    session: AsyncSession,
    principal: Principal,
    name: str | None,
    description: str | None,
    tags: dict[str, str],
) -> RegisteredModel:
    name = check_model_name(name)
    if len(tags) > MAX_TAGS:
        raise invalid(f"At most {MAX_TAGS} tags.")
    try:
        data = ModelCreate(name=name, description=description, tags=tags)
    except ValidationError as exc:
        raise invalid(f"Invalid registered model: {exc.errors()[0]['msg']}") from None
    try:
        return await service.create_model(session, principal=principal, data=data)
    except ModelNameTaken:
        raise already_exists(f"Registered Model (name={name}) already exists.") from None


async def rename_model(
    session: AsyncSession, principal: Principal, name: str | None, new_name: str | None
) -> RegisteredModel:
    model = await get_model(session, principal, name, write=True)
    new_name = check_model_name(new_name, "new_name")
    try:
        await service.update_model(
            session, principal=principal, model=model, data=ModelUpdate(name=new_name)
        )
    except ModelNameTaken:
        raise already_exists(f"Registered Model (name={new_name}) already exists.") from None
    return model


async def set_model_tag(model: RegisteredModel, key: str, value: str) -> None:
    if key not in model.tags and len(model.tags) >= MAX_TAGS:
        raise invalid(f"At most {MAX_TAGS} tags.")
    model.tags = {**model.tags, key: value}


def delete_model_tag(model: RegisteredModel, key: str) -> None:
    if key in model.tags:
        model.tags = {k: v for k, v in model.tags.items() if k != key}


async def latest_versions(
    session: AsyncSession, model: RegisteredModel, stages: list[str]
) -> list[ModelVersion]:
    """The highest version of each stage asked for (all stages: none asked), by version."""
    wanted = {s.lower() for s in stages} or {s.lower() for s in STAGES}
    unknown = wanted - {s.lower() for s in STAGES}
    if unknown:
        raise invalid(f"Invalid Model Version stage: {sorted(unknown)[0]}.")
    versions = (
        await session.scalars(
            select(ModelVersion)
            .where(ModelVersion.model_id == model.id)
            .order_by(ModelVersion.version.desc())
        )
    ).all()
    found: dict[str, ModelVersion] = {}
    for v in versions:
        stage = "archived" if v.archived_at is not None else "none"
        if stage in wanted and stage not in found:
            found[stage] = v
    return sorted(found.values(), key=lambda v: v.version)


# --- search --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clause:
    key: str  # an attribute, or "tags.<key>"
    op: str
    value: Any


def parse_filter(text: str | None, attributes: set[str], *, in_keys: set[str]) -> list[Clause]:
    """MLflow's registry filter: ``<key> <op> <value> [AND ...]``, keys ``attributes`` and
    ``tags.<key>``, ops ``=``, ``!=``, ``LIKE``, ``ILIKE`` (``IN`` for ``in_keys``)."""
    if not text or not text.strip():
        return []
    tokens = logged_models.tokenize(text)

    def fail(why: str) -> MlflowError:
        return invalid(f"Invalid filter string '{text}': {why}")

    clauses: list[Clause] = []
    i = 0
    while i < len(tokens):
        kind, word = tokens[i]
        if kind != "word":
            raise fail(f"expected a key, found {word!r}")
        if word.endswith(".") and i + 1 < len(tokens) and tokens[i + 1][1].startswith("`"):
            i += 1  # tag.`key with dots` (the tokenizer splits it after the dot)
            word += tokens[i][1]
        entity, key = logged_models.parse_key(word)
        if entity == "tag":
            key = f"tags.{key}"
        elif entity != "attribute" or key not in attributes:
            raise fail(f"invalid search key '{word}'")
        i += 1
        if i >= len(tokens):
            raise fail(f"no comparison after {word!r}")
        op = tokens[i][1].upper()
        if op not in ("=", "!=", "LIKE", "ILIKE", "IN"):
            raise fail(f"unsupported comparison {op!r}")
        if op == "IN" and key not in in_keys:
            raise fail(f"'{key}' cannot be compared with IN")
        i += 1
        value: Any
        if op == "IN":
            if i >= len(tokens) or tokens[i] != ("paren", "("):
                raise fail("IN needs a parenthesized list")
            i += 1
            values: list[str] = []
            while i < len(tokens) and tokens[i] != ("paren", ")"):
                if tokens[i][0] == "string":
                    values.append(logged_models.unquote(tokens[i][1]))
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
            value = logged_models.unquote(tokens[i][1])
            i += 1
        clauses.append(Clause(key, op, value))
        if i < len(tokens):
            if tokens[i][0] != "word" or tokens[i][1].upper() != "AND":
                raise fail(f"expected AND, found {tokens[i][1]!r}")
            i += 1
            if i >= len(tokens):
                raise fail("nothing after AND")
    return clauses


def holds(clause: Clause, lookup: Callable[[str], str | None]) -> bool:
    lhs = lookup(clause.key)
    if lhs is None:
        # a missing value differs from any (the client's own filter ``tags.mlflow.prompt.
        # is_prompt != 'true'`` must keep the models without that tag)
        return clause.op == "!="
    if clause.op == "=":
        return lhs == str(clause.value)
    if clause.op == "!=":
        return lhs != str(clause.value)
    if clause.op == "IN":
        return lhs in list(clause.value)
    return logged_models.like(str(clause.value), lhs, fold=clause.op == "ILIKE")


def page(max_results: int | None, default: int, most: int, token: str | None) -> tuple[int, int]:
    limit = default if max_results is None else max_results
    if limit < 1 or limit > most:
        raise invalid(
            f"Invalid value for max_results. It must be at most {most}, but got {limit}"
            if limit > most
            else f"Invalid value for max_results: {limit}. It must be positive."
        )
    if not token:
        return limit, 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid(f"Invalid page token: {token!r}") from None
    if not isinstance(offset, int) or offset < 0:
        raise invalid(f"Invalid page token: {token!r}")
    return limit, offset


def next_token(offset: int, limit: int, total: int) -> str | None:
    if offset + limit >= total:
        return None
    return base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode()


def order_keys(
    order_by: list[str] | None, fields: dict[str, Callable[[Any], Any]], default: list[str]
) -> list[tuple[Callable[[Any], Any], bool]]:
    keys: list[tuple[Callable[[Any], Any], bool]] = []
    for clause in order_by or default:
        parts = clause.strip().split()
        field = parts[0] if parts else ""
        direction = parts[1].upper() if len(parts) > 1 else "ASC"
        if field not in fields or direction not in ("ASC", "DESC") or len(parts) > 2:
            raise invalid(f"Invalid order_by clause '{clause}'.")
        keys.append((fields[field], direction == "ASC"))
    return keys


def ordered(rows: list[Any], keys: list[tuple[Callable[[Any], Any], bool]]) -> list[Any]:
    result = list(rows)
    for key, ascending in reversed(keys):
        result.sort(key=key, reverse=not ascending)
    return result


async def readable_models(session: AsyncSession, principal: Principal) -> list[RegisteredModel]:
    query = select(RegisteredModel)
    scope = access.owner_scope(RegisteredModel.owner_id, principal)
    if scope is not None:
        query = query.where(scope)
    return list((await session.scalars(query)).all())


MODEL_FIELDS: dict[str, Callable[[Any], Any]] = {
    "name": lambda m: m.name,
    "timestamp": lambda m: m.updated_at,
    "creation_timestamp": lambda m: m.created_at,
    "last_updated_timestamp": lambda m: m.updated_at,
}


async def search_models(
    session: AsyncSession,
    principal: Principal,
    *,
    filter_string: str | None,
    max_results: int | None,
    order_by: list[str] | None,
    page_token: str | None,
) -> tuple[list[RegisteredModel], str | None]:
    clauses = parse_filter(filter_string, {"name"}, in_keys=set())
    limit, offset = page(max_results, MODELS_DEFAULT, MODELS_MAX, page_token)
    keys = order_keys(order_by, MODEL_FIELDS, ["name ASC"])
    models = await readable_models(session, principal)

    def lookup(model: RegisteredModel) -> Callable[[str], str | None]:
        def value(key: str) -> str | None:
            if key == "name":
                return model.name
            return model.tags.get(key.removeprefix("tags."))

        return value

    found = [m for m in models if all(holds(c, lookup(m)) for c in clauses)]
    found = ordered(found, [*keys, (lambda m: m.name, True)])
    return found[offset : offset + limit], next_token(offset, limit, len(found))


VERSION_FIELDS: dict[str, Callable[[Any], Any]] = {
    "name": lambda p: p[0].name,
    "version_number": lambda p: p[1].version,
    "creation_timestamp": lambda p: p[1].created_at,
    "last_updated_timestamp": lambda p: p[1].updated_at,
}


async def search_versions(
    session: AsyncSession,
    principal: Principal,
    *,
    filter_string: str | None,
    max_results: int | None,
    order_by: list[str] | None,
    page_token: str | None,
) -> tuple[list[tuple[RegisteredModel, ModelVersion]], str | None]:
    clauses = parse_filter(
        filter_string,
        {"name", "version_number", "run_id", "source_path", "model_id"},
        in_keys={"run_id", "model_id"},
    )
    limit, offset = page(max_results, VERSIONS_DEFAULT, VERSIONS_MAX, page_token)
    keys = order_keys(order_by, VERSION_FIELDS, ["name ASC", "version_number DESC"])
    models = {m.id: m for m in await readable_models(session, principal)}
    names = [c.value for c in clauses if c.key == "name" and c.op == "="]
    query = select(ModelVersion).where(ModelVersion.model_id.in_(list(models)))
    if names:
        query = query.where(
            ModelVersion.model_id.in_([m.id for m in models.values() if m.name == names[0]])
        )
    versions = (await session.scalars(query)).all()

    def lookup(model: RegisteredModel, version: ModelVersion) -> Callable[[str], str | None]:
        def value(key: str) -> str | None:
            if key == "name":
                return model.name
            if key == "version_number":
                return str(version.version)
            if key == "run_id":
                return ids.run_id_of(version.experiment_id) if version.experiment_id else None
            if key == "source_path":
                return version.source
            if key == "model_id":
                found = MODELS_SOURCE.match(version.source or "")
                return found.group(1) if found else None
            return version.tags.get(key.removeprefix("tags."))

        return value

    pairs = [(models[v.model_id], v) for v in versions]
    found = [p for p in pairs if all(holds(c, lookup(*p)) for c in clauses)]
    found = ordered(found, [*keys, (lambda p: (p[0].name, -p[1].version), True)])
    return found[offset : offset + limit], next_token(offset, limit, len(found))


# --- model versions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """A version's files: an experiment's artifact at ``artifact_path``, or (no experiment) a
    logged model's own files."""

    experiment_id: uuid.UUID | None
    artifact_path: str
    logged_model_id: str | None = None


async def origin_of(
    session: AsyncSession,
    principal: Principal,
    source: str | None,
    run_id: str | None,
    model_id: str | None,
) -> Origin:
    """The experiment and artifact path a version's ``source`` (and ``run_id``, ``model_id``)
    name."""
    if not source:
        raise invalid("Missing value for required parameter 'source'.")
    logged = model_id or (m.group(1) if (m := MODELS_SOURCE.match(source)) else None)
    if logged:
        model = await logged_models.get(session, principal, logged)
        if model.source_run_id is None:
            return Origin(None, "", logged_model_id=model.id)
        return Origin(model.source_run_id, logged_models.models_prefix(model.id).rstrip("/"))
    found = RUNS_SOURCE.match(source) or ARTIFACTS_SOURCE.match(source)
    if found is None:
        raise invalid(
            f"Unsupported source '{source}': Runyard registers versions from a run's artifacts "
            "(runs:/<run_id>/<path>, the run's mlflow-artifacts:/ URI, or models:/<model_id>)."
        )
    experiment_id = ids.parse_run_id(found.group(1))
    if run_id and ids.parse_run_id(run_id) != experiment_id:
        raise invalid(f"The source '{source}' is not an artifact of run {run_id}.")
    return Origin(experiment_id, resolved_path(source, found.group(2) or ""))


def resolved_path(source: str, path: str) -> str:
    """The artifact path a source names, with ``.``, ``..`` and repeated slashes resolved as
    MLflow resolves them (``<artifact_uri>/model/..`` is the run's root); 400 for one that
    leaves the run's artifacts."""
    names: list[str] = []
    for name in path.split("/"):
        if name == "..":
            if not names:
                raise invalid(f"The source '{source}' leaves the run's artifacts.")
            names.pop()
        elif name not in ("", "."):
            names.append(name)
    return "/".join(names)


async def create_version(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str | None,
    source: str | None,
    run_id: str | None,
    model_id: str | None,
    description: str | None,
    tags: dict[str, str],
) -> tuple[RegisteredModel, ModelVersion]:
    model = await get_model(session, principal, name, write=True)
    origin = await origin_of(session, principal, source, run_id, model_id)
    try:
        version = await service.create_version(
            session,
            principal=principal,
            model=model,
            experiment_id=origin.experiment_id,
            artifact_path=origin.artifact_path,
            description=description,
            tags=tags,
            source=source,
            logged_model_id=origin.logged_model_id,
        )
    except UnknownExperiment:
        if origin.experiment_id is None:
            raise not_found(f"Logged model with ID '{origin.logged_model_id}' not found.") from None
        raise not_found(f"Run with id={origin.experiment_id.hex} not found") from None
    if model_id:
        await logged_models.note_version(session, principal, model_id, model.name, version.version)
    return model, version


async def get_version(
    session: AsyncSession,
    principal: Principal,
    name: str | None,
    version: Any,
    *,
    write: bool = False,
) -> tuple[RegisteredModel, ModelVersion]:
    model = await get_model(session, principal, name, write=write)
    number = parse_version(version)
    found = await repository.version(session, model.id, number, lock=write)
    if found is None:
        raise not_found(f"Model Version (name={model.name}, version={number}) not found")
    return model, found


async def set_alias(
    session: AsyncSession, principal: Principal, name: str | None, alias: str | None, version: Any
) -> None:
    alias = check_alias(alias)
    model = await get_model(session, principal, name, write=True)
    number = parse_version(version)
    if await repository.version(session, model.id, number) is None:
        raise not_found(f"Model Version (name={model.name}, version={number}) not found")
    await service.set_alias(session, model=model, alias=alias, number=number)


async def version_by_alias(
    session: AsyncSession, principal: Principal, name: str | None, alias: str | None
) -> tuple[RegisteredModel, ModelVersion]:
    if not alias:
        raise invalid("Missing value for required parameter 'alias'.")
    model = await get_model(session, principal, name)
    version = await repository.version_by_alias(session, model.id, alias)
    if version is None:
        raise not_found(f"Registered model alias {alias} not found.")
    return model, version


async def delete_alias(
    session: AsyncSession, principal: Principal, name: str | None, alias: str | None
) -> None:
    if not alias:
        raise invalid("Missing value for required parameter 'alias'.")
    model = await get_model(session, principal, name, write=True)
    if await repository.version_by_alias(session, model.id, alias) is None:
        return  # MLflow: deleting an alias that is not there is not an error
    await service.delete_alias(session, model=model, alias=alias)


async def download_uri(session: AsyncSession, version: ModelVersion) -> str:
    """Where the client downloads the version's files: its run's artifact URI and path (a
    logged model's: the logged model's artifact URI)."""
    if version.source and (found := MODELS_SOURCE.match(version.source)):
        logged = await session.get(LoggedModel, found.group(1))
        if logged is not None:
            return str(logged_models.to_mlflow(logged)["info"]["artifact_uri"])
    if version.experiment_id is None:
        return version.source or ""
    run = await session.get(Experiment, version.experiment_id)
    experiment = ids.experiment_id_of(run.project_id if run else None)
    root = ids.artifact_uri(experiment, ids.run_id_of(version.experiment_id))
    return f"{root}/{version.artifact_path}" if version.artifact_path else root


async def transition_stage(
    session: AsyncSession, principal: Principal, name: str | None, version: Any, stage: str | None
) -> tuple[RegisteredModel, ModelVersion]:
    model, found = await get_version(session, principal, name, version, write=True)
    wanted = (stage or "").strip().lower()
    if wanted not in {s.lower() for s in STAGES}:
        raise invalid(f"Invalid Model Version stage: {stage}.")
    if wanted == "archived":
        await service.archive_version(session, model=model, version=found)
        return model, found
    if wanted == "none" and found.archived_at is None:
        return model, found
    raise invalid(
        f"Runyard does not support the model stage '{stage}' (MLflow deprecates stages): use "
        "aliases (set-alias) instead; only 'Archived' is served, as archiving the version."
    )
