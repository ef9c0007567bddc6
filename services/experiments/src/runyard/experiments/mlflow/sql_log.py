"""MLflow's metrics new to a running run's epochs, as one SQL statement.

A training loop logs each epoch's metrics in one ``log-batch`` (or one ``log-metric`` each) to a
run that is running, metrics the run does not hold at those epochs yet (at new epochs, or new to
an epoch an earlier call of the step logged). For that case the database function
``mlflow_log_epochs`` (migrations 0017-0022) does in one statement, its own transaction, what the
Python path (``service_runs.log_batch``: the metric log, ``tracking.service.runs.log_runs``)
does in eight round trips and the ORM: the metric log and each metric's latest value, the epoch
rows, and the run's pending ``experiment.epochs_logged`` with what the run's summaries owe (the
history summary's blocks, the run's totals, latest metrics and best epoch, its last sign of
life), which the epoch-events worker folds in once per run and window
(``tracking.service.epoch_events.fold``; every other writer of the run folds first). Every
other case (a pending, stalled, finished or deleted run, another user's, a metric the epoch
holds already, params or tags, a value only the metric log can hold) it leaves untouched and
says so, and the Python path handles it. ``tests/mlflow/test_sql_log_path.py`` sends the same
requests both ways and compares the rows.

The call goes to the pool's asyncpg connection directly: outside a transaction one statement
commits by itself, so the request pays one round trip (no ``BEGIN``/``COMMIT``) and no ORM.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from runyard.experiments.mlflow.metrics import Point
from runyard.experiments.models import SCHEMA
from runyard.shared.db import database_unavailable, utcnow

CALL = f"SELECT {SCHEMA}.mlflow_log_epochs($1, $2, $3, $4, $5, $6, $7)"


async def log_epochs(
    engine: AsyncEngine, run_id: uuid.UUID, owner_id: uuid.UUID | None, points: Sequence[Point]
) -> bool:
    """Write ``points`` (validated, each one an epoch's finite value) to the run; ``owner_id``
    the caller's (``None``: an admin, who writes every run). False: nothing written, the
    request is not the common case."""
    async with engine.connect() as connection:
        pooled = await connection.get_raw_connection()
        driver = pooled.driver_connection
        assert driver is not None
        try:
            done = await driver.fetchval(
                CALL,
                run_id,
                owner_id,
                [p.key for p in points],
                [p.value for p in points],
                [p.timestamp for p in points],
                [p.step for p in points],
                utcnow(),
            )
        except BaseException as exc:
            if database_unavailable(exc):
                await connection.invalidate(exc)
            raise
    return bool(done)
