"""Use cases of the prediction log: log a batch, list, stats with drift, and the periodic drift
check. They work in the caller's transaction and never commit.

Logging is all or nothing and costs no ORM object per row: the body is parsed once by pydantic
(from bytes, in Rust), each input checked by the version's compiled JSON Schema validator
(``jsonschema-rs``, cached per version), then one statement inserts every row, taking ``input``
and ``output`` from the request's JSON as PostgreSQL parses it (nothing is serialized again),
and one statement adds the request's per-minute and per-hour rollups.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.experiments.config import Settings
from runyard.experiments.errors import ValidationFailed
from runyard.experiments.models import SCHEMA
from runyard.experiments.predictions import histograms, partitions, repository
from runyard.experiments.predictions.errors import InvalidPrediction, VersionArchived
from runyard.experiments.predictions.histograms import Summary
from runyard.experiments.predictions.models import PredictionDrift
from runyard.experiments.predictions.repository import VersionRef
from runyard.experiments.predictions.schemas import (
    BATCH,
    ONE,
    Bucket,
    ConfidenceStats,
    DriftStats,
    LatencyStats,
    PredictionIn,
    PredictionSeries,
    PredictionStats,
    SeriesBucket,
    SeriesLatency,
)
from runyard.experiments.registry.service import compile_schema
from runyard.experiments.users import owner_fields
from runyard.shared.contracts.models import ModelVersionDriftDetected
from runyard.shared.identity import Principal, require_writer
from runyard.shared.outbox import emit
from runyard.shared.pagination import cut, decode_cursor

MINUTE, HOUR = 60, 3600
BASELINE = timedelta(days=1)
#: the advisory lock of a drift pass: "PRDD"
DRIFT_LOCK = 0x50524444

# --- the version ---------------------------------------------------------------------------


async def find_version(
    session: AsyncSession,
    *,
    principal: Principal,
    name: str,
    number: int,
    owner_id: uuid.UUID | None = None,
    write: bool = False,
) -> VersionRef:
    """Version ``number`` of the model ``name`` of ``owner_id`` (default: the caller), or of the
    model whose id ``name`` is; 404 if the caller may not read it (with ``write``: change it)."""
    if write:
        require_writer(principal)
    ref = None
    model_id = _as_uuid(name)
    if model_id is not None:
        ref = await repository.version(
            session, owner_id=principal.user_id, name=name, number=number, model_id=model_id
        )
    if ref is None:
        ref = await repository.version(
            session, owner_id=owner_id or principal.user_id, name=name, number=number
        )
    (access.check_write if write else access.check_read)(principal, ref, "model version")
    assert ref is not None
    return ref


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


_validators: OrderedDict[uuid.UUID, tuple[dict[str, Any], Any]] = OrderedDict()
VALIDATOR_CACHE = 512


def validator_for(ref: VersionRef) -> Any:
    """The compiled validator of the version's input schema (None: no schema), kept per
    version (recompiled if the schema changed)."""
    schema = ref.input_schema
    if schema is None:
        return None
    cached = _validators.get(ref.version_id)
    if cached is not None and cached[0] == schema:
        _validators.move_to_end(ref.version_id)
        return cached[1]
    validator = compile_schema(schema)  # never fetches a remote $ref
    _validators[ref.version_id] = (schema, validator)
    if len(_validators) > VALIDATOR_CACHE:
        _validators.popitem(last=False)
    return validator


# --- logging -------------------------------------------------------------------------------


def _refusal(exc: ValidationError) -> InvalidPrediction:
    first = exc.errors(include_url=False)[0]
    loc: list[str | int] = ["body", *first["loc"]]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return InvalidPrediction(
        f"{where}: {first['msg']}", loc=loc, msg=first["msg"], type_=first["type"]
    )


def parse(body: bytes) -> tuple[list[PredictionIn], bool]:
    """The predictions of a body and whether it was a batch; 422 naming the first problem."""
    try:
        return BATCH.validate_json(body)["predictions"], True
    except ValidationError as exc:
        batch_error = exc
    errors = batch_error.errors(include_url=False)
    # no "predictions" key (or no JSON object at all): one prediction
    if not any(e["loc"] == ("predictions",) and e["type"] == "missing" for e in errors):
        raise _refusal(batch_error)
    try:
        return [ONE.validate_json(body)], False
    except ValidationError as exc:
        raise _refusal(exc) from None


def _where(batch: bool, index: int) -> list[str | int]:
    return ["body", "predictions", index] if batch else ["body"]


def check_inputs(rows: list[PredictionIn], validator: Any, *, batch: bool) -> None:
    """422 naming the first input (index, JSON path) the schema refuses."""
    if validator is None:
        return
    is_valid = validator.is_valid
    for index, row in enumerate(rows):
        if not is_valid(row["input"]):
            error = next(iter(validator.iter_errors(row["input"])))
            path = [p for p in error.instance_path]
            pointer = "/" + "/".join(str(p) for p in path)
            prefix = f"predictions[{index}]." if batch else ""
            raise InvalidPrediction(
                f"{prefix}input{pointer if path else ''}: {error.message}",
                loc=[*_where(batch, index), "input", *path],
                msg=error.message,
                type_="json_schema",
            )


@dataclass(frozen=True)
class Columns:
    times: list[datetime]
    #: the same as epoch seconds
    seconds: list[float]
    confidence: list[float | None]
    latency_ms: list[float]
    error: list[str | None]


def columns(rows: list[PredictionIn], *, now: datetime, settings: Settings, batch: bool) -> Columns:
    """The scalar columns, each row's time defaulted to ``now`` and checked against what is
    kept: from the first kept month (``predictions_retention_months``) to
    ``predictions_max_future_s`` after now."""
    oldest = partitions.month_start(
        partitions.oldest_kept(now, settings.predictions_retention_months)
    )
    latest = now + timedelta(seconds=settings.predictions_max_future_s)
    times: list[datetime] = []
    seconds: list[float] = []
    now_s = now.timestamp()
    for index, row in enumerate(rows):
        moment = row.get("time")
        if moment is None:
            times.append(now)
            seconds.append(now_s)
            continue
        if not oldest <= moment <= latest:
            too = "old" if moment < oldest else "far in the future"
            detail = (
                f"The time {moment.isoformat()} is too {too}: predictions from "
                f"{oldest.isoformat()} to {latest.isoformat()} are taken."
            )
            raise InvalidPrediction(
                detail, loc=[*_where(batch, index), "time"], msg=f"too {too}", type_="value_error"
            )
        times.append(moment)
        seconds.append(moment.timestamp())
    return Columns(
        times=times,
        seconds=seconds,
        confidence=[r.get("confidence") for r in rows],
        latency_ms=[r["latency_ms"] for r in rows],
        error=[r.get("error") for r in rows],
    )


def rollup_rows(cols: Columns) -> list[tuple[int, datetime, Summary]]:
    """The per-minute and per-hour summaries of a request's rows."""
    seconds = np.asarray(cols.seconds, dtype=np.float64)
    latency = np.asarray(cols.latency_ms, dtype=np.float64)
    confidence = np.asarray(
        [math.nan if c is None else c for c in cols.confidence], dtype=np.float64
    )
    failed = np.asarray([e is not None for e in cols.error], dtype=np.bool_)
    out: list[tuple[int, datetime, Summary]] = []
    for grain in (MINUTE, HOUR):
        starts = (np.floor(seconds / grain) * grain).astype(np.int64)
        for start, summary in histograms.summarize(starts, latency, confidence, failed).items():
            out.append((grain, datetime.fromtimestamp(start, UTC), summary))
    return out


@dataclass(frozen=True)
class Logged:
    count: int
    #: True: a batch with the same key was stored before (nothing was stored now)
    replayed: bool = False


def _replay(ref: VersionRef, stored: repository.StoredBatch, digest: bytes) -> Logged:
    """The first answer of a repeated key, or 422 if the key was used for another batch."""
    if stored.version_id != ref.version_id:
        what = "another model version"
    elif stored.body_sha256 != digest:
        what = "another body"
    else:
        return Logged(stored.count, replayed=True)
    raise InvalidPrediction(
        f"Idempotency-Key was used for {what}: a key names one batch of one version.",
        loc=["header", IDEMPOTENCY_KEY],
        msg=f"used for {what}",
        type_="idempotency_key_reused",
    )


IDEMPOTENCY_KEY = "Idempotency-Key"


async def log_predictions(
    session: AsyncSession,
    *,
    ref: VersionRef,
    body: bytes,
    settings: Settings,
    now: datetime,
    key: str | None = None,
) -> Logged:
    """Store every prediction of ``body`` or none (422 naming the first problem). With ``key``
    (the request's ``Idempotency-Key``), exactly once: the key is claimed in the same transaction
    as the rows, and a key stored before answers with that batch's count and stores nothing
    (422 if it was stored for another version or body). A concurrent request with the same key
    waits on the key's row until the first one ends, then answers from it."""
    rows, batch = parse(body)
    conn = await repository.driver(session)
    if key is not None:
        digest = hashlib.sha256(body).digest()
        stored = await repository.claim_batch(
            conn,
            owner_id=ref.owner_id,
            key=key,
            version_id=ref.version_id,
            count=len(rows),
            digest=digest,
        )
        if stored is not None:
            return _replay(ref, stored, digest)
    if ref.archived_at is not None:
        raise VersionArchived(ref.version)
    check_inputs(rows, validator_for(ref), batch=batch)
    cols = columns(rows, now=now, settings=settings, batch=batch)
    rollups = rollup_rows(cols)
    months = {partitions.month_of(start) for grain, start, _ in rollups if grain == HOUR}
    made = await partitions.ensure(session, months)
    try:
        await repository.insert(
            conn,
            version_id=ref.version_id,
            body=body,
            batch=batch,
            times=cols.times,
            confidence=cols.confidence,
            latency_ms=cols.latency_ms,
            error=cols.error,
        )
        await repository.add_rollups(conn, ref.version_id, rollups)
    except asyncpg.DataError as exc:
        # what pydantic let through and PostgreSQL does not take (\u0000 in a string, NaN)
        partitions.known(session).difference_update(made)
        raise InvalidPrediction(
            f"PostgreSQL refused a value: {exc}", loc=["body"], msg=str(exc), type_="value_error"
        ) from None
    except BaseException:
        partitions.known(session).difference_update(made)
        raise
    return Logged(len(rows))


# --- reads ---------------------------------------------------------------------------------


async def list_predictions(
    session: AsyncSession,
    *,
    ref: VersionRef,
    limit: int,
    cursor: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[Any], str | None]:
    after = decode_cursor(cursor, "predictions", datetime, int)
    rows = await repository.page(
        session, ref.version_id, limit=limit, after=after, since=since, until=until
    )
    return cut(rows, limit, "predictions", lambda r: (r["time"], r["id"]))


def _ceil(moment: datetime, grain: int) -> datetime:
    seconds = moment.timestamp()
    return datetime.fromtimestamp(math.ceil(seconds / grain) * grain, UTC)


def _floor(moment: datetime, grain: int) -> datetime:
    seconds = moment.timestamp()
    return datetime.fromtimestamp(math.floor(seconds / grain) * grain, UTC)


def split_window(
    start: datetime, end: datetime
) -> tuple[
    list[tuple[datetime, datetime]],
    list[tuple[datetime, datetime]],
    list[tuple[datetime, datetime]],
]:
    """``[start, end)`` as (raw ranges, whole-minute ranges, whole-hour ranges): hours where
    whole hours fit, minutes around them, the rows themselves for the partial minutes."""
    m0, m1 = _ceil(start, MINUTE), _floor(end, MINUTE)
    if m0 >= m1:
        return [(start, end)], [], []
    raw = [(start, m0), (m1, end)]
    h0, h1 = _ceil(m0, HOUR), _floor(m1, HOUR)
    if h0 >= h1:
        return raw, [(m0, m1)], []
    return raw, [(m0, h0), (h1, m1)], [(h0, h1)]


async def window_summary(
    session: AsyncSession, version_id: uuid.UUID, start: datetime, end: datetime
) -> Summary:
    if start >= end:
        return Summary()
    raw, minutes, hours = split_window(start, end)
    return await repository.window(
        session,
        version_id,
        raw=[(s, e) for s, e in raw if s < e],
        minutes=[(s, e) for s, e in minutes if s < e],
        hours=hours,
        empty=start,
    )


@dataclass(frozen=True)
class Drift:
    psi: float | None
    baseline_from: datetime | None
    baseline_to: datetime | None
    baseline_count: int
    window_count: int


async def drift(session: AsyncSession, version_id: uuid.UUID, window: Summary) -> Drift:
    """PSI of ``window``'s confidence histogram against the version's first day."""
    first = await repository.first_time(session, version_id)
    if first is None:
        return Drift(None, None, None, 0, sum(window.confidence))
    baseline = await window_summary(session, version_id, first, first + BASELINE)
    return Drift(
        histograms.psi(window.confidence, baseline.confidence),
        first,
        first + BASELINE,
        sum(baseline.confidence),
        sum(window.confidence),
    )


async def stats(
    session: AsyncSession, *, ref: VersionRef, start: datetime, end: datetime, settings: Settings
) -> PredictionStats:
    summary = await window_summary(session, ref.version_id, start, end)
    exact = summary.n <= settings.predictions_exact_percentiles_max
    if exact:
        p50, p95, p99 = await repository.exact_latency(session, ref.version_id, start, end)
    else:
        p50, p95, p99 = (
            histograms.percentile_from_histogram(summary.latency, q) for q in (0.5, 0.95, 0.99)
        )
    found = await drift(session, ref.version_id, summary)
    threshold = settings.drift_psi_threshold
    return PredictionStats(
        from_=start,
        to=end,
        count=summary.n,
        errors=summary.errors,
        error_rate=summary.errors / summary.n if summary.n else None,
        latency_ms=LatencyStats(
            p50=p50,
            p95=p95,
            p99=p99,
            mean=summary.latency_sum / summary.n if summary.n else None,
            exact=exact,
        ),
        confidence=ConfidenceStats(
            buckets=[
                Bucket(lower=low, upper=high, count=count)
                for (low, high), count in zip(
                    histograms.confidence_bounds(), summary.confidence, strict=True
                )
            ],
            null_count=summary.confidence_null,
        ),
        drift=DriftStats(
            psi=found.psi,
            threshold=threshold,
            drifted=found.psi is not None and found.psi >= threshold,
            baseline_from=found.baseline_from,
            baseline_to=found.baseline_to,
            baseline_count=found.baseline_count,
        ),
    )


#: most buckets one series read answers
MAX_SERIES_BUCKETS = 1000


async def stats_series(
    session: AsyncSession, *, ref: VersionRef, start: datetime, end: datetime, interval: int
) -> PredictionSeries:
    """Per bucket of ``interval`` seconds (a multiple of a minute) over ``[start, end)``, its
    edges rounded out to the grain read (hours if ``interval`` is a multiple of an hour, else
    minutes): count, errors, error rate, latency percentiles from the histograms and mean; one
    query over the rollups, never the rows."""
    if interval % MINUTE:
        raise ValidationFailed(
            "interval must be a whole number of minutes (a multiple of 60 seconds).",
            loc=["query", "interval"],
            msg="not a multiple of 60",
        )
    grain = HOUR if interval % HOUR == 0 else MINUTE
    first, last = _floor(start, grain), _ceil(end, grain)
    count = math.ceil((last - first).total_seconds() / interval)
    if count > MAX_SERIES_BUCKETS:
        raise ValidationFailed(
            f"The window holds {count} buckets of {interval} s: at most "
            f"{MAX_SERIES_BUCKETS} are answered (a longer interval or a shorter window).",
            loc=["query", "interval"],
            msg="too many buckets",
        )
    last = first + timedelta(seconds=interval * count)
    summaries = await repository.series(
        session,
        ref.version_id,
        start=first,
        end=last,
        interval=interval,
        grain=grain,
        buckets=count,
    )
    step = timedelta(seconds=interval)
    return PredictionSeries(
        from_=first,
        to=last,
        interval=interval,
        grain=grain,
        buckets=[
            SeriesBucket(
                start=first + step * i,
                end=first + step * (i + 1),
                count=s.n,
                errors=s.errors,
                error_rate=s.errors / s.n if s.n else None,
                latency_ms=SeriesLatency(
                    p50=histograms.percentile_from_histogram(s.latency, 0.5),
                    p95=histograms.percentile_from_histogram(s.latency, 0.95),
                    p99=histograms.percentile_from_histogram(s.latency, 0.99),
                    mean=s.latency_sum / s.n if s.n else None,
                ),
            )
            for i, s in enumerate(summaries)
        ],
    )


# --- the drift worker ----------------------------------------------------------------------

ACTIVE_VERSIONS = text(
    f"SELECT DISTINCT r.version_id FROM {SCHEMA}.prediction_rollups r "  # noqa: S608
    f"JOIN {SCHEMA}.model_versions v ON v.id = r.version_id "
    "WHERE r.grain = 3600 AND r.start >= :since AND v.archived_at IS NULL"
)
MODEL_OF = text(
    f"SELECT m.id, m.name, m.owner_id, v.version FROM {SCHEMA}.model_versions v "  # noqa: S608
    f"JOIN {SCHEMA}.registered_models m ON m.id = v.model_id WHERE v.id = :v"
)


async def check_drift(session: AsyncSession, *, now: datetime, settings: Settings) -> int:
    """One pass: for every unarchived version with predictions in the last ``drift_window_s``,
    the PSI of that window against its first day; ``model_version.drift_detected`` when it
    reaches the threshold and the version had none within the cooldown. Returns the events
    written. A replica that finds another one's pass running skips (advisory lock)."""
    locked = await session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": DRIFT_LOCK})
    if not locked:
        return 0
    window_from = now - timedelta(seconds=settings.drift_window_s)
    versions = (await session.scalars(ACTIVE_VERSIONS, {"since": _floor(window_from, HOUR)})).all()
    written = 0
    for version_id in versions:
        window = await window_summary(session, version_id, window_from, now)
        found = await drift(session, version_id, window)
        if found.baseline_to is None or found.baseline_to > window_from:
            continue  # the window overlaps the first day: nothing to compare yet
        enough = min(found.window_count, found.baseline_count) >= settings.drift_min_predictions
        value = found.psi if enough else None
        state = await session.get(PredictionDrift, version_id, with_for_update=True)
        alert = (
            value is not None
            and value >= settings.drift_psi_threshold
            and (
                state is None
                or state.alerted_at is None
                or state.alerted_at <= now - timedelta(seconds=settings.drift_cooldown_s)
            )
        )
        alerted_at = now if alert else (state.alerted_at if state else None)
        await session.execute(
            insert(PredictionDrift)
            .values(version_id=version_id, checked_at=now, psi=value, alerted_at=alerted_at)
            .on_conflict_do_update(
                index_elements=["version_id"],
                set_={"checked_at": now, "psi": value, "alerted_at": alerted_at},
            )
        )
        if not alert:
            continue
        assert value is not None and found.baseline_from is not None
        model_id, model_name, owner_id, number = (
            await session.execute(MODEL_OF, {"v": version_id})
        ).one()
        payload = ModelVersionDriftDetected(
            model_id=model_id,
            model_name=model_name,
            owner_id=owner_id,
            **await owner_fields(session, owner_id),
            model_version=number,
            version_id=version_id,
            psi=value,
            threshold=settings.drift_psi_threshold,
            window_from=window_from,
            window_to=now,
            window_count=found.window_count,
            baseline_from=found.baseline_from,
            baseline_to=found.baseline_to,
            baseline_count=found.baseline_count,
        )
        await emit(session, payload, subject=model_id)
        written += 1
    return written
