"""What a session's ``User-Agent`` says: device type, browser, operating system."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from user_agents import parse  # type: ignore[import-untyped]


@dataclass(frozen=True)
class Device:
    device_type: str  # desktop, mobile, tablet, bot, other
    browser: str | None
    os: str | None


def _name(family: str, version: str) -> str | None:
    if not family or family == "Other":
        return None
    return f"{family} {version}".strip()[:100]


@functools.lru_cache(maxsize=1024)
def describe(user_agent: str | None) -> Device:
    if not user_agent:
        return Device(device_type="other", browser=None, os=None)
    parsed = parse(user_agent)
    if parsed.is_bot:
        device_type = "bot"
    elif parsed.is_tablet:
        device_type = "tablet"
    elif parsed.is_mobile:
        device_type = "mobile"
    elif parsed.is_pc:
        device_type = "desktop"
    else:
        device_type = "other"
    browser = _name(parsed.browser.family, parsed.browser.version_string)
    os_name = _name(parsed.os.family, parsed.os.version_string)
    return Device(device_type=device_type, browser=browser, os=os_name)
