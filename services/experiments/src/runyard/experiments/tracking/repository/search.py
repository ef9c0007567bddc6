"""The experiment search as one SELECT with bound parameters: scope (whose experiments), full
text, the filter language, ordering and keyset pagination.

Pages are keyset pages over (sort key, id): a cursor holds the last row's sort key and id, and
the ordering it was made for, so a deep page costs what the first one does and rows inserted
meanwhile never shift a page. Sort keys that may be missing (a metric, ``started_at`` ...) sort
last in both directions.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    Select,
    and_,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.experiments.models import Experiment
from runyard.experiments.tracking.query_language import Ordering, compile_filter, parse_order_by
from runyard.experiments.tracking.query_language.fields import slugify
from runyard.shared.identity import Principal
from runyard.shared.pagination import decode_cursor

TEXT_SEARCH_CONFIG: ColumnClause[Any] = literal_column("'english'::regconfig")
CURSOR_KIND = "experiments"


@dataclass(frozen=True)
class SearchParams:
    filter: str | None = None
    q: str | None = None
    order_by: str | None = None
    status: str | None = None
    model_type: str | None = None
    dataset_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None
    tag: str | None = None
    owner_id: uuid.UUID | None = None


class StatementTimeout(Exception):
    """The search ran longer than its ``statement_timeout``."""


def after(ordering: Ordering, value: Any, last_id: uuid.UUID) -> ColumnElement[bool]:
    """Rows after (value, last_id) in the ordering (NULL sort keys last)."""
    expr, row_id = ordering.expression, Experiment.id
    if not ordering.nullable:
        key = tuple_(expr, row_id)
        return key < (value, last_id) if ordering.descending else key > (value, last_id)
    id_after = row_id < last_id if ordering.descending else row_id > last_id
    if value is None:
        return and_(expr.is_(None), id_after)
    beyond = expr < value if ordering.descending else expr > value
    return or_(beyond, and_(expr == value, id_after), expr.is_(None))


def order_clauses(ordering: Ordering) -> list[Any]:
    expr = ordering.expression
    if ordering.descending:
        first = expr.desc().nulls_last() if ordering.nullable else expr.desc()
        return [first, Experiment.id.desc()]
    first = expr.asc().nulls_last() if ordering.nullable else expr.asc()
    return [first, Experiment.id.asc()]


def build_query(
    principal: Principal, params: SearchParams, limit: int, cursor: str | None
) -> tuple[Select[Experiment], Ordering]:
    """The page's SELECT (one row more than ``limit``: it tells whether a next page exists).
    Raises ``QueryLanguageError`` for an invalid filter or ordering."""
    condition, ordering = compile_filter(params.filter), parse_order_by(params.order_by)
    # runs soft-deleted through MLflow's delete-run are hidden (reading one by id still works)
    query = select(Experiment).where(condition, Experiment.deleted_at.is_(None))
    scope = access.owner_scope(Experiment.owner_id, principal, params.owner_id)
    if scope is not None:
        query = query.where(scope)
    if params.status is not None:
        query = query.where(Experiment.status == params.status)
    if params.model_type is not None:
        query = query.where(Experiment.model_type == params.model_type)
    if params.dataset_id is not None:
        query = query.where(Experiment.dataset_id == params.dataset_id)
    if params.project_id is not None:
        query = query.where(Experiment.project_id == params.project_id)
    if params.tag is not None:
        query = query.where(Experiment.tags.contains([slugify(params.tag)]))
    if params.q is not None and params.q.strip():
        tsquery = func.websearch_to_tsquery(TEXT_SEARCH_CONFIG, params.q)
        query = query.where(Experiment.search_vector.op("@@")(tsquery))
    position = decode_cursor(
        cursor, CURSOR_KIND, ordering.key_type, uuid.UUID, variant=ordering.signature
    )
    if position is not None:
        query = query.where(after(ordering, *position))
    return query.order_by(*order_clauses(ordering)).limit(limit + 1), ordering


async def run_search(
    session: AsyncSession, query: Select[Experiment], *, statement_timeout_ms: int
) -> Sequence[Experiment]:
    """The query's rows, within ``statement_timeout_ms`` (else ``StatementTimeout``)."""
    # For the rest of the transaction (the search is its last statement): a time limit, and a
    # plan made for these values (a generic plan cannot use the metric expression indexes or a
    # LIKE prefix, whose key and pattern are parameters).
    await session.execute(
        select(
            func.set_config("statement_timeout", str(statement_timeout_ms), True),
            func.set_config("plan_cache_mode", "force_custom_plan", True),
        )
    )
    try:
        return (await session.scalars(query)).all()
    except DBAPIError as exc:
        if "QueryCanceled" not in type(getattr(exc.orig, "__cause__", exc.orig)).__name__:
            raise
        raise StatementTimeout() from exc
