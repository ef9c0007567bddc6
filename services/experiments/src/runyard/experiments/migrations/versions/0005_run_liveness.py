"""run liveness: experiments.last_seen_at, stalled_at and stale_after_s

Running experiments start with ``last_seen_at = now()``: a full silence limit from the upgrade
on, so that none is marked stalled only because it ran before heartbeats existed.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def upgrade() -> None:
    op.add_column(
        "experiments", sa.Column("last_seen_at", sa.DateTime(timezone=True)), schema=SCHEMA
    )
    op.add_column("experiments", sa.Column("stalled_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    op.add_column("experiments", sa.Column("stale_after_s", sa.Integer()), schema=SCHEMA)
    op.create_check_constraint(
        "stalled_only_running",
        "experiments",
        "stalled_at IS NULL OR status = 'running'",
        schema=SCHEMA,
    )
    op.create_check_constraint(
        "stale_after_s_positive", "experiments", "stale_after_s > 0", schema=SCHEMA
    )
    op.execute(
        f"UPDATE {SCHEMA}.experiments SET last_seen_at = now() WHERE status = 'running'"  # noqa: S608
    )


def downgrade() -> None:
    op.drop_constraint("ck_experiments_stale_after_s_positive", "experiments", schema=SCHEMA)
    op.drop_constraint("ck_experiments_stalled_only_running", "experiments", schema=SCHEMA)
    for column in ("stale_after_s", "stalled_at", "last_seen_at"):
        op.drop_column("experiments", column, schema=SCHEMA)
