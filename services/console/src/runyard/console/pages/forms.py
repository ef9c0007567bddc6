"""What the signed-in settings pages (notifications, webhooks, account and security) share: the
API's refusal as a message on the form that caused it, the header's unread count, and form
checkboxes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from runyard.console.gateway import ApiProblem, UserApi
from runyard.console.pages.experiments import unread_count

T = TypeVar("T")


def refusal_text(problem: dict[str, Any]) -> str:
    """The API's ``detail`` and each of its ``errors``, one line: shown next to the form, so the
    user keeps what they typed and sees why it was refused."""
    text = str(problem.get("detail") or problem.get("title") or "Refused.")
    items = []
    for item in problem.get("errors") or []:
        if not isinstance(item, dict):
            continue
        where = ".".join(str(part) for part in (item.get("loc") or [])[1:])
        message = str(item.get("msg") or "")
        items.append(f"{where}: {message}" if where else message)
    if items:
        text += " " + "; ".join(items)
    return text


def user_error(exc: ApiProblem) -> str:
    """A 4xx the user can fix is a message on the page; anything else stays an error page."""
    if exc.status >= 500 or exc.status in (401, 404):
        raise exc
    return refusal_text(exc.problem)


async def with_unread(api: UserApi, read: Awaitable[T]) -> tuple[T, int | None]:
    """A page's own read, and the header badge's count, at once."""
    found, unread = await asyncio.gather(read, unread_count(api))
    return found, unread


def checked(value: str | None) -> bool:
    """An HTML checkbox: sent (as ``on`` or its value) when ticked, absent when not."""
    return value is not None and value != ""
