"""alert rules and their per-(rule, experiment) state

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=False),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column(
            "project_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.projects.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column(
            "experiment_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("filter", sa.Text(), nullable=True),
        sa.Column("cooldown_s", sa.Integer(), nullable=False),
        sa.Column("rearm", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _timestamp("armed_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint("owner_id", "name"),
        sa.CheckConstraint(
            "kind IN ('threshold', 'not_finite', 'plateau', 'divergence', 'gap', 'lifecycle')",
            name="kind",
        ),
        sa.CheckConstraint("scope IN ('all', 'project', 'filter', 'experiment')", name="scope"),
        sa.CheckConstraint("cooldown_s >= 0", name="cooldown_s_not_negative"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_alert_rules_owner_id_created_at_id",
        "alert_rules",
        ["owner_id", "created_at", "id"],
        schema=SCHEMA,
    )
    op.create_table(
        "alert_states",
        sa.Column(
            "rule_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.alert_rules.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "experiment_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("last_epoch", sa.Integer(), nullable=True),
        sa.Column("memory", postgresql.JSONB(), nullable=False),
        sa.Column("firing", sa.Boolean(), nullable=False),
        sa.Column("fired_count", sa.Integer(), nullable=False),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        _timestamp("updated_at"),
        schema=SCHEMA,
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "rule_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.alert_rules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "experiment_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("rule_name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("experiment_name", sa.String(255), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("values", postgresql.JSONB(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("status IN ('triggered', 'resolved')", name="status"),
        schema=SCHEMA,
    )
    for columns in (
        ["owner_id", "created_at", "id"],
        ["experiment_id", "created_at", "id"],
        ["rule_id", "created_at", "id"],
    ):
        op.create_index(f"ix_alerts_{'_'.join(columns)}", "alerts", columns, schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("alerts", schema=SCHEMA)
    op.drop_table("alert_states", schema=SCHEMA)
    op.drop_index("ix_alert_rules_owner_id_created_at_id", "alert_rules", schema=SCHEMA)
    op.drop_table("alert_rules", schema=SCHEMA)
