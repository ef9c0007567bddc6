"""Experiment search: what the caller may see, narrowed by full text, the filter language and
the fixed parameters, in the requested order, one keyset page at a time."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.models import Experiment
from runyard.experiments.tracking.query_language import (
    QueryLanguageError,
    compile_filter,
    parse_order_by,
)
from runyard.experiments.tracking.repository import search as repository
from runyard.experiments.tracking.repository.search import CURSOR_KIND, SearchParams
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger
from runyard.shared.pagination import cut

log = get_logger(__name__)


def invalid_search(exc: QueryLanguageError) -> errors.InvalidSearch:
    return errors.InvalidSearch(exc.param, exc.message, exc.problem_extra())


def validate(filter: str | None, order_by: str | None) -> None:
    """A 400 pointing at the error if the filter or the ordering is invalid."""
    try:
        compile_filter(filter)
        parse_order_by(order_by)
    except QueryLanguageError as exc:
        raise invalid_search(exc) from None


async def search_experiments(
    session: AsyncSession,
    *,
    principal: Principal,
    params: SearchParams,
    limit: int,
    cursor: str | None,
    statement_timeout_ms: int = 5000,
) -> tuple[list[Experiment], str | None]:
    """503 when the search runs longer than ``statement_timeout_ms``."""
    try:
        query, ordering = repository.build_query(principal, params, limit, cursor)
    except QueryLanguageError as exc:
        raise invalid_search(exc) from None
    try:
        rows = await repository.run_search(
            session, query, statement_timeout_ms=statement_timeout_ms
        )
    except repository.StatementTimeout:
        log.warning("experiments.search.timeout", filter=params.filter, q=params.q)
        raise errors.SearchTimeout(statement_timeout_ms) from None
    return cut(rows, limit, CURSOR_KIND, ordering.key_of, variant=ordering.signature)
