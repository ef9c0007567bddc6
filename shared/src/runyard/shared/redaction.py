"""Secrets kept out of logs: redaction by key and by value.

Every log line of every service goes through ``redact_event`` (a structlog processor, see
``runyard.shared.logging``), lines of the standard library's loggers (uvicorn, aiokafka ...)
through ``RedactingFilter``, and the gateway's request logs through ``redact``.

- By key: a field whose name says it holds a secret (``password``, ``token``, ``secret``,
  ``api_key``, ``authorization``, ``otpauth_uri``, ``backup_codes``, ``code`` ...) keeps its name
  and loses its value; names that only describe a secret (``api_key_id``, ``token_type``,
  ``key_prefix``, ``..._at``) are kept. A ``headers`` mapping (custom webhook headers) keeps its
  header names and loses every value. A named pair, ``{"key": name, "value": ...}`` (MLflow's
  params, tags and metrics), keeps its name and loses its value when the name says secret.
- By value, wherever a string holds one: an ``otpauth://`` URI, a JWT, a bearer token, an ``ry_``
  API key, a ``whsec_`` signing secret, a Slack or Teams webhook URL (its path), the password of
  a URL, a secret-looking query parameter, a PEM private key.
"""

from __future__ import annotations

import functools
import logging
import re
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"pass(?:word|wd|phrase)?|secret|token|api[_-]?key|^key$|authori[sz]ation|cookie"
    r"|credential|signature|private[_-]?key|otpauth|totp|(?:^|[_-])otp(?:$|[_-])"
    r"|backup[_-]?codes?|^code$",
    re.IGNORECASE,
)
#: Names that describe a secret without holding it.
_DESCRIPTIVE_KEY = re.compile(
    r"(?:_id|_ids|_prefix|_at|_count|_type|_hint|_length|_enabled|_required|_rotated|_expires_in"
    r"|_s)$",
    re.IGNORECASE,
)
#: Mappings whose every value may be a credential (custom webhook headers).
_HEADER_MAPS = frozenset({"headers", "custom_headers", "extra_headers"})

_URL_TAIL = r"[^\s\"'<>\\]*"
_VALUE_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(
            r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    (re.compile(r"otpauth://" + _URL_TAIL, re.IGNORECASE), "otpauth://" + REDACTED),
    # Slack incoming webhooks and workflows; Teams (Office 365 connectors, Power Automate / Logic
    # Apps workflows): the path (and its query) is the credential, the host is kept.
    (
        re.compile(
            r"(https?://(?:hooks\.slack(?:-gov)?\.com"
            r"|[\w.-]*webhook\.office\.com|outlook\.office(?:365)?\.com"
            r"|[\w.-]+\.logic\.azure\.com|[\w.-]+\.api\.powerplatform\.com)(?::\d+)?)"
            r"[/?]" + _URL_TAIL,
            re.IGNORECASE,
        ),
        r"\1/" + REDACTED,
    ),
    # the password of a URL (``postgresql://user:password@host``)
    (
        re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s/:@\"'<>]+:)[^\s@/\"'<>]+@", re.IGNORECASE),
        r"\1" + REDACTED + "@",
    ),
    (
        re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        REDACTED,
    ),
    (re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/-]{8,}=*", re.IGNORECASE), r"\1" + REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])ry_[A-Za-z0-9]{20,}"), "ry_" + REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9+/=_-]{8,}"), "whsec_" + REDACTED),
    # secret-looking query (or form) parameters: ``?token=...``, ``&api_key=...``, ``&sig=...``
    (
        re.compile(
            r"([?&;](?:[\w.-]*(?:token|secret|passw|api[_-]?key|apikey|signature|credential|jwt"
            r"|session)[\w.-]*|key|code|sig|pwd|pass|auth|otp)=)[^&#\s\"'<>]+",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
)


#: Something every rule of ``_VALUE_RULES`` needs in the text to match (a PEM header, a URL
#: scheme, a JWT's header, a bearer token, a key's prefix, a query parameter's ``=``). Most log
#: values have none of them: one search instead of nine substitutions (a log line cost 68 us of
#: CPU, 48 of them here, on the development machine). ``test_logging`` checks that every
#: example secret passes it.
_MAY_HOLD_SECRET = re.compile(r"-----BEGIN|://|eyJ|ry_|whsec_|=|bearer", re.IGNORECASE)


def may_hold_secret(text: str) -> bool:
    """False when no rule of ``redact_text`` can match ``text`` (it is returned as is)."""
    return _MAY_HOLD_SECRET.search(text) is not None


@functools.lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a field called ``name`` holds a secret (its value is never logged). Cached: the
    same few names come back on every line and request."""
    return bool(_SECRET_KEY.search(name)) and not _DESCRIPTIVE_KEY.search(name)


def redact_text(text: str) -> str:
    """``text`` with every secret-looking part replaced."""
    return apply_value_rules(text) if may_hold_secret(text) else text


def apply_value_rules(text: str) -> str:
    """Every rule of ``_VALUE_RULES`` applied to ``text`` (``redact_text`` without its fast
    path)."""
    for pattern, replacement in _VALUE_RULES:
        text = pattern.sub(replacement, text)
    return text


#: types ``redact`` returns as they are, checked by identity before the slower ``isinstance``
_SCALARS = frozenset({int, float, bool, type(None)})


def redact(value: Any) -> Any:
    """A JSON-like value with secrets removed by key and by value; other types unchanged."""
    kind = type(value)  # the exact types first: isinstance on Mapping is slow
    if kind in _SCALARS:
        return value
    if kind is str or isinstance(value, str):
        return redact_text(value)
    if kind is dict or isinstance(value, Mapping):
        name = value.get("key")
        if type(name) is str and "value" in value:
            return _redact_pair(value, name)
        return {str(k): _redact_field(str(k), v) for k, v in value.items()}
    if kind is list or isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_pair(pair: Mapping[Any, Any], name: str) -> dict[str, Any]:
    """A named pair, ``{"key": name, "value": ..., ...}`` (MLflow's params, tags and metrics):
    its ``key`` is a name, kept (redacted by value only), and its ``value`` is judged by that
    name, as the field it stands for would be."""
    redacted: dict[str, Any] = {}
    for k, v in pair.items():
        field = str(k)
        if field == "key":
            redacted[field] = redact_text(name)
        elif field == "value":
            redacted[field] = _redact_field(name, v)
        else:
            redacted[field] = _redact_field(field, v)
    return redacted


def _redact_field(name: str, value: Any) -> Any:
    if is_secret_key(name):
        return REDACTED
    if name.lower() in _HEADER_MAPS and isinstance(value, Mapping):
        return {str(header): REDACTED for header in value}
    return redact(value)


#: Keys structlog and ``configure_logging`` add to every line: redacted by value only.
_LINE_KEYS = frozenset(
    {"event", "level", "timestamp", "logger", "service", "instance", "exception", "stack"}
)
_PLAIN = (str, int, float, bool, type(None), Mapping, list, tuple)


def redact_event(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every value of the line redacted (run it after ``format_exc_info``,
    so tracebacks are redacted too). Other objects become their ``repr``, as the renderers would
    show them, and are redacted like text."""
    for key, value in list(event.items()):
        if not isinstance(value, _PLAIN):
            value = repr(value)
        event[key] = redact(value) if key in _LINE_KEYS else _redact_field(key, value)
    return event


class RedactingFilter(logging.Filter):
    """A handler filter for the standard library's log records: message, arguments, traceback
    and stack redacted by value before any formatter sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            formatted = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = redact_text(formatted.rstrip("\n"))
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return redact_text(value) if isinstance(value, str) else value
    return redact_text(str(value))


def install_redacting_filter(loggers: list[logging.Logger] | None = None) -> None:
    """Add ``RedactingFilter`` to every handler of the root logger and of every logger that has
    its own (uvicorn's), or of ``loggers``; once per handler."""
    if loggers is None:
        manager = logging.root.manager
        loggers = [logging.root] + [
            lg for lg in list(manager.loggerDict.values()) if isinstance(lg, logging.Logger)
        ]
    for lg in loggers:
        for handler in lg.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
