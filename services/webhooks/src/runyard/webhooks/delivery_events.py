"""``webhook.deliveries_updated``, one event per endpoint and short window, not per attempt.

An event per attempt would double what webhook delivery costs the broker and every reader
(the trade of ``experiment.epochs_logged``, ADR 0016). The recorder adds each batch's outcomes
to the endpoint's ``pending_delivery_events`` row in the batch's own transaction (``NOTE_SQL``,
part of the statement that settles the batch's deliveries); the ``delivery-events`` worker
turns each row older than ``WEBHOOKS_DELIVERY_EVENTS_WINDOW_S`` into one event and deletes
it, in one transaction (``write_due``), so nothing recorded is lost or announced twice.
Deleting an endpoint deletes its row (nobody is left to tell).

The event of a window: the attempts recorded, how the deliveries they settled ended
(``succeeded``, ``failed`` for good, ``retrying``), the last ``LATEST`` of them. The event is
not delivered to webhooks (it would announce its own deliveries: ``fanout``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.shared.contracts.webhooks import DeliveryOutcome, WebhookDeliveriesUpdated
from runyard.shared.outbox import emit
from runyard.shared.runtime import WorkSignal
from runyard.webhooks.delivery import AttemptResult

if TYPE_CHECKING:  # attempts imports this module
    from runyard.webhooks.attempts import ClaimedDelivery

#: deliveries an event names at most (the newest of its window)
LATEST = 20
#: the newest ``LATEST`` elements of an array longer than that
KEEP_LAST = f"$[last - {LATEST - 1} to last]"
#: rows written per transaction by the worker
BATCH = 200


@dataclass
class Window:
    """One endpoint's outcomes in a recorder batch."""

    owner_id: uuid.UUID
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    retrying: int = 0
    latest: list[dict[str, Any]] = field(default_factory=list)

    def add(self, job: ClaimedDelivery, result: AttemptResult, status: str | None) -> None:
        """One attempt; ``status`` the delivery's after it (None: a late attempt of a
        delivery settled meanwhile, which changed nothing). A ``DeliveryOutcome`` document,
        written without pydantic: this runs for every attempt."""
        self.attempts += 1
        if status is None:
            return
        if status == "succeeded":
            self.succeeded += 1
        elif status == "failed":
            self.failed += 1
        else:
            self.retrying += 1
        self.latest.append(
            {
                "delivery_id": str(job.delivery_id),
                "event_id": job.event_id,
                "event_type": job.event_type,
                "status": status,
                "attempt_number": job.attempt_number,
                "status_code": result.status_code,
            }
        )
        if len(self.latest) > LATEST:
            del self.latest[:-LATEST]


#: Adds a batch's windows to their endpoints' pending rows (the recorder runs it as a part of
#: the statement that settles the batch's deliveries: ``delivery_queue.settle_deliveries``).
NOTE_SQL = (
    "INSERT INTO webhooks.pending_delivery_events AS p (webhook_id, owner_id, attempts,"
    " succeeded, failed, retrying, latest, first_at, last_at)"
    " SELECT w.webhook_id, w.owner_id, w.attempts, w.succeeded, w.failed, w.retrying,"
    " CAST(w.latest AS jsonb), now(), now()"
    " FROM unnest(CAST(:note_webhook_ids AS uuid[]), CAST(:note_owner_ids AS uuid[]),"
    " CAST(:note_attempts AS int[]), CAST(:note_succeeded AS int[]),"
    " CAST(:note_failed AS int[]), CAST(:note_retrying AS int[]), CAST(:note_latest AS text[]))"
    " AS w(webhook_id, owner_id, attempts, succeeded, failed, retrying, latest)"
    " ON CONFLICT (webhook_id) DO UPDATE SET"
    " attempts = p.attempts + excluded.attempts,"
    " succeeded = p.succeeded + excluded.succeeded,"
    " failed = p.failed + excluded.failed,"
    " retrying = p.retrying + excluded.retrying,"
    " latest = CASE WHEN jsonb_array_length(p.latest) + jsonb_array_length(excluded.latest)"
    " <= :note_latest_max THEN p.latest || excluded.latest ELSE jsonb_path_query_array("
    " p.latest || excluded.latest, CAST(:note_keep_last AS jsonpath)) END,"
    " last_at = excluded.last_at"
)
NOTE = text(NOTE_SQL)

#: Takes the rows older than the window (oldest first, rows other transactions hold skipped).
TAKE_DUE = text(
    "DELETE FROM webhooks.pending_delivery_events WHERE webhook_id IN ("
    " SELECT webhook_id FROM webhooks.pending_delivery_events"
    " WHERE first_at <= now() - make_interval(secs => :window_s)"
    " ORDER BY first_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " RETURNING webhook_id, owner_id, attempts, succeeded, failed, retrying, latest,"
    " first_at, last_at"
).columns(latest=JSONB)


def note_params(windows: dict[uuid.UUID, Window]) -> dict[str, Any]:
    """``NOTE_SQL``'s parameters for a recorder batch's outcomes (per endpoint)."""
    ids = sorted(windows)  # the same lock order in every transaction
    return {
        "note_webhook_ids": ids,
        "note_owner_ids": [windows[i].owner_id for i in ids],
        "note_attempts": [windows[i].attempts for i in ids],
        "note_succeeded": [windows[i].succeeded for i in ids],
        "note_failed": [windows[i].failed for i in ids],
        "note_retrying": [windows[i].retrying for i in ids],
        "note_latest": [json.dumps(windows[i].latest) for i in ids],
        "note_latest_max": LATEST,
        "note_keep_last": KEEP_LAST,
    }


async def note(session: AsyncSession, windows: dict[uuid.UUID, Window]) -> None:
    """Add a recorder batch's outcomes to the pending events, in the batch's transaction (a
    statement of its own; the recorder folds it into its settling statement instead)."""
    if windows:
        await session.execute(NOTE, note_params(windows))


async def write_due(session: AsyncSession, *, window_s: float, limit: int = BATCH) -> int:
    """Write the events of the pending rows older than ``window_s`` and delete the rows; how
    many were written."""
    rows = (await session.execute(TAKE_DUE, {"window_s": window_s, "limit": limit})).all()
    for row in sorted(rows, key=lambda r: r.first_at):
        await emit(
            session,
            WebhookDeliveriesUpdated(
                webhook_id=row.webhook_id,
                owner_id=row.owner_id,
                attempts=row.attempts,
                succeeded=row.succeeded,
                failed=row.failed,
                retrying=row.retrying,
                latest=[DeliveryOutcome.model_validate(d) for d in row.latest],
                first_at=row.first_at,
                last_at=row.last_at,
            ),
            subject=row.webhook_id,
        )
    return len(rows)


async def write_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    signal: WorkSignal,
    *,
    window_s: float,
    poll_s: float,
) -> None:
    """The worker: woken by the recorder's commits of this process (then it lets the window
    fill), else every ``poll_s`` (rows another replica left)."""
    while True:
        seen = signal.generation
        async with sessionmaker() as session, session.begin():
            written = await write_due(session, window_s=window_s)
        if written >= BATCH:
            continue
        if await signal.wait(seen, idle_s=poll_s):
            await asyncio.sleep(window_s)
