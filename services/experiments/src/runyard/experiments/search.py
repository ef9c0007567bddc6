"""Experiment search: scope (whose experiments), full text, the filter language, ordering and
keyset pagination, all in one SELECT with bound parameters.

Pages are keyset pages over (sort key, id): a cursor holds the last row's sort key and id, so a
deep page costs what the first one does and rows inserted meanwhile never shift a page. Sort keys
that may be missing (a metric, ``started_at`` ...) sort last in both directions.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal_column, or_, select, tuple_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access, pagination
from runyard.experiments.models import Experiment
from runyard.experiments.query_language import (
    Ordering,
    QueryLanguageError,
    compile_filter,
    parse_order_by,
    slugify,
)
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger

log = get_logger(__name__)

TEXT_SEARCH_CONFIG = literal_column("'english'::regconfig")


@dataclass(frozen=True)
class SearchParams:
    filter: str | None = None
    q: str | None = None
    order_by: str | None = None
    status: str | None = None
    model_type: str | None = None
    dataset_id: uuid.UUID | None = None
    tag: str | None = None
    owner_id: uuid.UUID | None = None


def language_problem(exc: QueryLanguageError) -> ProblemError:
    title = "Invalid filter" if exc.param == "filter" else "Invalid order_by"
    return ProblemError(400, title, exc.message, **exc.problem_extra())


def validate(params: SearchParams) -> tuple[ColumnElement[bool], Ordering]:
    """The compiled filter and ordering; a 400 problem pointing at the error if invalid."""
    try:
        return compile_filter(params.filter), parse_order_by(params.order_by)
    except QueryLanguageError as exc:
        raise language_problem(exc) from None


def sort_value(row: Experiment, ordering: Ordering) -> Any:
    if ordering.key.startswith("metrics."):
        value = row.metrics.get(ordering.key[len("metrics.") :])
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if is_number else None
    return getattr(row, ordering.key)


def encode(row: Experiment, ordering: Ordering) -> str:
    value = sort_value(row, ordering)
    if isinstance(value, datetime):
        value = value.isoformat()
    return pagination.encode_cursor(
        {"k": "experiments", "o": ordering.signature, "v": value, "i": str(row.id)}
    )


def decode(cursor: str | None, ordering: Ordering) -> tuple[Any, uuid.UUID] | None:
    data = pagination.decode_cursor(cursor, kind="experiments")
    if data is None:
        return None
    if data.get("o") != ordering.signature:
        raise pagination.invalid_cursor()
    try:
        row_id = uuid.UUID(str(data["i"]))
        value = data["v"]
        if value is None:
            if not ordering.nullable:
                raise ValueError("null sort key")
        elif ordering.kind == "datetime":
            value = datetime.fromisoformat(value)
        elif ordering.kind == "text":
            value = str(value) if isinstance(value, str) else _bad()
        elif ordering.kind == "int":
            value = value if isinstance(value, int) and not isinstance(value, bool) else _bad()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
        else:
            _bad()
    except (KeyError, ValueError, TypeError) as exc:
        raise pagination.invalid_cursor() from exc
    return value, row_id


def _bad() -> Any:
    raise ValueError("cursor value of the wrong type")


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
) -> tuple[Select[tuple[Experiment]], Ordering]:
    """The page's SELECT (one row more than ``limit``: it tells whether a next page exists)."""
    condition, ordering = validate(params)
    query = select(Experiment).where(condition)
    scope = access.owner_scope(Experiment.owner_id, principal, params.owner_id)
    if scope is not None:
        query = query.where(scope)
    if params.status is not None:
        query = query.where(Experiment.status == params.status)
    if params.model_type is not None:
        query = query.where(Experiment.model_type == params.model_type)
    if params.dataset_id is not None:
        query = query.where(Experiment.dataset_id == params.dataset_id)
    if params.tag is not None:
        query = query.where(Experiment.tags.contains([slugify(params.tag)]))
    if params.q is not None and params.q.strip():
        tsquery = func.websearch_to_tsquery(TEXT_SEARCH_CONFIG, params.q)
        query = query.where(Experiment.search_vector.op("@@")(tsquery))
    position = decode(cursor, ordering)
    if position is not None:
        query = query.where(after(ordering, *position))
    return query.order_by(*order_clauses(ordering)).limit(limit + 1), ordering


async def search_experiments(
    session: AsyncSession,
    *,
    principal: Principal,
    params: SearchParams,
    limit: int,
    cursor: str | None,
    statement_timeout_ms: int = 5000,
) -> tuple[Sequence[Experiment], str | None]:
    query, ordering = build_query(principal, params, limit, cursor)
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
        rows = (await session.scalars(query)).all()
    except DBAPIError as exc:
        if "QueryCanceled" not in type(getattr(exc.orig, "__cause__", exc.orig)).__name__:
            raise
        log.warning("experiments.search.timeout", filter=params.filter, q=params.q)
        raise ProblemError(
            503,
            "Search took too long",
            f"The search ran longer than {statement_timeout_ms} ms; narrow it down (a status, "
            "model type or tag, a time range) and try again.",
        ) from None
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode(rows[-1], ordering)
    return rows, next_cursor
