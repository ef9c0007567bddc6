"""Email rendering (Jinja2, text + HTML) and delivery over SMTP (aiosmtplib)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import email.policy
import functools
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from runyard.notifications.config import Settings

TEMPLATES_DIR = Path(__file__).parent / "templates"
MAX_SUBJECT_LENGTH = 500
#: RFC 5322's line limit: a ``List-Unsubscribe`` URL is folded nowhere, so never RFC 2047-encoded
#: (which the stricter mail clients would not read as a URL).
SMTP_POLICY = email.policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class RenderedEmail:
    template_name: str
    subject: str
    text: str
    html: str
    unsubscribe_url: str | None = None


@functools.cache
def template_environment() -> Environment:
    """Templates compiled once per process: they ship with the package, so no file is looked
    at again (``auto_reload`` would ``stat`` each template on every render)."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def render_email(template_name: str, context: Mapping[str, Any]) -> RenderedEmail:
    """Render ``<name>.subject.txt``, ``<name>.txt`` and ``<name>.html`` with ``context``."""
    env = template_environment()
    raw_subject = env.get_template(f"{template_name}.subject.txt").render(context)
    # One line, whatever the data held: a header must not carry CR/LF.
    subject = " ".join(raw_subject.split())[:MAX_SUBJECT_LENGTH]
    full = {**context, "subject": subject}
    return RenderedEmail(
        template_name=template_name,
        subject=subject,
        text=env.get_template(f"{template_name}.txt").render(full).rstrip() + "\n",
        html=env.get_template(f"{template_name}.html").render(full),
        unsubscribe_url=context.get("unsubscribe_url"),
    )


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    use_tls: bool
    username: str | None = None
    password: str | None = None


def parse_smtp_url(
    url: str, *, username: str | None = None, password: str | None = None
) -> SmtpTarget:
    """``smtp://host:port`` (default port 25) or ``smtps://host:port`` (default port 465)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("SMTP URL must look like smtp://host:port or smtps://host:port")
    use_tls = parts.scheme == "smtps"
    return SmtpTarget(
        hostname=parts.hostname,
        port=parts.port or (465 if use_tls else 25),
        use_tls=use_tls,
        username=username or (unquote(parts.username) if parts.username else None),
        password=password or (unquote(parts.password) if parts.password else None),
    )


def sender_domain(mail_from: str) -> str:
    _name, address = parseaddr(mail_from)
    return address.rpartition("@")[2] or "runyard.local"


def new_message_id(mail_from: str) -> str:
    """A Message-ID in the sender's domain (no hostname lookup, unlike ``make_msgid()``)."""
    return make_msgid(domain=sender_domain(mail_from))


def build_message(
    *,
    mail_from: str,
    to: str,
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    date: datetime,
    unsubscribe_url: str | None = None,
) -> EmailMessage:
    """The message built with the standard library's ``email`` package: the reference that
    :func:`compose` must match, and its way for what the fast path leaves out."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = Address(addr_spec=to)
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    if unsubscribe_url:
        # RFC 8058 one-click: mail clients POST "List-Unsubscribe=One-Click" to the URL.
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


@dataclass(frozen=True)
class OutgoingMail:
    """One message as the SMTP transaction takes it: envelope sender, recipient, bytes."""

    sender: str
    recipient: str
    data: bytes


#: An ASCII ``dot-atom@domain`` address, which the ``email`` package writes unchanged.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
#: Printable ASCII without spaces and angle brackets: a Message-ID's or a URL's inside of <>.
_PLAIN_TOKEN = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")
#: Printable ASCII (and tab) that does not look like an RFC 2047 encoded word.
_PLAIN_TEXT = re.compile(r"[\t\x20-\x7e]*")
#: Bytes of UTF-8 per RFC 2047 encoded word: base64 of 45 bytes is 60 characters, 72 with
#: ``=?utf-8?b?...?=`` (75 at most).
_WORD_BYTES = 45
_MAX_LINE = 998


@functools.lru_cache(maxsize=8)
def _from_header(mail_from: str) -> tuple[bytes, str]:
    """The ``From:`` line (written once by the ``email`` package) and the envelope sender."""
    message = EmailMessage()
    message["From"] = mail_from
    line = message["From"].fold(policy=SMTP_POLICY).encode("ascii")
    return line, parseaddr(str(message["From"]))[1]


def _encoded_words(value: str) -> str:
    """``value`` as RFC 2047 base64 encoded words, folded one word per line."""
    raw = value.encode("utf-8")
    words = []
    start = 0
    while start < len(raw):
        end = min(start + _WORD_BYTES, len(raw))
        while end < len(raw) and raw[end] & 0xC0 == 0x80:  # never split a character
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(raw[start:end]).decode('ascii')}?=")
        start = end
    return "\r\n ".join(words)


def _subject_line(subject: str) -> bytes:
    if "\r" in subject or "\n" in subject:
        raise ValueError("Header values may not contain linefeed or carriage return characters")
    if _PLAIN_TEXT.fullmatch(subject) and "=?" not in subject and len(subject) < 900:
        return b"Subject: " + subject.encode("ascii") + b"\r\n"
    return b"Subject: " + _encoded_words(subject).encode("ascii") + b"\r\n"


def _text_part(content: str, subtype: str) -> bytes:
    """A ``text/<subtype>`` part: 7bit when it is ASCII in short lines, else quoted-printable
    (safe through any relay). Lines end with CRLF, and the content with a line break, as the
    ``email`` package writes it."""
    lines = content.encode("utf-8").splitlines()
    body = b"\r\n".join(lines) + b"\r\n"
    if body.isascii() and all(len(line) <= _MAX_LINE for line in lines):
        encoding = b"7bit"
    else:
        encoding = b"quoted-printable"
        body = binascii.b2a_qp(body, istext=True)
    return (
        b"Content-Type: text/" + subtype.encode("ascii") + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + body
    )


def _plain(to: str, message_id: str, unsubscribe_url: str | None) -> bool:
    """Whether the fast path writes these exactly as the ``email`` package would."""
    return (
        len(to) <= 320
        and _PLAIN_ADDRESS.fullmatch(to) is not None
        and message_id.startswith("<")
        and message_id.endswith(">")
        and _PLAIN_TOKEN.fullmatch(message_id[1:-1]) is not None
        and (
            not unsubscribe_url
            or (len(unsubscribe_url) < 900 and _PLAIN_TOKEN.fullmatch(unsubscribe_url) is not None)
        )
    )


def compose(
    *,
    mail_from: str,
    to: str,
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    date: datetime,
    unsubscribe_url: str | None = None,
) -> OutgoingMail:
    """The message as bytes, written directly (a few string operations): the same headers and
    parts as :func:`build_message`, which costs ~20x the CPU (its header registry parses and
    refolds every header). Anything but a plain ASCII address, Message-ID or link goes the
    ``email`` package's way. Raises ``ValueError`` for what no message may carry (CR/LF in a
    header, an address that cannot be written)."""
    if not _plain(to, message_id, unsubscribe_url):
        message = build_message(
            mail_from=mail_from,
            to=to,
            subject=subject,
            text=text,
            html=html,
            message_id=message_id,
            date=date,
            unsubscribe_url=unsubscribe_url,
        )
        sender = parseaddr(str(message["From"]))[1]
        recipient = parseaddr(str(message["To"]))[1]
        return OutgoingMail(sender, recipient, message.as_bytes(policy=SMTP_POLICY))
    from_line, sender = _from_header(mail_from)
    head = [
        from_line,
        b"To: " + to.encode("ascii") + b"\r\n",
        _subject_line(subject),
        b"Date: " + format_datetime(date).encode("ascii") + b"\r\n",
        b"Message-ID: " + message_id.encode("ascii") + b"\r\n",
        b"Auto-Submitted: auto-generated\r\n",
    ]
    if unsubscribe_url:
        # RFC 8058 one-click: mail clients POST "List-Unsubscribe=One-Click" to the URL.
        head.append(b"List-Unsubscribe: <" + unsubscribe_url.encode("ascii") + b">\r\n")
        head.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    head.append(b"MIME-Version: 1.0\r\n")
    plain = _text_part(text, "plain")
    if not html:
        return OutgoingMail(sender, to, b"".join(head) + plain)
    rich = _text_part(html, "html")
    boundary = b"=_" + secrets.token_hex(16).encode("ascii")
    while boundary in plain or boundary in rich:  # practically never
        boundary = b"=_" + secrets.token_hex(16).encode("ascii")
    head.append(b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n')
    # the line break before a delimiter belongs to the delimiter, not to the part
    opening, closing = b"--" + boundary + b"\r\n", b"\r\n--" + boundary
    parts = [opening, plain, closing, b"\r\n", rich, closing, b"--\r\n"]
    return OutgoingMail(sender, to, b"".join(head) + b"".join(parts))


class SendError(Exception):
    """Delivery failed; ``permanent`` says whether trying again can help."""

    def __init__(self, detail: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent


def classify_smtp_error(exc: BaseException) -> SendError:
    """5xx replies are permanent; 4xx replies, timeouts and connection trouble are transient."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients] or [0]
        detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients) or str(exc)
        return SendError(detail[:2000], permanent=all(500 <= c < 600 for c in codes))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendError(f"{exc.code} {exc.message}"[:2000], permanent=500 <= exc.code < 600)
    return SendError(f"{type(exc).__name__}: {exc}"[:2000], permanent=False)


#: A kept-open connection unused for longer than this is checked (NOOP) before it is used.
PROBE_AFTER_S = 5.0
_CONNECTION_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


@dataclass
class _Kept:
    client: aiosmtplib.SMTP
    idle_since: float


class Mailer:
    """Sends over up to ``connections`` SMTP connections at once and keeps them open between
    batches (an idle one is closed after ``idle_timeout_s``, a broken one reopened)."""

    def __init__(
        self,
        target: SmtpTarget,
        *,
        mail_from: str,
        timeout_s: float = 30.0,
        connections: int = 1,
        idle_timeout_s: float = 30.0,
    ) -> None:
        self.target = target
        self.mail_from = mail_from
        self.timeout_s = timeout_s
        self.connections = max(1, connections)
        self.idle_timeout_s = idle_timeout_s
        self._kept: list[_Kept] = []
        #: connections opened so far (tests and metrics)
        self.opened = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailer:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        target = parse_smtp_url(
            settings.smtp_url, username=settings.smtp_username, password=password
        )
        return cls(
            target,
            mail_from=settings.mail_from,
            timeout_s=settings.smtp_timeout_s,
            connections=settings.smtp_connections,
            idle_timeout_s=settings.smtp_idle_timeout_s,
        )

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.target.hostname,
            port=self.target.port,
            username=self.target.username,
            password=self.target.password,
            use_tls=self.target.use_tls,
            timeout=self.timeout_s,
        )

    async def _acquire(self, *, new: bool = False) -> tuple[aiosmtplib.SMTP, bool]:
        """A kept connection that still works (unless ``new``), else a new one (raises on
        connection trouble); and whether it is new."""
        now = time.monotonic()
        while self._kept and not new:
            kept = self._kept.pop()
            client = kept.client
            if not client.is_connected or now - kept.idle_since > self.idle_timeout_s:
                await _quit(client)
                continue
            if now - kept.idle_since > PROBE_AFTER_S:
                try:
                    await client.noop(timeout=min(self.timeout_s, PROBE_AFTER_S))
                except _CONNECTION_ERRORS:
                    _close(client)
                    continue
            return client, False
        client = self._client()
        await client.connect()
        self.opened += 1
        return client, True

    def _release(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            self._kept.append(_Kept(client, time.monotonic()))
        else:
            _close(client)

    async def send(self, mail: OutgoingMail) -> None:
        """Hand ``mail`` to the SMTP server; raises :class:`SendError`."""
        [error] = await self.send_many([mail])
        if error is not None:
            raise error

    async def send_many(self, mails: Sequence[OutgoingMail]) -> list[SendError | None]:
        """Send ``mails`` over up to ``connections`` connections at once; per mail, None or
        its error. A refused mail (an SMTP reply) leaves its connection usable (RSET); a
        connection error drops it, and that lane's next mail opens a new one. A lane that
        cannot open a connection stops and leaves the rest to the others."""
        results: list[SendError | None] = [None] * len(mails)
        todo = collections.deque(range(len(mails)))
        unreachable: list[SendError] = []

        async def lane() -> None:
            client: aiosmtplib.SMTP | None = None
            fresh = False  # a connection just opened, that has carried no mail yet
            try:
                while todo:
                    i = todo.popleft()
                    try:
                        if client is None:
                            client, fresh = await self._acquire()
                        try:
                            await _transaction(client, mails[i], reused=not fresh)
                        except _Stale:
                            # gone before the server took anything: once more, on a new one
                            _close(client)
                            client = None
                            client, fresh = await self._acquire(new=True)
                            await _transaction(client, mails[i], reused=False)
                        fresh = False
                    except Exception as exc:
                        if not isinstance(exc, (ValueError, *_CONNECTION_ERRORS)):
                            raise
                        results[i] = error = _send_error(exc)
                        if client is None:  # could not connect: leave the rest to other lanes
                            unreachable.append(error)
                            return
                        fresh = False
                        client = await _after_error(client, exc)
            finally:
                if client is not None:
                    self._release(client)

        await asyncio.gather(*(lane() for _ in range(min(self.connections, len(mails)))))
        for i in todo:  # every lane failed to connect
            results[i] = unreachable[-1]
        return results

    async def close_idle(self) -> None:
        """QUIT the kept connections idle for longer than ``idle_timeout_s``."""
        now = time.monotonic()
        stale = [k for k in self._kept if now - k.idle_since > self.idle_timeout_s]
        self._kept = [k for k in self._kept if k not in stale]
        for kept in stale:
            await _quit(kept.client)

    async def aclose(self) -> None:
        kept, self._kept = self._kept, []
        for k in kept:
            await _quit(k.client)


class _Stale(Exception):
    """A kept-open connection was gone before the server took any part of the mail."""


async def _transaction(client: aiosmtplib.SMTP, mail: OutgoingMail, *, reused: bool) -> None:
    """MAIL, RCPT, DATA for one mail. Raises ``_Stale`` if a ``reused`` connection turns out
    closed at MAIL (nothing was accepted: safe to send on another connection); a reply's
    refusal, or connection trouble once the server may have the mail, as aiosmtplib raises
    them (the caller treats the latter as transient: at-least-once)."""
    options = [f"SIZE={len(mail.data)}"] if client.supports_extension("size") else []
    try:
        await client.mail(mail.sender, options=options)
    except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
        if reused:
            raise _Stale from exc
        raise
    except aiosmtplib.SMTPResponseException as exc:
        if reused and exc.code == 421:  # "service not available, closing the channel"
            raise _Stale from exc
        raise
    await client.rcpt(mail.recipient)
    await client.data(mail.data)


def _send_error(exc: Exception) -> SendError:
    if isinstance(exc, ValueError):  # an address the client will not write on the wire
        return SendError(f"invalid address: {exc}"[:2000], permanent=True)
    return classify_smtp_error(exc)


async def _after_error(client: aiosmtplib.SMTP, exc: Exception) -> aiosmtplib.SMTP | None:
    """The connection, reset (RSET) for the next mail after a refusal; None (closed) after
    connection trouble or if it cannot be reset."""
    refused = isinstance(exc, ValueError | aiosmtplib.SMTPResponseException)
    if refused and client.is_connected:
        try:
            await client.rset()
            return client
        except _CONNECTION_ERRORS:
            pass
    _close(client)
    return None


async def _quit(client: aiosmtplib.SMTP) -> None:
    if client.is_connected:
        with contextlib.suppress(*_CONNECTION_ERRORS):
            await client.quit(timeout=5.0)
    _close(client)


def _close(client: aiosmtplib.SMTP | None) -> None:
    if client is not None:
        client.close()
