"""history_blocks: levels 1-3 leave out the experiment's tail block

Levels 1-3 of the history summary (blocks of 64, 256 and 1,024 epochs) no longer hold the runs
of an experiment's tail block, the level-0 block of its highest epoch; they take that block's
level-0 rows when the experiment logs an epoch past it. Level 0 and level 4 hold every run, as
before. A training loop's next epoch then writes two summary rows per metric (levels 0 and 4)
instead of five. Reads add the tail's level-0 row where a block of levels 1-3 covers it
(``tracking.repository.history``).

The upgrade computes again, for every experiment, the blocks of levels 1-3 that cover its tail
(from the level below, level 1 without the tail), and replaces ``mlflow_log_epochs`` (0017) by
the same function with the summary written this way; the downgrade puts the tail back into
those blocks and restores 0017's function.

Revision ID: 0018
Revises: 0017
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"
LEVEL_SHIFT = 2
TAILLESS = (1, 2, 3)
TOP = 4
_LAST = "(array_agg({value} ORDER BY {epoch} DESC))[1]"


def _blocks_over_the_tail(level: int, *, without_tail: bool) -> str:
    """Each experiment's block of ``level`` that covers its tail, computed again from the
    level below (level 1: without the tail block when ``without_tail``); a metric left with
    no runs there loses its row."""
    parent = f"(t.tail >> {LEVEL_SHIFT * level})"
    leave_out = "AND (h.level > 0 OR h.block < t.tail)" if without_tail else ""
    return f"""
    WITH tails AS (
        SELECT experiment_id, max(epoch) >> 4 AS tail FROM {SCHEMA}.training_runs GROUP BY 1
    ),
    fresh AS (
        SELECT h.experiment_id, h.metric, {parent} AS block, sum(h.n)::int AS n,
               min(h.min) AS min, max(h.max) AS max, max(h.last_epoch) AS last_epoch,
               {_LAST.format(value="h.last_value", epoch="h.last_epoch")} AS last_value,
               {_LAST.format(value="h.last_at", epoch="h.last_epoch")} AS last_at
        FROM tails AS t
        JOIN {SCHEMA}.history_blocks AS h
          ON h.experiment_id = t.experiment_id AND h.level = {level - 1}
         AND h.block BETWEEN {parent} << {LEVEL_SHIFT} AND ({parent} << {LEVEL_SHIFT}) + 3
         {leave_out}
        GROUP BY h.experiment_id, h.metric, {parent}
    ),
    gone AS (
        DELETE FROM {SCHEMA}.history_blocks AS h USING tails AS t
        WHERE h.experiment_id = t.experiment_id AND h.level = {level}
          AND h.block = {parent}
          AND NOT EXISTS (SELECT FROM fresh AS f
                          WHERE f.experiment_id = h.experiment_id AND f.metric = h.metric)
    )
    INSERT INTO {SCHEMA}.history_blocks
        (experiment_id, metric, level, block, n, min, max, last_epoch, last_value, last_at)
    SELECT experiment_id, metric, {level}, block, n, min, max, last_epoch, last_value, last_at
    FROM fresh
    ON CONFLICT (experiment_id, metric, level, block) DO UPDATE SET
        n = excluded.n, min = excluded.min, max = excluded.max,
        last_epoch = excluded.last_epoch, last_value = excluded.last_value,
        last_at = excluded.last_at
    """  # noqa: S608 (constants only)


def _revision_0017() -> ModuleType:
    path = Path(__file__).with_name("0017_mlflow_log_epochs.py")
    spec = importlib.util.spec_from_file_location("runyard_experiments_0017", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: 0017's summary write (every level from the new epochs), and what replaces it: levels 0 and 4
#: from the new epochs; levels 1-3 from the new epochs below the tail block after this call and,
#: when the call moved the tail up, the old tail's level-0 rows as they were before it
_HISTORY_0017 = """        FROM base AS b
        CROSS JOIN generate_series(0, 4) AS l(level)
        GROUP BY b.metric, l.level, 4"""
_HISTORY = f"""        FROM (
            SELECT b.*, l.level FROM base AS b CROSS JOIN (VALUES (0), ({TOP})) AS l(level)
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
            CROSS JOIN generate_series({TAILLESS[0]}, {TAILLESS[-1]}) AS l(level)
        ) AS b
        GROUP BY b.metric, b.level, 4"""  # noqa: S608 (constants only)
#: the history's levels: each row's own (0017's came from the series)
_LEVEL_0017 = "SELECT p_run, b.metric, l.level, b.block >> (2 * l.level),"
_LEVEL = "SELECT p_run, b.metric, b.level, b.block >> (2 * b.level),"
#: the run's highest epoch before the call, read with the check that none is stored yet
_DECLARE_0017 = "    v_last int;\n"
_DECLARE = "    v_last int;\n    v_old_tail int;\n    v_tail int;\n"
_CHECK_0017 = """      INTO v_epochs, v_logged
      FROM (SELECT array_agg(DISTINCT s::int ORDER BY s::int) AS epochs"""
_CHECK = f"""           , (SELECT max(r.epoch) >> 4 FROM {SCHEMA}.training_runs AS r
              WHERE r.experiment_id = p_run)
      INTO v_epochs, v_logged, v_old_tail
      FROM (SELECT array_agg(DISTINCT s::int ORDER BY s::int) AS epochs"""  # noqa: S608
_LAST_0017 = "    v_last := v_epochs[array_upper(v_epochs, 1)];\n"
_TAIL = _LAST_0017 + "    v_tail := greatest(v_old_tail, v_last >> 4);\n"


def log_epochs(function_0017: str) -> str:
    """0017's ``mlflow_log_epochs`` with the summary written as above (each replaced part
    checked to be there once)."""
    function = function_0017.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    for old, new in (
        (_HISTORY_0017, _HISTORY),
        (_LEVEL_0017, _LEVEL),
        (_DECLARE_0017, _DECLARE),
        (_CHECK_0017, _CHECK),
        (_LAST_0017, _TAIL),
    ):
        assert function.count(old) == 1, old
        function = function.replace(old, new)
    return function


def upgrade() -> None:
    for level in TAILLESS:
        op.execute(_blocks_over_the_tail(level, without_tail=True))
    op.execute(log_epochs(_revision_0017().LOG_EPOCHS))


def downgrade() -> None:
    op.execute(_revision_0017().LOG_EPOCHS.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    for level in TAILLESS:
        op.execute(_blocks_over_the_tail(level, without_tail=False))
