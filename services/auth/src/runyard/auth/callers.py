"""Who makes a request: the client it comes from and, for changes to one's own account, the user
and their login session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class ClientInfo:
    """The client's address and ``User-Agent``, as logins and sessions record them."""

    ip_address: str | None
    user_agent: str | None


@dataclass(frozen=True)
class Caller:
    """A logged-in user changing their own account. Changes that end the user's other sessions
    (a new password, two-factor changes) keep ``session_id``, the caller's own."""

    user_id: uuid.UUID
    client: ClientInfo
    session_id: uuid.UUID | None
