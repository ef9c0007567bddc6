"""What the use cases need besides the database session, built once at startup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from runyard.auth.clock import Clock
from runyard.auth.config import Settings
from runyard.auth.lockout import LockoutPolicy
from runyard.auth.passwords import Passwords
from runyard.auth.security import SigningKey
from runyard.auth.totp import SecretBox
from runyard.shared.runtime import RuntimeDep

STATE_KEY = "auth_context"


@dataclass(frozen=True)
class AuthContext:
    settings: Settings
    clock: Clock
    passwords: Passwords
    signing_key: SigningKey
    secret_box: SecretBox
    lockout: LockoutPolicy

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock, signing_key: SigningKey) -> AuthContext:
        return cls(
            settings=settings,
            clock=clock,
            passwords=Passwords.from_settings(settings),
            signing_key=signing_key,
            secret_box=SecretBox(settings.totp_encryption_key.get_secret_value()),
            lockout=LockoutPolicy.from_settings(settings),
        )


async def get_context(runtime: RuntimeDep) -> AuthContext:
    context: AuthContext = runtime.state[STATE_KEY]
    return context


ContextDep = Annotated[AuthContext, Depends(get_context)]
