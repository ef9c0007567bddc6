"""Every query of the prediction log. Ingestion talks to asyncpg directly (one statement for a
whole batch); reads go through the session."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import SCHEMA
from runyard.experiments.predictions.histograms import (
    CONFIDENCE_BUCKETS,
    LATENCY_BUCKETS,
    SQL_CONFIDENCE_BUCKET,
    SQL_LATENCY_BUCKET,
    Summary,
)


@dataclass(frozen=True)
class VersionRef:
    """A model version as the prediction log needs it."""

    version_id: uuid.UUID
    model_id: uuid.UUID
    model_name: str
    version: int
    owner_id: uuid.UUID
    input_schema: dict[str, Any] | None
    archived_at: datetime | None


SELECT_VERSION = (
    "SELECT v.id, m.id, m.name, v.version, m.owner_id, v.input_schema, v.archived_at "  # noqa: S608
    f"FROM {SCHEMA}.registered_models m JOIN {SCHEMA}.model_versions v ON v.model_id = m.id "
    "WHERE v.version = :version AND "
)
BY_NAME = text(SELECT_VERSION + "m.owner_id = :owner_id AND m.name = :name")
BY_ID = text(SELECT_VERSION + "m.id = :model_id")


async def version(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    name: str,
    number: int,
    model_id: uuid.UUID | None = None,
) -> VersionRef | None:
    """By the model's id if given (any owner's: the caller checks), else by its name among
    ``owner_id``'s models."""
    if model_id is not None:
        query, params = BY_ID, {"model_id": model_id, "version": number}
    else:
        query, params = BY_NAME, {"owner_id": owner_id, "name": name, "version": number}
    row = (await session.execute(query, params)).first()
    return None if row is None else VersionRef(*row)


async def driver(session: AsyncSession) -> Any:
    """The asyncpg connection of the session's transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


#: the rows of one request in one statement: input and output straight from the request's
#: JSON (parsed by PostgreSQL, never re-serialized), the checked scalars as arrays
INSERT = f"""
INSERT INTO {SCHEMA}.predictions (version_id, time, input, output, confidence, latency_ms, error)
SELECT $1, r.time, r.input, r.output, r.confidence, r.latency_ms, r.error
FROM ROWS FROM (
    jsonb_to_recordset({{rows}}) AS (input jsonb, output jsonb),
    unnest($3::timestamptz[]),
    unnest($4::float8[]),
    unnest($5::float8[]),
    unnest($6::text[])
) AS r(input, output, time, confidence, latency_ms, error)
"""  # noqa: S608
INSERT_BATCH = INSERT.format(rows="$2::jsonb -> 'predictions'")
INSERT_ONE = INSERT.format(rows="jsonb_build_array($2::jsonb)")

ROLLUP_UPSERT = f"""
INSERT INTO {SCHEMA}.prediction_rollups AS r
    (version_id, grain, start, n, errors, latency_sum, confidence_null, confidence, latency)
SELECT $1, g, s, n, e, ls, cn,
       ($8::bigint[])[(i - 1) * {CONFIDENCE_BUCKETS} + 1 : i * {CONFIDENCE_BUCKETS}],
       ($9::bigint[])[(i - 1) * {LATENCY_BUCKETS} + 1 : i * {LATENCY_BUCKETS}]
FROM unnest($2::smallint[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::float8[],
            $7::bigint[]) WITH ORDINALITY AS u(g, s, n, e, ls, cn, i)
ORDER BY g, s
ON CONFLICT (version_id, grain, start) DO UPDATE SET
    n = r.n + excluded.n,
    errors = r.errors + excluded.errors,
    latency_sum = r.latency_sum + excluded.latency_sum,
    confidence_null = r.confidence_null + excluded.confidence_null,
    confidence = ARRAY(SELECT a + b FROM unnest(r.confidence, excluded.confidence)
                       WITH ORDINALITY AS t(a, b, k) ORDER BY k),
    latency = ARRAY(SELECT a + b FROM unnest(r.latency, excluded.latency)
                    WITH ORDINALITY AS t(a, b, k) ORDER BY k)
"""  # noqa: S608


async def insert(
    conn: Any,
    *,
    version_id: uuid.UUID,
    body: bytes,
    batch: bool,
    times: Sequence[datetime],
    confidence: Sequence[float | None],
    latency_ms: Sequence[float],
    error: Sequence[str | None],
) -> None:
    await conn.execute(
        INSERT_BATCH if batch else INSERT_ONE,
        version_id,
        body.decode(),
        times,
        confidence,
        latency_ms,
        error,
    )


async def add_rollups(
    conn: Any, version_id: uuid.UUID, rows: Sequence[tuple[int, datetime, Summary]]
) -> None:
    """Add ``(grain, start, summary)`` to the rollups, in key order (so that concurrent
    requests lock the rows in the same order and never deadlock)."""
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    await conn.execute(
        ROLLUP_UPSERT,
        version_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2].n for r in rows],
        [r[2].errors for r in rows],
        [r[2].latency_sum for r in rows],
        [r[2].confidence_null for r in rows],
        [c for r in rows for c in r[2].confidence],
        [c for r in rows for c in r[2].latency],
    )


#: claim a batch id: a row if this request is the first with it (a concurrent one holding the
#: same key uncommitted makes this wait for its end), none if one was stored before
CLAIM = f"""
INSERT INTO {SCHEMA}.prediction_batches (owner_id, key, version_id, count, body_sha256)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (owner_id, key) DO NOTHING
RETURNING 1
"""  # noqa: S608
CLAIMED = (
    f"SELECT version_id, count, body_sha256 FROM {SCHEMA}.prediction_batches "  # noqa: S608
    "WHERE owner_id = $1 AND key = $2"
)


@dataclass(frozen=True)
class StoredBatch:
    version_id: uuid.UUID
    count: int
    body_sha256: bytes


async def claim_batch(
    conn: Any,
    *,
    owner_id: uuid.UUID,
    key: str,
    version_id: uuid.UUID,
    count: int,
    digest: bytes,
) -> StoredBatch | None:
    """None: the key is this request's (its rows are to be stored in this transaction); else
    the batch stored under it before."""
    if await conn.fetchval(CLAIM, owner_id, key, version_id, count, digest) is not None:
        return None
    row = await conn.fetchrow(CLAIMED, owner_id, key)
    assert row is not None  # a conflict means a committed row
    return StoredBatch(row["version_id"], row["count"], bytes(row["body_sha256"]))


# --- reads -------------------------------------------------------------------------------------


async def page(
    session: AsyncSession,
    version_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[Any, ...] | None,
    since: datetime | None,
    until: datetime | None,
) -> list[Any]:
    """Newest first over ``(time, id)``; ``limit + 1`` rows."""
    where = ["version_id = :v"]
    params: dict[str, Any] = {"v": version_id, "limit": limit + 1}
    if after is not None:
        where.append("(time, id) < (:t, :i)")
        params.update(t=after[0], i=after[1])
    if since is not None:
        where.append("time >= :since")
        params["since"] = since
    if until is not None:
        where.append("time < :until")
        params["until"] = until
    rows = await session.execute(
        text(
            "SELECT id, time, input, output, confidence, latency_ms, error "  # noqa: S608
            f"FROM {SCHEMA}.predictions WHERE {' AND '.join(where)} "
            "ORDER BY time DESC, id DESC LIMIT :limit"
        ).columns(input=JSONB, output=JSONB),
        params,
    )
    return list(rows.mappings())


#: the summary of a window in one round trip: the rows of its ragged edges (``:r0s``-``:r1e``,
#: each part under a minute) and the rollups of its whole minutes (``:m0s``-``:m1e``) and hours
#: (``:hs``-``:he``), as (kind, bucket, count, latency sum) rows; an unused range is empty
WINDOW = f"""
WITH p AS (
    SELECT error, latency_ms, confidence FROM {SCHEMA}.predictions
    WHERE version_id = :v
      AND ((time >= :r0s AND time < :r0e) OR (time >= :r1s AND time < :r1e))
), r AS (
    SELECT n, errors, latency_sum, confidence_null, confidence, latency
    FROM {SCHEMA}.prediction_rollups
    WHERE version_id = :v
      AND ((grain = 60 AND start >= :m0s AND start < :m0e)
           OR (grain = 60 AND start >= :m1s AND start < :m1e)
           OR (grain = 3600 AND start >= :hs AND start < :he))
)
SELECT 'n', 0, count(*), coalesce(sum(latency_ms), 0) FROM p
UNION ALL SELECT 'e', 0, count(error), 0 FROM p
UNION ALL SELECT 'z', 0, count(*) - count(confidence), 0 FROM p
UNION ALL SELECT 'c', b, count(*), 0 FROM (
    SELECT {SQL_CONFIDENCE_BUCKET} AS b FROM p WHERE confidence IS NOT NULL) pc GROUP BY b
UNION ALL SELECT 'l', b, count(*), 0 FROM (SELECT {SQL_LATENCY_BUCKET} AS b FROM p) pl GROUP BY b
UNION ALL SELECT 'n', 0, coalesce(sum(n), 0), coalesce(sum(latency_sum), 0) FROM r
UNION ALL SELECT 'e', 0, coalesce(sum(errors), 0), 0 FROM r
UNION ALL SELECT 'z', 0, coalesce(sum(confidence_null), 0), 0 FROM r
UNION ALL SELECT 'c', k - 1, sum(c), 0
    FROM r, unnest(r.confidence) WITH ORDINALITY AS u(c, k) WHERE c <> 0 GROUP BY k
UNION ALL SELECT 'l', k - 1, sum(c), 0
    FROM r, unnest(r.latency) WITH ORDINALITY AS u(c, k) WHERE c <> 0 GROUP BY k
"""  # noqa: S608

Range = tuple[datetime, datetime]


async def window(
    session: AsyncSession,
    version_id: uuid.UUID,
    *,
    raw: Sequence[Range],
    minutes: Sequence[Range],
    hours: Sequence[Range],
    empty: datetime,
) -> Summary:
    """The summary of up to two ragged ranges read from the rows, two ranges of whole minutes
    and one of whole hours read from the rollups (``empty``: the bound of an unused range)."""

    def pad(ranges: Sequence[Range], count: int) -> list[Range]:
        assert len(ranges) <= count
        return [*ranges, *[(empty, empty)] * (count - len(ranges))]

    params: dict[str, Any] = {"v": version_id}
    for i, (s, e) in enumerate(pad(raw, 2)):
        params.update({f"r{i}s": s, f"r{i}e": e})
    for i, (s, e) in enumerate(pad(minutes, 2)):
        params.update({f"m{i}s": s, f"m{i}e": e})
    ((params["hs"], params["he"]),) = pad(hours, 1)
    summary = Summary()
    for kind, bucket, count, total in await session.execute(text(WINDOW), params):
        if kind == "n":
            summary.n += int(count)
            summary.latency_sum += float(total)
        elif kind == "e":
            summary.errors += int(count)
        elif kind == "z":
            summary.confidence_null += int(count)
        elif kind == "c":
            summary.confidence[bucket] += int(count)
        else:
            summary.latency[bucket] += int(count)
    return summary


async def exact_latency(
    session: AsyncSession, version_id: uuid.UUID, start: datetime, end: datetime
) -> tuple[float | None, float | None, float | None]:
    """p50, p95, p99 of the latencies in ``[start, end)`` (``percentile_cont``)."""
    row = (
        await session.execute(
            text(
                "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms) "  # noqa: S608
                f"FROM {SCHEMA}.predictions WHERE version_id = :v AND time >= :s AND time < :e"
            ),
            {"v": version_id, "s": start, "e": end},
        )
    ).scalar_one()
    if row is None:
        return None, None, None
    return row[0], row[1], row[2]


async def first_time(session: AsyncSession, version_id: uuid.UUID) -> datetime | None:
    found: datetime | None = await session.scalar(
        text(f"SELECT time FROM {SCHEMA}.predictions WHERE version_id = :v ORDER BY time LIMIT 1"),  # noqa: S608
        {"v": version_id},
    )
    return found


#: per bucket of ``:i`` seconds from ``:s`` (a multiple of ``:g``), the sums of the rollups of
#: grain ``:g`` starting in it: (bucket, -1, count, errors, latency sum) rows, then (bucket,
#: latency histogram bucket, count, 0, 0) rows for the non-zero histogram counts
SERIES = f"""
WITH r AS (
    SELECT floor(extract(epoch FROM start - :s) / :i)::int AS b, n, errors, latency_sum, latency
    FROM {SCHEMA}.prediction_rollups
    WHERE version_id = :v AND grain = :g AND start >= :s AND start < :e
)
SELECT b, -1, sum(n), sum(errors), sum(latency_sum) FROM r GROUP BY b
UNION ALL
SELECT b, k - 1, sum(c), 0, 0
    FROM r, unnest(r.latency) WITH ORDINALITY AS u(c, k) WHERE c <> 0 GROUP BY b, k
"""  # noqa: S608


async def series(
    session: AsyncSession,
    version_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime,
    interval: int,
    grain: int,
    buckets: int,
) -> list[Summary]:
    """``buckets`` summaries (count, errors, latency sum and histogram) of consecutive
    ``interval``-second buckets from ``start``, in one query over the rollups of ``grain``."""
    out = [Summary() for _ in range(buckets)]
    params = {"v": version_id, "s": start, "e": end, "i": interval, "g": grain}
    for bucket, k, count, errors, total in await session.execute(text(SERIES), params):
        if not 0 <= bucket < buckets:
            continue
        summary = out[bucket]
        if k < 0:
            summary.n = int(count)
            summary.errors = int(errors)
            summary.latency_sum = float(total)
        else:
            summary.latency[k] = int(count)
    return out
