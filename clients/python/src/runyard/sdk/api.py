"""The HTTP API under ``/api/v1``, with the errors a caller can act on.

Every failure is one of two kinds: ``Transient`` (the network, a timeout, a 5xx, a 429: the same
request may succeed later) or ``ApiError`` (a 4xx that no retry fixes, with the server's
problem+json title and detail).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from runyard.sdk.version import __version__


class RunyardError(Exception):
    """Base of every error the SDK raises."""


class Transient(RunyardError):
    """The server could not be reached or answered 5xx/429: try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ApiError(RunyardError):
    """A 4xx the server answered: the request itself is refused."""

    def __init__(self, status: int, problem: Mapping[str, Any], method: str, path: str) -> None:
        self.status = status
        self.problem = dict(problem)
        self.method, self.path = method, path
        self.title = str(problem.get("title") or httpx.codes.get_reason_phrase(status))
        self.detail = str(problem.get("detail") or "")
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.status} {self.title}"
        if self.detail and self.detail != self.title:
            text += f": {self.detail}"
        for item in self.problem.get("errors") or []:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                text += f" [{loc}: {item.get('msg')}]"
                break
        return text

    @property
    def current_status(self) -> str | None:
        value = self.problem.get("current_status")
        return str(value) if value else None


class AuthError(ApiError):
    """401 or 403: the API key is missing, wrong, revoked, or lacks a scope."""

    def one_line(self) -> str:
        base = super().one_line()
        if self.status == 401:
            return f"{base} (check RUNYARD_API_KEY or run `runyard login`)"
        return base


class NotFound(ApiError):
    pass


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:300]}
    return body if isinstance(body, dict) else {"detail": str(body)[:300]}


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


class Api:
    """One keep-alive connection pool to ``{url}/api/v1``; thread-safe for sequential use."""

    def __init__(self, url: str, api_key: str | None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        headers = {"User-Agent": f"runyard-sdk/{__version__}", "Accept": "application/json"}
        if api_key:
            headers["X-API-Key"] = api_key
        self._client = httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The decoded JSON body (None for an empty one); raises ``Transient`` or ``ApiError``.
        ``content`` is a JSON document already encoded; ``headers`` go with the request."""
        if content is not None:
            headers = {"Content-Type": "application/json", **(headers or {})}
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._client.request(
                method, path, json=json, content=content, params=query, headers=headers
            )
        except httpx.TransportError as exc:
            raise Transient(f"cannot reach {self.url}: {type(exc).__name__} {exc}") from exc
        return self._answer(response, method, path)

    def _answer(self, response: httpx.Response, method: str, path: str) -> Any:
        status = response.status_code
        if status >= 500 or status == 429:
            raise Transient(
                f"{self.url} answered {status} {_problem(response).get('title', '')}".rstrip(),
                retry_after=_retry_after(response),
            )
        if status >= 400:
            cls = AuthError if status in (401, 403) else NotFound if status == 404 else ApiError
            raise cls(status, _problem(response), method, path)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise Transient(f"{self.url} answered {status} with a body that is not JSON") from exc

    def upload(self, path: str, file: Any, *, content_type: str | None = None) -> Any:
        """PUT an open binary file as the raw body, streamed (httpx sends its Content-Length);
        the decoded JSON answer. Raises ``Transient`` or ``ApiError`` as ``request`` does."""
        headers = {"Content-Type": content_type or "application/octet-stream"}
        try:
            response = self._client.request("PUT", path, content=file, headers=headers)
        except httpx.TransportError as exc:
            raise Transient(f"cannot reach {self.url}: {type(exc).__name__} {exc}") from exc
        return self._answer(response, "PUT", path)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def pages(self, path: str, *, limit: int = 500, **params: Any) -> Any:
        """Every item of a cursor-paginated list, page after page."""
        cursor: str | None = None
        while True:
            page = self.get(path, limit=limit, cursor=cursor, **params)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return


def retrying(call: Any, *, attempts: int = 5, first_delay: float = 0.5) -> Any:
    """``call()`` again after a ``Transient`` error, doubling the pause (for commands a person
    runs, where a short wait beats an error)."""
    delay = first_delay
    for attempt in range(attempts):
        try:
            return call()
        except Transient as exc:
            if attempt == attempts - 1:
                raise
            time.sleep(exc.retry_after if exc.retry_after is not None else delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")
