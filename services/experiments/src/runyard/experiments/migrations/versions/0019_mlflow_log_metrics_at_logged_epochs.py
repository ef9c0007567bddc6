"""``mlflow_log_epochs`` also takes metrics new to epochs the run has logged

MLflow's ``log_metric`` sends one request per metric: a loop logging four metrics per step sends
four ``log-metric`` calls at the same step, and 0017/0018's function took only the first (the
others found the epoch stored and went down the Python path, at about twice the stack's CPU).
This version takes every request whose (metric, epoch) pairs the run does not hold yet, at new
epochs or at epochs it has logged: an epoch it has is updated (the new metrics added, its other
values kept), counts as written but not inserted, and adds its values to the history summary's
blocks of those metrics (each value new to its metric's block; the block's last value moves only
to a higher epoch, with the time the epoch was first logged, as the Python path's rebuild of the
block gives). It still writes nothing, for the Python path, when a metric of the request is
stored at its epoch already (a value logged again, possibly another one). A metric new to the
run's best epoch leaves the best as it is: the best metric's value there is stored already, so
the Python path, which computes the best again only when that value changes, keeps it too.
Everything else is 0018's function. ``tests/mlflow/test_sql_log_path.py`` compares both paths' rows.

Revision ID: 0019
Revises: 0018
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"

#: the metrics a training run has columns for (``tracking.repository.runs.RUN_COLUMNS``)
RUN_COLUMNS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")
_NAMES = ", ".join(f"'{c}'" for c in RUN_COLUMNS)
_LAST = "(array_agg({value} ORDER BY {epoch} DESC))[1]"
#: whether the stored epoch ``r`` holds metric ``u.k``
_HOLDS = (
    "CASE u.k "
    + " ".join(f"WHEN '{c}' THEN r.{c} IS NOT NULL" for c in RUN_COLUMNS)
    + " ELSE r.metrics ? u.k END"
)
#: the request's value of each column metric at an epoch
_BY_COLUMN = ", ".join(f"max(c.v) FILTER (WHERE c.k = '{c}') AS {c}" for c in RUN_COLUMNS)
#: the column metrics of the highest epoch after the call, as jsonb_build_object's arguments
_MERGED_COLUMNS = ", ".join(
    f"'{c}', {SCHEMA}.json_float(coalesce(n.{c}, r.{c}))" for c in RUN_COLUMNS
)

LOG_EPOCHS = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.mlflow_log_epochs(
    p_run uuid, p_owner uuid, p_key text[], p_value double precision[], p_timestamp bigint[],
    p_step bigint[], p_now timestamptz
) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    e record;
    v_epochs int[];
    v_stored int[];
    v_new int[];
    v_held boolean;
    v_last int;
    v_old_tail int;
    v_tail int;
BEGIN
    SELECT status, owner_id, deleted_at, stalled_at, last_epoch, best_metric, best_mode,
           best_value
      INTO e FROM {SCHEMA}.experiments WHERE id = p_run FOR UPDATE;
    IF NOT FOUND OR e.status <> 'running' OR e.stalled_at IS NOT NULL
       OR e.deleted_at IS NOT NULL OR (p_owner IS NOT NULL AND e.owner_id <> p_owner) THEN
        RETURN false;
    END IF;
    -- under the run's lock: the request's epochs and those the run has not logged, whether
    -- the run holds one of the request's metrics at its epoch already, and its tail block
    SELECT x.epochs, x.stored,
           EXISTS (SELECT FROM {SCHEMA}.training_runs AS r
                   JOIN unnest(p_key, p_step) AS u(k, s) ON r.epoch = u.s::int
                   WHERE r.experiment_id = p_run AND r.epoch = ANY(x.stored) AND {_HOLDS}),
           (SELECT max(r.epoch) >> 4 FROM {SCHEMA}.training_runs AS r
            WHERE r.experiment_id = p_run)
      INTO v_epochs, v_stored, v_held, v_old_tail
      FROM (SELECT a.epochs,
                   ARRAY(SELECT r.epoch FROM {SCHEMA}.training_runs AS r
                         WHERE r.experiment_id = p_run AND r.epoch = ANY(a.epochs)) AS stored
            FROM (SELECT array_agg(DISTINCT s::int ORDER BY s::int) AS epochs
                  FROM unnest(p_step) AS s) AS a) AS x;
    IF v_epochs IS NULL OR v_held THEN
        RETURN false;
    END IF;
    v_new := ARRAY(SELECT n FROM unnest(v_epochs) AS n WHERE n <> ALL(v_stored) ORDER BY n);
    v_last := v_epochs[array_upper(v_epochs, 1)];
    v_tail := greatest(v_old_tail, v_last >> 4);

    -- every write in one statement (its parts see the tables as they were before it; none
    -- reads what another writes)
    WITH c AS (
        -- one value per (metric, step), the latest timestamp's (on a tie, the later one)
        SELECT DISTINCT ON (u.k, u.s) u.k, u.s::int AS epoch, u.v
        FROM unnest(p_key, p_step, p_timestamp, p_value) WITH ORDINALITY AS u(k, s, t, v, i)
        ORDER BY u.k, u.s, u.t DESC, u.i DESC
    ),
    -- MLflow's metric log, and each metric's latest (step, timestamp, value)
    logged AS (
        INSERT INTO {SCHEMA}.mlflow_metrics (experiment_id, key, step, timestamp, value)
        SELECT p_run, u.k, u.s, u.t, u.v
        FROM unnest(p_key, p_step, p_timestamp, p_value) AS u(k, s, t, v)
        ON CONFLICT DO NOTHING
    ),
    latest AS (
        INSERT INTO {SCHEMA}.mlflow_latest_metrics AS m
            (experiment_id, key, step, timestamp, value)
        SELECT DISTINCT ON (u.k) p_run, u.k, u.s, u.t, u.v
        FROM unnest(p_key, p_step, p_timestamp, p_value) WITH ORDINALITY AS u(k, s, t, v, i)
        ORDER BY u.k, u.s DESC, u.t DESC, u.v DESC, u.i
        ON CONFLICT (experiment_id, key) DO UPDATE SET
            step = excluded.step, timestamp = excluded.timestamp, value = excluded.value
        WHERE (excluded.step, excluded.timestamp) > (m.step, m.timestamp)
           OR (excluded.step = m.step AND excluded.timestamp = m.timestamp
               AND excluded.value != 'NaN'::float8
               AND (m.value = 'NaN'::float8 OR excluded.value > m.value))
    ),
    -- the request's values per epoch: its column metrics, and the others as jsonb
    n AS (
        SELECT c.epoch,
               {_BY_COLUMN},
               coalesce(jsonb_object_agg(c.k, {SCHEMA}.json_float(c.v))
                        FILTER (WHERE c.k NOT IN ({_NAMES})), '{{}}'::jsonb) AS metrics
        FROM c
        GROUP BY c.epoch
    ),
    -- the epochs: new ones inserted, logged ones given the new metrics (their others kept)
    runs AS (
        INSERT INTO {SCHEMA}.training_runs AS t
            (experiment_id, epoch, {", ".join(RUN_COLUMNS)}, metrics)
        SELECT p_run, n.epoch, {", ".join(f"n.{name}" for name in RUN_COLUMNS)}, n.metrics
        FROM n
        ON CONFLICT (experiment_id, epoch) DO UPDATE SET
            {", ".join(f"{name} = coalesce(excluded.{name}, t.{name})" for name in RUN_COLUMNS)},
            metrics = t.metrics || excluded.metrics,
            updated_at = now()
    ),
    -- the history summary: the request's values (each under its metric, at the time its
    -- epoch was first logged) and its new epochs (under '') in level-0 blocks; levels 0 and 4
    -- take them all, levels 1-3 those below the tail block after this call and, when the call
    -- moved the tail up, the old tail's level-0 rows as they were before it
    -- (tracking.repository.history)
    base AS (
        SELECT v.metric, v.epoch >> 4 AS block, count(*) AS n,
               min(v.value) AS min, max(v.value) AS max, max(v.epoch) AS last_epoch,
               {_LAST.format(value="v.value", epoch="v.epoch")} AS last_value,
               {_LAST.format(value="v.at", epoch="v.epoch")} AS last_at
        FROM (
            SELECT c.k AS metric, c.epoch, c.v AS value,
                   CASE WHEN c.epoch = ANY(v_stored)
                        THEN (SELECT r.created_at FROM {SCHEMA}.training_runs AS r
                              WHERE r.experiment_id = p_run AND r.epoch = c.epoch)
                        ELSE now() END AS at
            FROM c
            UNION ALL SELECT '', f.epoch, NULL, now() FROM unnest(v_new) AS f(epoch)
        ) AS v
        GROUP BY 1, 2
    ),
    history AS (
        INSERT INTO {SCHEMA}.history_blocks AS h
            (experiment_id, metric, level, block, n, min, max, last_epoch, last_value, last_at)
        SELECT p_run, b.metric, b.level, b.block >> (2 * b.level),
               sum(b.n), min(b.min), max(b.max), max(b.last_epoch),
               {_LAST.format(value="b.last_value", epoch="b.last_epoch")},
               {_LAST.format(value="b.last_at", epoch="b.last_epoch")}
        FROM (
            SELECT b.*, l.level FROM base AS b CROSS JOIN (VALUES (0), (4)) AS l(level)
            UNION ALL
            SELECT c.*, l.level FROM (
                SELECT b.* FROM base AS b WHERE b.block < v_tail
                UNION ALL
                SELECT h.metric, h.block, h.n, h.min, h.max, h.last_epoch, h.last_value,
                       h.last_at
                FROM {SCHEMA}.history_blocks AS h
                WHERE h.experiment_id = p_run AND h.level = 0 AND h.block = v_old_tail
                  AND v_old_tail < v_tail
            ) AS c
            CROSS JOIN generate_series(1, 3) AS l(level)
        ) AS b
        GROUP BY b.metric, b.level, 4
        ON CONFLICT (experiment_id, metric, level, block) DO UPDATE SET
            n = h.n + excluded.n,
            min = least(h.min, excluded.min),
            max = greatest(h.max, excluded.max),
            last_epoch = greatest(h.last_epoch, excluded.last_epoch),
            last_value = CASE WHEN excluded.last_epoch > h.last_epoch
                              THEN excluded.last_value ELSE h.last_value END,
            last_at = CASE WHEN excluded.last_epoch > h.last_epoch
                           THEN excluded.last_at ELSE h.last_at END
    ),
    -- the metrics of the request's highest epoch, with those it held before (column metrics
    -- first, as ``bookkeeping.metrics_of`` merges them); the best of the new values (the
    -- earliest of a tie), if better than the run's best before
    top AS (
        SELECT jsonb_strip_nulls(jsonb_build_object(
                   {_MERGED_COLUMNS}))
               || coalesce(r.metrics, '{{}}'::jsonb) || n.metrics AS metrics
        FROM n
        LEFT JOIN LATERAL (
            SELECT * FROM {SCHEMA}.training_runs AS t
            WHERE t.experiment_id = p_run AND t.epoch = n.epoch
        ) AS r ON true
        WHERE n.epoch = v_last
    ),
    best AS (
        SELECT c.epoch, c.v FROM c
        WHERE c.k = e.best_metric
          AND (e.best_value IS NULL OR CASE WHEN e.best_mode = 'max' THEN c.v > e.best_value
                                            ELSE c.v < e.best_value END)
        ORDER BY CASE WHEN e.best_mode = 'max' THEN -c.v ELSE c.v END, c.epoch
        LIMIT 1
    ),
    -- the run: totals, latest metrics, best epoch, last sign of life
    run AS (
        UPDATE {SCHEMA}.experiments AS x SET
            total_epochs = x.total_epochs + cardinality(v_new),
            last_epoch = CASE WHEN x.last_epoch IS NULL OR v_last >= x.last_epoch
                              THEN v_last ELSE x.last_epoch END,
            metrics = CASE WHEN x.last_epoch IS NULL OR v_last >= x.last_epoch
                           THEN x.metrics || top.metrics ELSE x.metrics END,
            best_epoch = coalesce((SELECT best.epoch FROM best), x.best_epoch),
            best_value = coalesce((SELECT best.v FROM best), x.best_value),
            last_seen_at = p_now,
            updated_at = p_now
        FROM top
        WHERE x.id = p_run
    )
    -- the run's pending experiment.epochs_logged (tracking.service.epoch_events.note)
    INSERT INTO {SCHEMA}.pending_epochs AS p (experiment_id, first_epoch, last_epoch,
        epochs_written, epochs_inserted, latest_metrics, first_logged_at, logged_at)
    SELECT p_run, v_epochs[1], v_last, cardinality(v_epochs), cardinality(v_new),
           top.metrics, p_now, p_now
    FROM top
    ON CONFLICT (experiment_id) DO UPDATE SET
        first_epoch = least(p.first_epoch, excluded.first_epoch),
        last_epoch = greatest(p.last_epoch, excluded.last_epoch),
        epochs_written = p.epochs_written + excluded.epochs_written,
        epochs_inserted = p.epochs_inserted + excluded.epochs_inserted,
        latest_metrics = CASE WHEN excluded.last_epoch >= p.last_epoch
                              THEN excluded.latest_metrics ELSE p.latest_metrics END,
        logged_at = excluded.logged_at;
    RETURN true;
END
$fn$
"""  # noqa: S608 (constants only; every value is a parameter of the function)


def _function_0018() -> str:
    """0018's function: 0017's, as 0018 rewrote it."""
    here = Path(__file__).parent

    def load(name: str) -> object:
        spec = importlib.util.spec_from_file_location(
            f"runyard_experiments_{name[:4]}", here / name
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    created: str = load("0017_mlflow_log_epochs.py").LOG_EPOCHS  # type: ignore[attr-defined]
    rewritten: str = load("0018_history_tail.py").log_epochs(created)  # type: ignore[attr-defined]
    return rewritten


def upgrade() -> None:
    op.execute(LOG_EPOCHS)


def downgrade() -> None:
    op.execute(_function_0018())
