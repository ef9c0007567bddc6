"""What the use cases need besides the database session: the runtime's typed context, opened
once at startup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from runyard.auth.clock import Clock
from runyard.auth.config import Settings
from runyard.auth.lockout import LockoutPolicy
from runyard.auth.passwords import Passwords, common_passwords
from runyard.auth.security import SigningKey, load_signing_key
from runyard.auth.totp import SecretBox
from runyard.shared.logging import get_logger
from runyard.shared.runtime import Runtime, get_runtime

log = get_logger(__name__)


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

    @classmethod
    async def open(cls, settings: Settings, *, clock: Clock) -> AuthContext:
        """The service's context: the configured signing key, the password hasher warmed up and
        the common-password list loaded, so the first requests do not pay for them."""
        key, origin = load_signing_key(settings)
        context = cls.build(settings, clock=clock, signing_key=key)
        await context.passwords.warm_up()
        common_passwords()
        log.info("auth.signing_key.loaded", kid=key.kid, origin=origin)
        return context


AuthRuntime = Runtime[Settings, AuthContext]


async def get_auth_runtime(request: Request) -> AuthRuntime:
    return get_runtime(request)


AuthRuntimeDep = Annotated[AuthRuntime, Depends(get_auth_runtime)]


async def get_context(runtime: AuthRuntimeDep) -> AuthContext:
    return runtime.context


ContextDep = Annotated[AuthContext, Depends(get_context)]
