from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from runyard.experiments.config import Settings
from runyard.shared.runtime import get_runtime


def get_settings(request: Request) -> Settings:
    settings = get_runtime(request).settings
    assert isinstance(settings, Settings)
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
