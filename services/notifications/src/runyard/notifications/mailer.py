"""Email rendering (Jinja2, text + HTML) and delivery over SMTP (aiosmtplib)."""

from __future__ import annotations

import contextlib
import email.policy
import functools
from collections.abc import Mapping
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
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
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


class Mailer:
    def __init__(self, target: SmtpTarget, *, mail_from: str, timeout_s: float = 30.0) -> None:
        self.target = target
        self.mail_from = mail_from
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailer:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        target = parse_smtp_url(
            settings.smtp_url, username=settings.smtp_username, password=password
        )
        return cls(target, mail_from=settings.mail_from, timeout_s=settings.smtp_timeout_s)

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.target.hostname,
            port=self.target.port,
            username=self.target.username,
            password=self.target.password,
            use_tls=self.target.use_tls,
            timeout=self.timeout_s,
        )

    async def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the SMTP server; raises :class:`SendError`."""
        [error] = await self.send_many([message])
        if error is not None:
            raise error

    async def send_many(self, messages: list[EmailMessage]) -> list[SendError | None]:
        """Send ``messages`` over one SMTP connection; per message, None or its error.

        A refused message (an SMTP reply) leaves the connection usable (RSET); a connection
        error drops it, and the next message opens a new one.
        """
        results: list[SendError | None] = []
        client: aiosmtplib.SMTP | None = None
        try:
            for message in messages:
                sender = parseaddr(str(message["From"]))[1]
                recipients = [parseaddr(str(message["To"]))[1]]
                try:
                    if client is None:
                        client = self._client()
                        await client.connect()
                    await client.sendmail(sender, recipients, message.as_bytes(policy=SMTP_POLICY))
                    results.append(None)
                except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as exc:
                    results.append(classify_smtp_error(exc))
                    client = await _reset_or_drop(client)
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    results.append(classify_smtp_error(exc))
                    _close(client)
                    client = None
        finally:
            if client is not None:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                    await client.quit()
        return results


def _close(client: aiosmtplib.SMTP | None) -> None:
    if client is not None:
        client.close()


async def _reset_or_drop(client: aiosmtplib.SMTP | None) -> aiosmtplib.SMTP | None:
    """The connection, reset for the next message; None (closed) if it cannot be reused."""
    if client is not None and client.is_connected:
        try:
            await client.rset()
            return client
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
    _close(client)
    return None
