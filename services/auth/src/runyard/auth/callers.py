"""Who makes a request: the client it comes from and, for changes to one's own account, the user
and their login session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from runyard.shared.identity import client_network


@dataclass(frozen=True)
class ClientInfo:
    """The client's address and ``User-Agent``, as logins and sessions record them."""

    ip_address: str | None
    user_agent: str | None

    @property
    def client_key(self) -> str | None:
        """What per-client limits count by: the IPv4 address, or the IPv6 address's /64."""
        return client_network(self.ip_address) if self.ip_address else None


@dataclass(frozen=True)
class Caller:
    """A logged-in user changing their own account. Changes that end the user's other sessions
    (a new password, two-factor changes) keep ``session_id``, the caller's own."""

    user_id: uuid.UUID
    client: ClientInfo
    session_id: uuid.UUID | None
