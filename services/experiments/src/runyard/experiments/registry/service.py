"""Model registry use cases. They change rows and write outbox events in the caller's
transaction; they never commit.

Concurrency: every change to a model's versions or aliases first locks the model's row
(``SELECT ... FOR UPDATE``), so version numbers come from its ``last_version`` counter one at a
time, an alias moves from one version to another with exactly one winner per moment, and a
version is deleted or archived only while no alias points at it.

A version's status: ``ready`` when the experiment has the artifact (a file at
``artifact_path``, or files under it): its size and SHA-256 are recorded from the artifact
store's rows; ``pending`` while the artifact is missing and the experiment can still upload it
(pending, running or paused); ``failed`` when it is missing and the experiment has ended (or is
gone). ``verify`` looks again: a pending (or failed) version becomes ready once the files are
there; when the experiment ends, its pending versions are settled without it
(``settle_versions_of``, from the experiment's lifecycle event).

A version made from an MLflow logged model made outside a run (``logged_model_id``) is the
model's own files instead: ``pending`` while the model is ``PENDING`` (its files still being
uploaded), settled when the model is finalized: ``ready`` with the files it has (an external
model may have none), ``failed`` if its upload failed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
from jsonschema import SchemaError, validators  # type: ignore[import-untyped]
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access, errors
from runyard.experiments.artifacts.repository import Holder, of_experiment
from runyard.experiments.artifacts.service import check_path
from runyard.experiments.models import TERMINAL, Artifact, Experiment, LoggedModel
from runyard.experiments.registry import repository
from runyard.experiments.registry.errors import (
    AliasHeld,
    InvalidArtifactPath,
    InvalidJsonSchema,
    ModelNameTaken,
    UnknownExperiment,
    UnknownVersion,
    VersionArchived,
)
from runyard.experiments.registry.models import ModelAlias, ModelVersion, RegisteredModel
from runyard.experiments.registry.schemas import ModelCreate, ModelUpdate, VersionUpdate
from runyard.experiments.repository import get_owned, unique_or_conflict
from runyard.experiments.schemas import changed_fields, requested_changes
from runyard.experiments.users import owner_fields
from runyard.shared.contracts.models import (
    ModelRegistered,
    ModelVersionAliasRemoved,
    ModelVersionAliasSet,
    ModelVersionArchived,
    ModelVersionCreated,
)
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import EventPayload
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.outbox import emit

NOT_NULLABLE = {"name", "tags"}


def name_taken(name: str) -> dict[str, ProblemError]:
    return {"uq_registered_models_owner_id_name": ModelNameTaken(name)}


# --- events --------------------------------------------------------------------------------------


async def model_fields(session: AsyncSession, model: RegisteredModel) -> dict[str, Any]:
    return {
        "model_id": model.id,
        "model_name": model.name,
        "owner_id": model.owner_id,
        **await owner_fields(session, model.owner_id),
    }


async def version_fields(
    session: AsyncSession, model: RegisteredModel, version: ModelVersion
) -> dict[str, Any]:
    experiment = (
        await session.get(Experiment, version.experiment_id) if version.experiment_id else None
    )
    return {
        **await model_fields(session, model),
        "model_version": version.version,
        "version_id": version.id,
        "experiment_id": version.experiment_id,
        "experiment_name": experiment.name if experiment else None,
        "metric_name": version.metric_name,
        "metric_value": version.metric_value,
    }


async def announce(session: AsyncSession, model: RegisteredModel, payload: EventPayload) -> None:
    await emit(session, payload, subject=model.id)


# --- models --------------------------------------------------------------------------------------


async def create_model(
    session: AsyncSession, *, principal: Principal, data: ModelCreate
) -> RegisteredModel:
    require_writer(principal)
    model = RegisteredModel(
        id=new_id(),
        owner_id=principal.user_id,
        name=data.name,
        description=data.description,
        tags=dict(data.tags),
        last_version=0,
    )
    async with unique_or_conflict(session, name_taken(data.name)):
        session.add(model)
    await announce(
        session,
        model,
        ModelRegistered(**await model_fields(session, model), description=model.description),
    )
    return model


async def get_model(
    session: AsyncSession, *, principal: Principal, model_id: uuid.UUID, write: bool = False
) -> RegisteredModel:
    """``write``: the model's row stays locked until the transaction ends."""
    return await get_owned(
        session,
        RegisteredModel,
        model_id,
        principal=principal,
        what="registered model",
        write=write,
    )


async def model_by_name(
    session: AsyncSession,
    *,
    principal: Principal,
    name: str,
    owner_id: uuid.UUID | None = None,
    write: bool = False,
) -> RegisteredModel:
    """The model ``name`` of ``owner_id`` (default: the caller); 404 if none the caller may
    read (or, with ``write``, change; then locked)."""
    if write:
        require_writer(principal)
    model = await repository.by_name(session, owner_id or principal.user_id, name, lock=write)
    (access.check_write if write else access.check_read)(principal, model, "registered model")
    assert model is not None
    return model


async def update_model(
    session: AsyncSession, *, principal: Principal, model: RegisteredModel, data: ModelUpdate
) -> RegisteredModel:
    """Writes only what changed (``model`` read with ``write=True``)."""
    changes = requested_changes(data, not_nullable=NOT_NULLABLE)
    changed = changed_fields(model, changes)
    if changed:
        async with unique_or_conflict(session, name_taken(changes.get("name", ""))):
            for key in changed:
                setattr(model, key, changes[key])
    return model


async def delete_model(session: AsyncSession, *, model: RegisteredModel) -> None:
    """The model with its versions and aliases (``model`` read with ``write=True``)."""
    await session.delete(model)
    await session.flush()


# --- versions ------------------------------------------------------------------------------------


def check_json_schema(field: str, schema: dict[str, Any] | None) -> None:
    """422 naming ``field`` unless ``schema`` is a valid JSON Schema (of the draft its
    ``$schema`` names; 2020-12 by default)."""
    if schema is None:
        return
    validator = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        reason = f"{exc.message}" + (f" (at /{where})" if where else "")
        raise InvalidJsonSchema(field, reason) from None
    # the prediction log compiles it: a schema it could not compile is refused now, and a $ref
    # to another document (a URL the service would fetch: SSRF) is never resolved
    try:
        compile_schema(schema)
    except ValueError as exc:
        reason = str(exc).splitlines()[0][:300]
        raise InvalidJsonSchema(field, reason) from None


def refuse_retrieval(uri: str) -> Any:
    """The schema compiler's retriever: no document outside the schema is ever fetched."""
    raise ValueError(f"a $ref to another document ({uri[:200]}) is not allowed")


def compile_schema(schema: dict[str, Any]) -> Any:
    """The compiled validator of a JSON Schema (jsonschema-rs), with local ``$ref`` only;
    ``ValueError`` if it cannot be compiled."""
    try:
        return jsonschema_rs.validator_for(schema, retriever=refuse_retrieval)
    except ValueError:
        raise
    except Exception as exc:  # jsonschema-rs' own errors for a schema it cannot compile
        raise ValueError(str(exc)) from None


def check_artifact_path(path: str) -> str:
    """'' (every artifact of the experiment) or a relative path; a trailing ``/`` is dropped."""
    path = path.rstrip("/")
    if not path:
        return ""
    try:
        return check_path(path)
    except errors.InvalidArtifactPath as exc:
        raise InvalidArtifactPath(str(exc.errors[0]["msg"]) if exc.errors else str(exc)) from None


@dataclass(frozen=True)
class Fingerprint:
    size: int
    sha256: str
    file_count: int


def fingerprint(files: Sequence[Artifact], path: str) -> Fingerprint | None:
    """Size and SHA-256 of the artifact: a file's own, or a directory's: the sum of its files'
    sizes and the SHA-256 of its manifest, one ``<sha256>  <path relative to it>`` line per
    file in path order (so equal trees have equal hashes wherever they are stored)."""
    if not files:
        return None
    if len(files) == 1 and files[0].path == path:
        return Fingerprint(files[0].size, files[0].sha256, 1)
    prefix = f"{path}/" if path else ""
    manifest = hashlib.sha256()
    for f in files:
        manifest.update(f"{f.sha256}  {f.path.removeprefix(prefix)}\n".encode())
    return Fingerprint(sum(f.size for f in files), manifest.hexdigest(), len(files))


def mark_ready(version: ModelVersion, found: Fingerprint) -> None:
    version.status, version.status_message = "ready", None
    version.size, version.sha256, version.file_count = found.size, found.sha256, found.file_count


#: where a version's files are: an experiment's artifacts, or a logged model's own files
Source = Experiment | LoggedModel


async def source_of(session: AsyncSession, version: ModelVersion) -> Source | None:
    """The experiment or logged model the version's files come from (``None``: gone)."""
    if version.logged_model_id is not None:
        return await session.get(LoggedModel, version.logged_model_id)
    if version.experiment_id is not None:
        return await session.get(Experiment, version.experiment_id)
    return None


def files_root(version: ModelVersion) -> tuple[Holder, str] | None:
    """Whose files the version is and the path they sit under ('': all of a logged model's);
    ``None``: a version with no source."""
    if version.logged_model_id is not None:
        return Holder(logged_model_id=version.logged_model_id), ""
    if version.experiment_id is not None:
        return of_experiment(version.experiment_id), version.artifact_path
    return None


async def stored_files(session: AsyncSession, version: ModelVersion) -> list[Artifact]:
    """The files the version is, as stored now (its source's, under its path), in path order."""
    root = files_root(version)
    return [] if root is None else await repository.artifact_files(session, *root)


async def version_files(session: AsyncSession, version: ModelVersion) -> list[tuple[str, Artifact]]:
    """The version's files as stored now, in path order, each with its path within the version:
    relative to the version's directory, or the file's name for a version of one file (what a
    download of ``models:/<name>/<version>`` writes)."""
    root = files_root(version)
    if root is None:
        return []
    path = root[1]
    files = await stored_files(session, version)
    if len(files) == 1 and path and files[0].path == path:
        return [(path.rsplit("/", 1)[-1], files[0])]
    prefix = f"{path}/" if path else ""
    return [(f.path.removeprefix(prefix), f) for f in files]


async def check_artifact(
    session: AsyncSession, version: ModelVersion, source: Source | None
) -> None:
    """Set the version's status, size and hash from what its source has stored."""
    if isinstance(source, LoggedModel):
        await check_model_files(session, version, source)
        return
    experiment = source
    files = await stored_files(session, version) if experiment is not None else []
    found = fingerprint(files, version.artifact_path)
    if found is not None:
        mark_ready(version, found)
    elif experiment is not None and experiment.status not in TERMINAL:
        version.status = "pending"
        version.status_message = (
            f"waiting for the experiment ({experiment.status}) to upload "
            f"{version.artifact_path or 'its artifacts'!r}"
        )
    else:
        version.status = "failed"
        what = "experiment is gone" if experiment is None else f"experiment is {experiment.status}"
        version.status_message = (
            f"no artifact at {version.artifact_path or '(any path)'!r} and the {what}"
        )


#: a logged model that is READY with no files (MLflow's external models): an empty manifest
NO_FILES = Fingerprint(0, hashlib.sha256(b"").hexdigest(), 0)


async def check_model_files(
    session: AsyncSession, version: ModelVersion, model: LoggedModel
) -> None:
    """Set the version's status, size and hash from the logged model's own files: ready once the
    model is READY (whatever files it has: an external model has none), pending while it is
    PENDING, failed if its upload failed."""
    if model.status == "PENDING":
        version.status = "pending"
        version.status_message = f"waiting for the logged model {model.id} to upload its files"
    elif model.status == "READY":
        files = await stored_files(session, version)
        found = fingerprint(files, "") or NO_FILES
        mark_ready(version, found)
    else:
        version.status = "failed"
        version.status_message = f"the logged model {model.id} is {model.status}"


def headline_metric(experiment: Experiment) -> tuple[str | None, float | None]:
    """The experiment's best metric and its value (or its final value), if it has one."""
    name = experiment.best_metric
    value: Any = experiment.best_value
    if value is None:
        value = (experiment.metrics or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, None
    return name, float(value)


async def create_version(
    session: AsyncSession,
    *,
    principal: Principal,
    model: RegisteredModel,
    experiment_id: uuid.UUID | None,
    artifact_path: str,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    input_schema: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    source: str | None = None,
    logged_model_id: str | None = None,
) -> ModelVersion:
    """The model's next version, made from the experiment's artifact, or (``logged_model_id``,
    no experiment) from a logged model's own files (``model`` read with ``write=True``). 422 for
    an experiment or logged model the caller cannot read or of another owner."""
    path = check_artifact_path(artifact_path)
    check_json_schema("input_schema", input_schema)
    check_json_schema("output_schema", output_schema)
    origin: Source | None = (
        await session.get(LoggedModel, logged_model_id)
        if logged_model_id is not None
        else await session.get(Experiment, experiment_id)
    )
    if (
        origin is None
        or origin.deleted_at is not None
        or origin.owner_id != model.owner_id
        or not access.can_read(principal, origin.owner_id)
        or (isinstance(origin, LoggedModel) and path)
    ):
        raise UnknownExperiment()
    number = await session.scalar(
        update(RegisteredModel)
        .where(RegisteredModel.id == model.id)
        .values(last_version=RegisteredModel.last_version + 1, updated_at=func.now())
        .returning(RegisteredModel.last_version)
    )
    assert number is not None
    model.last_version = number
    experiment = origin if isinstance(origin, Experiment) else None
    metric_name, metric_value = headline_metric(experiment) if experiment else (None, None)
    version = ModelVersion(
        id=new_id(),
        model_id=model.id,
        owner_id=model.owner_id,
        version=number,
        description=description,
        tags=dict(tags or {}),
        experiment_id=experiment.id if experiment else None,
        logged_model_id=logged_model_id,
        artifact_path=path,
        source=source,
        input_schema=input_schema,
        output_schema=output_schema,
        metric_name=metric_name,
        metric_value=metric_value,
    )
    await check_artifact(session, version, origin)
    session.add(version)
    await session.flush()
    await announce(
        session,
        model,
        ModelVersionCreated(
            **await version_fields(session, model, version),
            artifact_path=version.artifact_path,
            logged_model_id=version.logged_model_id,
            status=version.status,
            size=version.size,
            sha256=version.sha256,
        ),
    )
    return version


async def get_version(
    session: AsyncSession, model: RegisteredModel, number: int, *, lock: bool = False
) -> ModelVersion:
    version = await repository.version(session, model.id, number, lock=lock)
    if version is None:
        raise errors.NotFound("model version")
    return version


async def update_version(
    session: AsyncSession, *, version: ModelVersion, data: VersionUpdate
) -> ModelVersion:
    changes = requested_changes(data, not_nullable={"tags"})
    for field in ("input_schema", "output_schema"):
        if field in changes:
            check_json_schema(field, changes[field])
    for key in changed_fields(version, changes):
        setattr(version, key, changes[key])
    await session.flush()
    return version


async def verify_version(session: AsyncSession, *, version: ModelVersion) -> ModelVersion:
    """Look for a pending or failed version's artifact again (a ready one stays as it is)."""
    if version.status != "ready":
        await check_artifact(session, version, await source_of(session, version))
        await session.flush()
    return version


async def settle_versions_of(
    session: AsyncSession,
    *,
    experiment_id: uuid.UUID | None = None,
    logged_model_id: str | None = None,
) -> int:
    """The experiment ended (or is gone), or the logged model was finalized: each of its pending
    versions becomes ``ready`` if its files are there by now, else ``failed`` (or stays pending
    while a logged model is); nobody has to call ``verify``. How many it looked at."""
    of_source = (
        ModelVersion.logged_model_id == logged_model_id
        if logged_model_id is not None
        else ModelVersion.experiment_id == experiment_id
    )
    pending = (
        await session.scalars(
            select(ModelVersion)
            .where(of_source, ModelVersion.status == "pending")
            .order_by(ModelVersion.id)
            .with_for_update()
        )
    ).all()
    if not pending:
        return 0
    source = await source_of(session, pending[0])
    for version in pending:
        await check_artifact(session, version, source)
    await session.flush()
    return len(pending)


async def archive_version(
    session: AsyncSession, *, model: RegisteredModel, version: ModelVersion
) -> ModelVersion:
    """409 if the version holds an alias; archiving an archived version changes nothing
    (``model`` read with ``write=True``)."""
    if version.archived_at is not None:
        return version
    held = await repository.aliases_of(session, version.id)
    if held:
        raise AliasHeld("archive", version.version, held)
    version.archived_at = utcnow()
    await session.flush()
    await announce(
        session, model, ModelVersionArchived(**await version_fields(session, model, version))
    )
    return version


async def delete_version(
    session: AsyncSession, *, model: RegisteredModel, version: ModelVersion
) -> None:
    """409 if the version holds an alias (``model`` read with ``write=True``)."""
    held = await repository.aliases_of(session, version.id)
    if held:
        raise AliasHeld("delete", version.version, held)
    await session.execute(delete(ModelVersion).where(ModelVersion.id == version.id))


# --- aliases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AliasChange:
    alias: str
    version: ModelVersion
    previous_version: int | None


async def set_alias(
    session: AsyncSession, *, model: RegisteredModel, alias: str, number: int
) -> AliasChange:
    """Point ``alias`` at version ``number``: the alias's one row is inserted or moved in place
    while the model's row is locked (``model`` read with ``write=True``), so concurrent moves
    queue and each sees the previous one's result. Setting it where it is changes nothing."""
    version = await repository.version(session, model.id, number)
    if version is None:
        raise UnknownVersion(number)
    if version.archived_at is not None:
        raise VersionArchived(number)
    row = await session.scalar(
        select(ModelAlias)
        .where(ModelAlias.model_id == model.id, ModelAlias.alias == alias)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    previous: int | None = None
    if row is not None:
        if row.version_id == version.id:
            return AliasChange(alias, version, number)
        previous = await session.scalar(
            select(ModelVersion.version).where(ModelVersion.id == row.version_id)
        )
        row.version_id = version.id
        row.updated_at = utcnow()
    else:
        session.add(ModelAlias(model_id=model.id, alias=alias, version_id=version.id))
    await session.flush()
    await announce(
        session,
        model,
        ModelVersionAliasSet(
            **await version_fields(session, model, version),
            alias=alias,
            previous_version=previous,
        ),
    )
    return AliasChange(alias, version, previous)


async def version_by_alias(
    session: AsyncSession, model: RegisteredModel, alias: str
) -> ModelVersion:
    version = await repository.version_by_alias(session, model.id, alias)
    if version is None:
        raise errors.NotFound("alias")
    return version


async def delete_alias(session: AsyncSession, *, model: RegisteredModel, alias: str) -> None:
    """404 if the model has no such alias (``model`` read with ``write=True``)."""
    version = await version_by_alias(session, model, alias)
    await session.execute(
        delete(ModelAlias).where(ModelAlias.model_id == model.id, ModelAlias.alias == alias)
    )
    await announce(
        session,
        model,
        ModelVersionAliasRemoved(**await version_fields(session, model, version), alias=alias),
    )
