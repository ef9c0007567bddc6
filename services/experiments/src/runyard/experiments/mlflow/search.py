"""MLflow's search-runs and search-experiments over Runyard's experiments and projects.

Pages are MLflow's: ``page_token`` is base64 of ``{"offset": n}`` (what MLflow's SQL store
returns, so a token behaves as a client expects), and the order always ends with a unique key
(the run's or project's id), so consecutive pages neither repeat nor skip a row while nothing is
written. A keyset token would not fit MLflow's orderings by any metric, param or tag with missing
values last; an offset costs one index or heap walk of the rows before the page.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    false,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from runyard.experiments import access
from runyard.experiments.mlflow.convert import RunFields
from runyard.experiments.mlflow.errors import invalid
from runyard.experiments.mlflow.filter import (
    ATTRIBUTE,
    DEFAULT_PROJECT_ID,
    parse_order_by,
    project_conditions,
    project_order,
    run_conditions,
    run_order,
)
from runyard.experiments.mlflow.ids import DEFAULT_EXPERIMENT_NAME
from runyard.experiments.models import Experiment, Project
from runyard.experiments.tracking.service import epoch_events
from runyard.shared.identity import Principal

#: MLflow's ``SEARCH_MAX_RESULTS_THRESHOLD`` (runs and experiments alike)
MAX_RESULTS = 50000
VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")


def check_max_results(max_results: int) -> None:
    """MLflow's ``_validate_max_results_param``."""
    if max_results < 1:
        raise invalid(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be "
            "a positive integer"
        )
    if max_results > MAX_RESULTS:
        raise invalid(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be at "
            f"most {MAX_RESULTS}"
        )


def check_view_type(view_type: str) -> None:
    if view_type not in VIEW_TYPES:
        raise invalid(f"Invalid view_type '{view_type}'. Valid values are {list(VIEW_TYPES)}")


def page_offset(page_token: str | None) -> int:
    """The offset a page token holds (0 without one), with MLflow's messages for a bad token."""
    if not page_token:
        return 0
    try:
        decoded = base64.b64decode(page_token + "=" * (-len(page_token) % 4))
    except (binascii.Error, ValueError):
        raise invalid("Invalid page token, could not base64-decode") from None
    try:
        parsed = json.loads(decoded)
    except ValueError:
        raise invalid(f"Invalid page token, decoded value={decoded!r}") from None
    offset = parsed.get("offset") if isinstance(parsed, dict) else None
    if not offset or isinstance(offset, bool):
        raise invalid(f"Invalid page token, parsed value={parsed}")
    try:
        number = int(offset)
    except (TypeError, ValueError):
        raise invalid(f"Invalid page token, not stringable {offset}") from None
    if number < 0 or number >= 2**62:
        raise invalid(f"Invalid page token, parsed value={parsed}")
    return number


def page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


async def _custom_plans(session: AsyncSession) -> None:
    # A plan for these values: a generic plan cannot use a LIKE prefix or a JSONB containment
    # whose pattern and document are parameters (as the Runyard search does).
    await session.execute(select(func.set_config("plan_cache_mode", "force_custom_plan", True)))


async def _page(
    session: AsyncSession, query: Select[Any], offset: int, max_results: int
) -> tuple[list[Any], str | None]:
    """One page of the query's entities (one selected entity) or rows (several columns: run
    through the connection, as Core, which skips the ORM's per-row loading)."""
    paged = query.offset(offset).limit(max_results + 1)
    if len(query.column_descriptions) == 1:
        rows = list((await session.scalars(paged)).all())
    else:
        rows = list((await (await session.connection()).execute(paged)).all())
    if len(rows) > max_results:
        return rows[:max_results], page_token(offset + max_results)
    return rows, None


#: how many runs of MLflow's default order a filtered search of one experiment looks through
#: first: ``PROBE_ROWS``, or ``PROBE_FACTOR`` times the rows a deep page needs
PROBE_ROWS = 20_000
PROBE_FACTOR = 10
DEFAULT_ORDER = (Experiment.started_at.desc().nulls_last(), Experiment.id.asc())


def _up_to(started_at: datetime | None, run_id: uuid.UUID) -> ColumnElement[bool]:
    """Runs at or before (started_at, run_id) in the default order (start_time DESC, missing
    last, then run id): a range of the default order index."""
    if started_at is None:
        return or_(Experiment.started_at.is_not(None), Experiment.id <= run_id)
    return and_(
        Experiment.started_at >= started_at,
        or_(Experiment.started_at > started_at, Experiment.id <= run_id),
    )


#: the planner settings that make it walk the default order index: whatever the filter keeps
PROBE_PLAN = ("enable_seqscan", "enable_bitmapscan", "enable_sort")


async def _probed_page(
    session: AsyncSession, runs: Select[Any], query: Select[Any], offset: int, max_results: int
) -> tuple[list[Any], str | None]:
    """A filtered page in the default order, looking through the newest runs first.

    The planner cannot tell how many runs a metric, param or tag comparison keeps (it guesses
    one in 200), so it reads and sorts every run of the experiment when walking the default
    order index would find the page in its first rows. Walking the newest ``PROBE_ROWS`` first
    (a range of that index: at most that many rows read) answers any filter that keeps more
    than a few percent of the runs; only a rarer one also runs the query the planner's way
    (a JSONB index for a tag, ...). Both give the same rows: the range is a prefix of the order.
    """
    budget = max(PROBE_ROWS, PROBE_FACTOR * (offset + max_results + 1))
    # ``runs``: the experiment's runs, deleted ones too (an index-only scan)
    edge_query = runs.with_only_columns(Experiment.started_at, Experiment.id)
    edge_query = edge_query.order_by(*DEFAULT_ORDER).offset(budget - 1).limit(1)
    edge = (await session.execute(edge_query)).first()
    if edge is not None:
        for setting in PROBE_PLAN:
            await session.execute(text(f"SET LOCAL {setting} = off"))
        try:
            rows, token = await _page(session, query.where(_up_to(*edge)), offset, max_results)
        finally:
            for setting in PROBE_PLAN:
                await session.execute(text(f"SET LOCAL {setting} TO DEFAULT"))
        if token is not None:
            return rows, token
    return await _page(session, query, offset, max_results)


#: what a run's MLflow JSON is made of (``convert.RunFields``): a page of runs reads these alone
PAGE_COLUMNS = (
    Experiment.id,
    Experiment.project_id,
    Experiment.owner_id,
    Experiment.name,
    Experiment.status,
    Experiment.started_at,
    Experiment.ended_at,
    Experiment.updated_at,
    Experiment.deleted_at,
    Experiment.hyperparameters,
    Experiment.kv_tags,
    Experiment.metrics,
    Experiment.inputs,
    Experiment.outputs,
)


def runs_of(principal: Principal, experiment_ids: list[uuid.UUID | None]) -> ColumnElement[bool]:
    """Runs of the given MLflow experiments: projects, and None for the virtual Default
    experiment (the caller's own experiments that belong to no project)."""
    projects = [i for i in experiment_ids if i is not None]
    parts: list[ColumnElement[bool]] = []
    if projects:
        parts.append(Experiment.project_id.in_(projects))
    if len(projects) != len(experiment_ids):
        parts.append(
            and_(Experiment.project_id.is_(None), Experiment.owner_id == principal.user_id)
        )
    return or_(*parts) if parts else false()


async def search_runs(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_ids: list[uuid.UUID | None],
    filter: str | None,
    view_type: str,
    max_results: int,
    order_by: list[str],
    page_token: str | None,
) -> tuple[list[RunFields], str | None]:
    """One page of the runs (Runyard experiments) the caller may read, MLflow's filter and
    order applied; ``MlflowError`` (INVALID_PARAMETER_VALUE) for a bad filter, order_by, page
    token, view type or max_results."""
    check_max_results(max_results)
    check_view_type(view_type)
    conditions = run_conditions(filter)
    ordering = run_order(order_by)
    offset = page_offset(page_token)
    # rows of the columns the JSON needs, not ORM objects: a page of 1,000 runs costs half
    runs = select(*PAGE_COLUMNS).where(runs_of(principal, experiment_ids))
    scope = access.owner_scope(Experiment.owner_id, principal)
    if scope is not None:
        runs = runs.where(scope)
    query = runs.where(*conditions).order_by(*ordering)
    if _by_metrics(filter, order_by):
        # latest metrics the SQL path has not folded into the runs' rows yet: folded first
        readable = [runs_of(principal, experiment_ids), *([] if scope is None else [scope])]
        await epoch_events.fold_owned(session, *readable)
    if view_type == "ACTIVE_ONLY":
        query = query.where(Experiment.deleted_at.is_(None))
    elif view_type == "DELETED_ONLY":
        query = query.where(Experiment.deleted_at.is_not(None))
    await _custom_plans(session)
    if conditions and len(experiment_ids) == 1 and _default_order(order_by):
        return await _probed_page(session, runs, query, offset, max_results)
    return await _page(session, query, offset, max_results)


def _by_metrics(filter: str | None, order_by: list[str]) -> bool:
    """The filter or the order may name a metric (``metrics.x``, ``metric.x``, quoted or not):
    a word, not a parse, so it errs only towards folding."""
    return any("metric" in part.lower() for part in [filter or "", *order_by])


def _default_order(order_by: list[str]) -> bool:
    """Ordered as MLflow's default: by start_time DESC (then run id)."""
    if not order_by:
        return True
    return len(order_by) == 1 and parse_order_by(order_by[0]) in (
        (ATTRIBUTE, "start_time", False),
        (ATTRIBUTE, "created", False),
        (ATTRIBUTE, "Created", False),
    )


#: The Default experiment's values in ``search_projects``' union (its other columns are NULL):
#: active, no tags, no times (the oldest in any order by time)
_DEFAULT_ROW: dict[str, Any] = {
    "id": DEFAULT_PROJECT_ID,
    "name": DEFAULT_EXPERIMENT_NAME,
    "tags": {},
    "lifecycle_stage": "active",
    "version": 1,
}


def _with_default(scope: ColumnElement[bool] | None) -> Any:
    """``Project`` over the projects in ``scope`` and one row more, the virtual Default
    experiment, so that a search filters, orders and pages it like any other."""
    table = Project.__table__
    owned = select(*table.columns)
    if scope is not None:
        owned = owned.where(scope)
    default = select(
        *(
            (literal(_DEFAULT_ROW[c.name], c.type) if c.name in _DEFAULT_ROW else null())
            .cast(c.type)
            .label(c.name)
            for c in table.columns
        )
    )
    return aliased(Project, union_all(owned, default).subquery("projects"))


async def search_projects(
    session: AsyncSession,
    *,
    principal: Principal,
    filter: str | None,
    view_type: str,
    max_results: int,
    order_by: list[str],
    page_token: str | None,
) -> tuple[list[Project | None], str | None]:
    """One page of the projects (MLflow experiments) the caller may read, and the virtual
    Default experiment (``None``) where its attributes put it, as MLflow lists its own."""
    check_max_results(max_results)
    check_view_type(view_type)
    projects = _with_default(access.owner_scope(Project.owner_id, principal))
    conditions = project_conditions(filter, projects)
    ordering = project_order(order_by, projects)
    offset = page_offset(page_token)
    await _custom_plans(session)
    query = select(projects).where(*conditions)
    if view_type == "ACTIVE_ONLY":
        query = query.where(projects.lifecycle_stage == "active")
    elif view_type == "DELETED_ONLY":
        query = query.where(projects.lifecycle_stage == "deleted")
    rows, token = await _page(session, query.order_by(*ordering), offset, max_results)
    found: list[Project | None] = []
    for row in rows:
        if row.id == DEFAULT_PROJECT_ID:
            session.expunge(row)  # no project: nothing to write back
            found.append(None)
        else:
            found.append(row)
    return found, token
