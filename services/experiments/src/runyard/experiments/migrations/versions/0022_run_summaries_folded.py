"""``mlflow_log_epochs`` leaves the run's summaries to the epoch-events worker

A training loop's ``log-batch`` wrote, besides MLflow's rows and the epoch rows, the run's
history summary (two block rows per metric) and the run's row (totals, latest metrics, best
epoch, last sign of life): about a third of PostgreSQL's CPU per request under load (ADR 0020,
session 18). This version writes MLflow's metric log and latest metrics, the epoch rows and the
run's ``pending_epochs`` row, as before, and adds to the pending row what the summaries owe
(``fold_*``): the level-0 blocks written (and the tail block before the request), the new
epochs' count, the highest epoch's metrics merged as the run's row would merge them, the best
candidate and the last time seen. ``tracking.service.epoch_events.fold`` writes them into the
run's row and rebuilds those history blocks exactly, once per run and window (the worker), or
before any other write of the run (the Python path, a lifecycle change) and before a read that
must see them. Nothing acknowledged is lost: the pending row is written in the request's
transaction.

The request compares its values with the run's best and last epoch as they will be once folded
(the pending row's candidate and highest merged epoch over the run's): the fold then gives the
rows the per-request writes gave (``||`` is associative; a candidate is kept only if strictly
better, the earliest epoch on a tie).

Revision ID: 0022
Revises: 0021
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"

COLUMNS = """
    ADD COLUMN fold_blocks int[],
    ADD COLUMN fold_inserted int NOT NULL DEFAULT 0,
    ADD COLUMN fold_last_epoch int,
    ADD COLUMN fold_metrics jsonb,
    ADD COLUMN fold_best_epoch int,
    ADD COLUMN fold_best_value double precision,
    ADD COLUMN fold_seen_at timestamptz
"""


def _load(name: str) -> object:
    here = Path(__file__).parent
    spec = importlib.util.spec_from_file_location(f"runyard_experiments_{name[:4]}", here / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cut(sql: str, first: str, next_part: str, instead: str = "") -> str:
    start = sql.index(first)
    end = sql.index(next_part, start)
    return sql[:start] + instead + sql[end:]


def _replace(sql: str, old: str, new: str) -> str:
    assert sql.count(old) == 1, old
    return sql.replace(old, new)


def log_epochs(previous: str) -> str:
    """0019's function without the history summary and the run row's update, with the fold's
    share written to the pending row."""
    sql = _replace(
        previous, "    e record;\n", "    e record;\n    f record;\n    v_merge boolean;\n"
    )
    sql = _replace(sql, "    v_tail int;\n", "")
    sql = _replace(
        sql,
        "    v_new := ARRAY(",
        f"""    -- what the summaries owe already (the run's lock orders every writer of the row)
    SELECT fold_last_epoch, fold_best_value INTO f
      FROM {SCHEMA}.pending_epochs WHERE experiment_id = p_run;
    v_new := ARRAY(""",  # noqa: S608 (constants only)
    )
    sql = _replace(
        sql,
        "    v_tail := greatest(v_old_tail, v_last >> 4);\n",
        "    v_merge := greatest(e.last_epoch, f.fold_last_epoch) IS NULL\n"
        "               OR v_last >= greatest(e.last_epoch, f.fold_last_epoch);\n",
    )
    sql = _cut(
        sql,
        "    -- the history summary: the request's values",
        "    -- the metrics of the request's highest",
    )
    sql = _replace(
        sql,
        "          AND (e.best_value IS NULL OR CASE WHEN e.best_mode = 'max' "
        "THEN c.v > e.best_value\n"
        "                                            ELSE c.v < e.best_value END)",
        "          AND (coalesce(f.fold_best_value, e.best_value) IS NULL\n"
        "               OR CASE WHEN e.best_mode = 'max'\n"
        "                       THEN c.v > coalesce(f.fold_best_value, e.best_value)\n"
        "                       ELSE c.v < coalesce(f.fold_best_value, e.best_value) END)",
    )
    sql = _cut(
        sql,
        "    -- the run: totals, latest metrics",
        "    -- the run's pending experiment.epochs_logged",
    )
    # the best CTE is the statement's last now
    sql = _replace(
        sql,
        "        LIMIT 1\n    ),\n    -- the run's pending",
        "        LIMIT 1\n    )\n    -- the run's pending",
    )
    sql = _replace(
        sql,
        "        epochs_written, epochs_inserted, latest_metrics, first_logged_at, logged_at)\n"
        "    SELECT p_run, v_epochs[1], v_last, cardinality(v_epochs), cardinality(v_new),\n"
        "           top.metrics, p_now, p_now\n"
        "    FROM top\n",
        "        epochs_written, epochs_inserted, latest_metrics, first_logged_at, logged_at,\n"
        "        fold_blocks, fold_inserted, fold_last_epoch, fold_metrics, fold_best_epoch,\n"
        "        fold_best_value, fold_seen_at)\n"
        "    SELECT p_run, v_epochs[1], v_last, cardinality(v_epochs), cardinality(v_new),\n"
        "           top.metrics, p_now, p_now,\n"
        "           ARRAY(SELECT n >> 4 FROM unnest(v_epochs) AS n\n"
        "                 UNION SELECT v_old_tail WHERE v_old_tail IS NOT NULL ORDER BY 1),\n"
        "           cardinality(v_new),\n"
        "           CASE WHEN v_merge THEN v_last END, CASE WHEN v_merge THEN top.metrics END,\n"
        "           (SELECT best.epoch FROM best), (SELECT best.v FROM best), p_now\n"
        "    FROM top\n",
    )
    sql = _replace(
        sql,
        "        logged_at = excluded.logged_at;\n",
        "        logged_at = excluded.logged_at,\n"
        "        fold_blocks = CASE WHEN excluded.fold_blocks <@ p.fold_blocks\n"
        "                           THEN p.fold_blocks\n"
        "                           ELSE ARRAY(SELECT DISTINCT b FROM unnest(\n"
        "                               coalesce(p.fold_blocks, '{}') || excluded.fold_blocks)\n"
        "                               AS b\n"
        "                               ORDER BY 1) END,\n"
        "        fold_inserted = p.fold_inserted + excluded.fold_inserted,\n"
        "        fold_last_epoch = coalesce(excluded.fold_last_epoch, p.fold_last_epoch),\n"
        "        fold_metrics = CASE WHEN excluded.fold_last_epoch IS NULL THEN p.fold_metrics\n"
        "                            ELSE coalesce(p.fold_metrics, '{}') || excluded.fold_metrics\n"
        "                       END,\n"
        "        fold_best_epoch = CASE WHEN excluded.fold_best_value IS NULL\n"
        "                               THEN p.fold_best_epoch\n"
        "                               ELSE excluded.fold_best_epoch END,\n"
        "        fold_best_value = coalesce(excluded.fold_best_value, p.fold_best_value),\n"
        "        fold_seen_at = excluded.fold_seen_at;\n",
    )
    return sql


def _function_0019() -> str:
    return str(_load("0019_mlflow_log_metrics_at_logged_epochs.py").LOG_EPOCHS)  # type: ignore[attr-defined]


LOG_EPOCHS = log_epochs(_function_0019())


def upgrade() -> None:
    op.execute(f"ALTER TABLE {SCHEMA}.pending_epochs {COLUMNS}")
    op.execute(LOG_EPOCHS)


def downgrade() -> None:
    """0019's function back and the fold's columns dropped: what a pending row owes then is
    lost, so downgrade with the writers stopped and the worker's last window written."""
    op.execute(_function_0019())
    op.execute(
        f"ALTER TABLE {SCHEMA}.pending_epochs "
        + ", ".join(f"DROP COLUMN {line.split()[2]}" for line in COLUMNS.strip().splitlines())
    )
