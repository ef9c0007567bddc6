"""The email sending path: messages written without the ``email`` package's header registry,
kept-open SMTP connections (reused, reopened when the server dropped them), several connections
at once, and batches claimed and recorded so that no email goes out twice."""

from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text

from runyard.notifications.mailer import (
    SMTP_POLICY,
    Mailer,
    build_message,
    compose,
    template_environment,
)
from runyard.notifications.workers import claim_due_emails, record_outcomes, send_due_emails
from runyard.shared.testing import free_port
from runyard.shared.testing.events import experiment_completed, user_registered
from services.notifications.tests.conftest import SmtpSink
from services.notifications.tests.notifications_helpers import (
    email_rows,
    fetch,
    handle,
    outbox_events,
)

WHEN = datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
LINK = "https://runyard.example/api/v1/notifications/unsubscribe?token=abc.def-123_x"


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def message_parts(message: EmailMessage) -> dict[str, Any]:
    """What a mail client reads of a message: its headers (decoded) and text parts."""
    html = message.get_body(("html",))
    return {
        "headers": {
            name: str(message[name]) if message[name] is not None else None
            for name in (
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "Auto-Submitted",
                "List-Unsubscribe",
                "List-Unsubscribe-Post",
                "MIME-Version",
            )
        },
        "type": message.get_content_type(),
        "text": message.get_body(("plain",)).get_content(),  # type: ignore[union-attr]
        "html": None if html is None else html.get_content(),
        "defects": [repr(d) for part in message.walk() for d in part.defects],
    }


CASES = {
    "ascii": ('Experiment "cnn" completed', "Hello,\n\nval_accuracy: 0.93\n", "<p>x</p>", LINK),
    "unicode": (
        "Experiment «réseau» terminé ✅ " * 8,
        "Grüße — ünïcode ✓\nsecond line\n",
        "<p>Grüße — ✓</p>\n",
        None,
    ),
    "long lines": ("s" * 490, ("word " * 400) + "\n", "<td>" + "x" * 3000 + "</td>", LINK),
    "no html": ("Password changed", "Your password was changed.\n", None, None),
    "looks encoded": ("=?utf-8?q?not_a_word?= literal", "text\n", "<b>x</b>", None),
    "control and dots": ("tab\there", ".leading dot\n..two\nFrom me\n\ttab\n", "<i>.</i>", None),
    "crlf bodies": ("x", "a\r\nb\rc\n", "<p>\r\n</p>", LINK),
}


@pytest.mark.parametrize("case", CASES)
def test_the_fast_message_reads_as_the_email_package_writes_it(case: str) -> None:
    subject, text, html, link = CASES[case]
    fields: dict[str, Any] = {
        "mail_from": "Runyard <noreply@runyard.local>",
        "to": "first.last+tag@example.com",
        "subject": subject,
        "text": text,
        "html": html,
        "message_id": "<1234.5678@runyard.local>",
        "date": WHEN,
        "unsubscribe_url": link,
    }
    reference = build_message(**fields)
    mail = compose(**fields)

    assert mail.sender == "noreply@runyard.local"
    assert mail.recipient == "first.last+tag@example.com"
    expected = message_parts(parse(reference.as_bytes(policy=SMTP_POLICY)))
    if case == "looks encoded":
        # the email package writes it as it came, and readers decode it as an encoded word;
        # written encoded, it reads as typed (an experiment's name cannot pass as a header)
        assert expected["headers"]["Subject"] == "not a word literal"
        expected["headers"]["Subject"] = subject
    assert message_parts(parse(mail.data)) == expected
    assert message_parts(parse(mail.data))["defects"] == []
    lines = mail.data.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    assert b"\n" not in mail.data.replace(b"\r\n", b"")  # CRLF line endings only
    assert mail.data.isascii()  # 7bit or quoted-printable: any relay carries it


def test_what_the_fast_path_leaves_out_goes_the_email_package_way() -> None:
    fields: dict[str, Any] = {
        "mail_from": "Rünyard Bot <noreply@runyard.local>",
        "to": "user@exämple.com",
        "subject": "hi",
        "text": "x\n",
        "html": None,
        "message_id": "<1@runyard.local>",
        "date": WHEN,
    }
    mail = compose(**fields)
    read = parse(mail.data)
    assert str(read["To"]) == "user@exämple.com"
    assert str(read["From"]) == "Rünyard Bot <noreply@runyard.local>"
    assert mail.recipient == "user@exämple.com"


@pytest.mark.parametrize(
    "field",
    [
        {"subject": "two\r\nBcc: victim@example.com"},
        {"subject": "line\nbreak"},
        {"to": "u@example.com\r\nBcc: victim@example.com"},
        {"to": "not an address"},
    ],
)
def test_a_header_that_would_break_the_message_is_refused(field: dict[str, str]) -> None:
    fields: dict[str, Any] = {
        "mail_from": "Runyard <noreply@runyard.local>",
        "to": "u@example.com",
        "subject": "ok",
        "text": "x\n",
        "html": "<p>x</p>",
        "message_id": "<1@runyard.local>",
        "date": WHEN,
    } | field
    with pytest.raises(ValueError):
        compose(**fields)


def test_templates_are_compiled_once_and_not_looked_at_again() -> None:
    env = template_environment()
    first = env.get_template("experiment_completed.html")
    assert env.auto_reload is False
    assert env.get_template("experiment_completed.html") is first


# --- over SMTP ---------------------------------------------------------------------------------


class ClosingSink(SmtpSink):
    """Closes every connection right after accepting a message on it (as a server with a limit
    of one message per connection would)."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        transport = server.transport
        assert transport is not None
        asyncio.get_running_loop().call_soon(transport.close)
        return reply


def start(sink: SmtpSink, **server: Any) -> Controller:
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, **server)
    controller.start()
    return controller


@pytest.fixture
def closing_sink() -> Iterator[SmtpSink]:
    sink = ClosingSink(port=free_port())
    controller = start(sink)
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def impatient_sink() -> Iterator[SmtpSink]:
    """Drops a client idle for more than half a second (aiosmtpd's own timeout)."""
    sink = SmtpSink(port=free_port())
    controller = start(sink, timeout=0.5)
    try:
        yield sink
    finally:
        controller.stop()


async def queue_emails(sessionmaker: Any, count: int) -> list[uuid.UUID]:
    users = [uuid.uuid4() for _ in range(count)]
    for i, user in enumerate(users):
        await handle(sessionmaker, user_registered(user, email=f"u{i}@example.com"))
        await handle(sessionmaker, experiment_completed(user))
    return users


def received_ids(sink: SmtpSink) -> Counter[str]:
    return Counter(str(m["Message-ID"]) for m in sink.messages())


async def sent_exactly_once(sessionmaker: Any, sink: SmtpSink, count: int) -> None:
    """Every email at the server once, every row ``sent`` with one ``email.sent`` event."""
    rows = await email_rows(sessionmaker)
    assert len(rows) == count
    assert {r.status for r in rows} == {"sent"}
    assert received_ids(sink) == Counter({r.message_id: 1 for r in rows})
    events = [e for e in await outbox_events(sessionmaker) if e.topic == "email.sent"]
    assert sorted(e.key for e in events) == sorted(str(r.id) for r in rows)


async def test_batches_reuse_one_kept_open_connection(sessionmaker, settings, smtp_sink) -> None:
    mailer = Mailer.from_settings(settings.model_copy(update={"smtp_connections": 1}))
    await queue_emails(sessionmaker, 2)
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 2
    await queue_emails(sessionmaker, 2)
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 2

    assert mailer.opened == 1
    assert len(smtp_sink.sessions) == 1
    await sent_exactly_once(sessionmaker, smtp_sink, 4)
    await mailer.aclose()


async def test_a_connection_the_server_dropped_while_idle_is_reopened_and_each_email_sent_once(
    sessionmaker, settings, impatient_sink
) -> None:
    settings = settings.model_copy(update={"smtp_url": impatient_sink.url, "smtp_connections": 1})
    mailer = Mailer.from_settings(settings)
    await queue_emails(sessionmaker, 2)
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 2
    await asyncio.sleep(1.5)  # the server times the idle connection out
    await queue_emails(sessionmaker, 2)
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 2

    assert mailer.opened == 2
    assert len(impatient_sink.sessions) == 2
    await sent_exactly_once(sessionmaker, impatient_sink, 4)
    await mailer.aclose()


async def test_a_connection_closed_between_two_emails_is_reopened_for_the_next_one(
    sessionmaker, settings, closing_sink
) -> None:
    settings = settings.model_copy(update={"smtp_url": closing_sink.url, "smtp_connections": 1})
    mailer = Mailer.from_settings(settings)
    await queue_emails(sessionmaker, 3)

    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 3

    assert mailer.opened == 3
    assert len(closing_sink.sessions) == 3
    await sent_exactly_once(sessionmaker, closing_sink, 3)  # nothing left for a retry either
    assert [r.retry_count for r in await email_rows(sessionmaker)] == [0, 0, 0]
    await mailer.aclose()


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
    sessionmaker, settings, smtp_sink
) -> None:
    mailer = Mailer.from_settings(
        settings.model_copy(update={"smtp_connections": 1, "smtp_idle_timeout_s": 0.2})
    )
    await queue_emails(sessionmaker, 1)
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)
    await mailer.close_idle()
    assert mailer._kept  # not idle long enough yet
    await asyncio.sleep(0.3)
    await mailer.close_idle()
    assert mailer._kept == []

    await queue_emails(sessionmaker, 1)
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)
    assert mailer.opened == 2
    await sent_exactly_once(sessionmaker, smtp_sink, 2)
    await mailer.aclose()


async def test_a_batch_is_spread_over_at_most_the_configured_connections(
    sessionmaker, settings, smtp_sink
) -> None:
    settings = settings.model_copy(update={"smtp_connections": 3})
    mailer = Mailer.from_settings(settings)
    await queue_emails(sessionmaker, 8)

    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 8

    assert 1 <= mailer.opened <= 3
    assert len(smtp_sink.sessions) == mailer.opened
    await sent_exactly_once(sessionmaker, smtp_sink, 8)
    await mailer.aclose()


async def test_two_senders_claiming_batches_at_once_never_send_an_email_twice(
    sessionmaker, settings, smtp_sink
) -> None:
    settings = settings.model_copy(update={"email_batch_size": 4, "smtp_connections": 2})
    mailers = [Mailer.from_settings(settings), Mailer.from_settings(settings)]
    await queue_emails(sessionmaker, 24)

    async def drain(mailer: Mailer) -> int:
        claimed = 0
        while n := await send_due_emails(sessionmaker, settings=settings, mailer=mailer):
            claimed += n
        return claimed

    counts = await asyncio.gather(*(drain(m) for m in mailers))

    assert sum(counts) == 24
    await sent_exactly_once(sessionmaker, smtp_sink, 24)
    for mailer in mailers:
        await mailer.aclose()


async def test_a_claim_lost_before_its_outcome_is_recorded_is_not_marked_sent(
    sessionmaker, settings
) -> None:
    await queue_emails(sessionmaker, 2)
    claimed = await claim_due_emails(sessionmaker, settings=settings)
    assert len(claimed) == 2
    lost, kept = claimed
    # meanwhile the stuck-row timeout queued one again (this sender was thought dead)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE notifications.email_logs SET status = 'queued' WHERE id = :id"),
            {"id": lost.id},
        )

    async with sessionmaker() as session, session.begin():
        await record_outcomes(session, claimed, {lost.id: None, kept.id: None}, settings=settings)

    rows = {
        r.id: r.status
        for r in await fetch(sessionmaker, "SELECT id, status FROM notifications.email_logs")
    }
    assert rows == {lost.id: "queued", kept.id: "sent"}
    events = [e for e in await outbox_events(sessionmaker) if e.topic == "email.sent"]
    assert [e.key for e in events] == [str(kept.id)]
