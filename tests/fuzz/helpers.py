"""The principals the fuzzer calls the API as."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    """Headers for one principal: a user's bearer token, an admin's, or an API key."""

    name: str
    user_id: str
    headers: dict[str, str]


@dataclass(frozen=True)
class FuzzIdentities:
    user_token: Credentials
    user_api_key: Credentials
    admin_token: Credentials
