"""FastAPI dependencies of the service: its runtime, typed with its settings (the service has
no context objects of its own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from runyard.experiments.config import Settings
from runyard.shared.runtime import Runtime, get_runtime

ServiceRuntime = Runtime[Settings, None]


async def get_service_runtime(request: Request) -> ServiceRuntime:
    return get_runtime(request)


async def get_settings(
    runtime: Annotated[ServiceRuntime, Depends(get_service_runtime)],
) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
