"""MLflow ``log-batch`` of new epochs to a running run as one SQL statement: ``mlflow_log_epochs``

The function does, in one statement (its own transaction), what the service's Python path does
for the common case of a training loop: the metric log and each metric's latest value, the new
epoch rows, the history summary's blocks, the run's totals, latest metrics and best epoch, its
last sign of life, and the pending ``experiment.epochs_logged`` row. It writes nothing and
returns false when the case is not that one (the run is not the caller's, not running, stalled
or deleted, or one of the epochs is stored already): the service then takes the Python path,
which handles every case. ``tests/mlflow/test_sql_log_path.py`` checks that both paths leave the
same rows.

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"

#: the metrics a training run has columns for (``tracking.repository.runs.RUN_COLUMNS``)
RUN_COLUMNS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")
_NAMES = ", ".join(f"'{c}'" for c in RUN_COLUMNS)

#: a float8 as the JSON number Python's ``json.dumps`` writes for it: an integral value below
#: 1e16 keeps its ``.0`` (so it reads back as a float, not an int), any other its shortest form
JSON_FLOAT = f"""
CREATE FUNCTION {SCHEMA}.json_float(v double precision) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN v = trunc(v) AND abs(v) < 1e16 THEN to_jsonb(round(v::numeric, 1))
              ELSE to_jsonb(v) END
$$
"""

#: one value per (metric, step), the latest timestamp's (on a tie, the later in the request)
_CHOSEN = """
    SELECT DISTINCT ON (u.k, u.s) u.k, u.s::int AS epoch, u.v
    FROM unnest(p_key, p_step, p_timestamp, p_value) WITH ORDINALITY AS u(k, s, t, v, i)
    ORDER BY u.k, u.s, u.t DESC, u.i DESC
"""

_LAST = "(array_agg({value} ORDER BY {epoch} DESC))[1]"

LOG_EPOCHS = f"""
CREATE FUNCTION {SCHEMA}.mlflow_log_epochs(
    p_run uuid, p_owner uuid, p_key text[], p_value double precision[], p_timestamp bigint[],
    p_step bigint[], p_now timestamptz
) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    e record;
    v_epochs int[];
    v_logged boolean;
    v_last int;
BEGIN
    SELECT status, owner_id, deleted_at, stalled_at, last_epoch, best_metric, best_mode,
           best_value
      INTO e FROM {SCHEMA}.experiments WHERE id = p_run FOR UPDATE;
    IF NOT FOUND OR e.status <> 'running' OR e.stalled_at IS NOT NULL
       OR e.deleted_at IS NOT NULL OR (p_owner IS NOT NULL AND e.owner_id <> p_owner) THEN
        RETURN false;
    END IF;
    -- under the run's lock: whether one of the epochs is stored already
    SELECT x.epochs, EXISTS (
               SELECT FROM {SCHEMA}.training_runs AS r
               WHERE r.experiment_id = p_run AND r.epoch = ANY(x.epochs))
      INTO v_epochs, v_logged
      FROM (SELECT array_agg(DISTINCT s::int ORDER BY s::int) AS epochs
            FROM unnest(p_step) AS s) AS x;
    IF v_epochs IS NULL OR v_logged THEN
        RETURN false;
    END IF;
    v_last := v_epochs[array_upper(v_epochs, 1)];

    -- every write in one statement (its parts see the tables as they were before it; none
    -- reads what another writes)
    WITH c AS ({_CHOSEN}),
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
    -- the new epochs
    runs AS (
        INSERT INTO {SCHEMA}.training_runs
            (experiment_id, epoch, {", ".join(RUN_COLUMNS)}, metrics)
        SELECT p_run, c.epoch,
               {", ".join(f"max(c.v) FILTER (WHERE c.k = '{name}')" for name in RUN_COLUMNS)},
               coalesce(jsonb_object_agg(c.k, {SCHEMA}.json_float(c.v))
                        FILTER (WHERE c.k NOT IN ({_NAMES})), '{{}}'::jsonb)
        FROM c
        GROUP BY c.epoch
    ),
    -- the history summary: the new epochs' level-0 blocks (every epoch under '', each value
    -- under its metric), and each level above from those (tracking.repository.history)
    base AS (
        SELECT v.metric, v.epoch >> 4 AS block, count(*) AS n,
               min(v.value) AS min, max(v.value) AS max, max(v.epoch) AS last_epoch,
               {_LAST.format(value="v.value", epoch="v.epoch")} AS last_value,
               now() AS last_at
        FROM (
            SELECT c.k AS metric, c.epoch, c.v AS value FROM c
            UNION ALL SELECT '', n.epoch, NULL FROM unnest(v_epochs) AS n(epoch)
        ) AS v
        GROUP BY 1, 2
    ),
    history AS (
        INSERT INTO {SCHEMA}.history_blocks AS h
            (experiment_id, metric, level, block, n, min, max, last_epoch, last_value, last_at)
        SELECT p_run, b.metric, l.level, b.block >> (2 * l.level),
               sum(b.n), min(b.min), max(b.max), max(b.last_epoch),
               {_LAST.format(value="b.last_value", epoch="b.last_epoch")},
               {_LAST.format(value="b.last_at", epoch="b.last_epoch")}
        FROM base AS b
        CROSS JOIN generate_series(0, 4) AS l(level)
        GROUP BY b.metric, l.level, 4
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
    -- the metrics of the highest epoch; the best of the new values (the earliest of a tie),
    -- if better than the run's best before
    top AS (
        SELECT jsonb_object_agg(c.k, {SCHEMA}.json_float(c.v)) AS metrics
        FROM c WHERE c.epoch = v_last
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
            total_epochs = x.total_epochs + cardinality(v_epochs),
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
    SELECT p_run, v_epochs[1], v_last, cardinality(v_epochs), cardinality(v_epochs),
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


def upgrade() -> None:
    op.execute(JSON_FLOAT)
    op.execute(LOG_EPOCHS)


def downgrade() -> None:
    op.execute(
        f"DROP FUNCTION {SCHEMA}.mlflow_log_epochs(uuid, uuid, text[], double precision[], "
        "bigint[], bigint[], timestamptz)"
    )
    op.execute(f"DROP FUNCTION {SCHEMA}.json_float(double precision)")
