"""Who may see and change what. The caller's identity comes from the gateway's headers.

- ``user``: sees and changes their own rows only; another user's row does not exist for them
  (404, never 403, so ids of other users' objects leak nothing).
- ``viewer``: reads every row, changes nothing (403 on any write).
- ``admin``: reads and changes every row.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement

from runyard.experiments.errors import NotFound
from runyard.shared.identity import Principal, require_writer


def reads_everything(principal: Principal) -> bool:
    return principal.role in ("admin", "viewer")


def can_read(principal: Principal, owner_id: uuid.UUID) -> bool:
    return reads_everything(principal) or owner_id == principal.user_id


def can_write(principal: Principal, owner_id: uuid.UUID) -> bool:
    return principal.is_admin or (principal.role == "user" and owner_id == principal.user_id)


def check_read(principal: Principal, row: Any, what: str) -> None:
    if row is None or not can_read(principal, row.owner_id):
        raise NotFound(what)


def check_write(principal: Principal, row: Any, what: str) -> None:
    require_writer(principal)
    if row is None or not can_write(principal, row.owner_id):
        raise NotFound(what)


def owner_scope(
    column: Any, principal: Principal, owner_id: uuid.UUID | None = None
) -> ColumnElement[bool] | None:
    """The WHERE clause limiting a list to what the caller may read (``None``: everything).

    ``owner_id`` narrows an admin's or viewer's list to one owner; a user always gets their own.
    """
    if not reads_everything(principal):
        return column == principal.user_id  # type: ignore[no-any-return]
    if owner_id is not None:
        return column == owner_id  # type: ignore[no-any-return]
    return None
