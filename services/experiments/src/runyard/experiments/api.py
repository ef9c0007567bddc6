"""Route shapes several features share.

No ``from __future__ import annotations`` here: FastAPI reads these endpoints' annotations at
runtime, and they name each feature's own models, which exist only in the builders' scope.
"""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query

from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

ListOwned = Callable[..., Awaitable[tuple[Sequence[Any], str | None]]]


def add_owned_list_route(
    router: APIRouter, *, name: str, rows: ListOwned, out: Any, statuses: Any, plural: str
) -> None:
    """``GET`` on the router's prefix: the owned rows the caller may see, newest first, one
    keyset page at a time, by ``status`` (one of the literal ``statuses``) and, for admins and
    viewers, ``owner_id``. ``rows(session, principal=, limit=, cursor=, status=, owner_id=)``
    finds them, ``out`` is their response model; the route (its OpenAPI operation) is ``name``."""
    owner_filter = Annotated[
        uuid.UUID | None, Query(description=f"admins and viewers: only this owner's {plural}")
    ]

    async def list_owned(
        session: SessionDep,
        principal: CurrentPrincipal,
        status: statuses | None = None,
        owner_id: owner_filter = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: CursorParam = None,
    ) -> Any:
        found, next_cursor = await rows(
            session,
            principal=principal,
            limit=limit,
            cursor=cursor,
            status=status,
            owner_id=owner_id,
        )
        return Page[out](items=[out.model_validate(r) for r in found], next_cursor=next_cursor)

    router.add_api_route("", list_owned, methods=["GET"], response_model=Page[out], name=name)
