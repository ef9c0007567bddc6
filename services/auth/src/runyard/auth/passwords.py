"""Password hashing (argon2id, off the event loop) and the password policy."""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from runyard.auth.config import Settings

MIN_LENGTH = 12
MAX_LENGTH = 128

#: Digits, punctuation and spaces people append to a common password to pass a length rule.
_TRAILING = re.compile(r"[\d\W_]+$")


class Passwords:
    """argon2id with the configured parameters. Verification and hashing run in a thread."""

    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._dummy: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        return cls(
            memory_kib=settings.password_hash_memory_kib,
            time_cost=settings.password_hash_time_cost,
            parallelism=settings.password_hash_parallelism,
        )

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend the time a real verification takes, so unknown usernames cannot be told apart."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(32))
        await asyncio.to_thread(self._verify, self._dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters (or another algorithm)."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    async def warm_up(self) -> None:
        await self.verify_dummy("warm-up")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list (see the header of ``data/common-passwords.txt``), lower case."""
    text = resources.files("runyard.auth").joinpath("data/common-passwords.txt").read_text()
    return frozenset(
        line for line in (raw.strip() for raw in text.splitlines()) if line and line[0] != "#"
    )


def password_problems(password: str, *, username: str, email: str) -> list[str]:
    """Why ``password`` is not acceptable for this account; empty when it is.

    Length is checked by the request models. Here: the bundled list of common passwords (also
    with trailing digits and symbols removed, so ``iloveyou2024!!`` counts as ``iloveyou``), and
    passwords made of the account's own username or email address.
    """
    lowered = password.lower()
    stem = _TRAILING.sub("", lowered)
    common = common_passwords()
    if lowered in common or (len(stem) >= 4 and stem in common):
        return ["is too common: it appears in a list of frequently used passwords"]
    local_part = email.split("@", 1)[0].lower()
    for word in (username.lower(), email.lower(), local_part):
        if len(word) >= 3 and (lowered == word or stem == word):
            return ["must not be your username or email address"]
    if len(set(lowered)) <= 2:
        return ["is too repetitive"]
    return []
