"""sessions with rotating refresh tokens, lockout state, login history additions

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"


def _timestamp(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("last_failed_login_at", sa.DateTime(timezone=True)), schema=SCHEMA
    )
    op.add_column("login_history", sa.Column("location", sa.String(255)), schema=SCHEMA)
    op.add_column("login_history", sa.Column("session_id", sa.Uuid()), schema=SCHEMA)
    op.create_index(
        "ix_login_history_ip_address_created_at",
        "login_history",
        ["ip_address", "created_at"],
        schema=SCHEMA,
    )
    op.create_table(
        "unknown_login_failures",
        sa.Column("login_key", sa.String(254), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True)),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("login_key", name="pk_unknown_login_failures"),
        schema=SCHEMA,
    )
    op.create_table(
        "session_logs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("session_token", sa.String(64), nullable=False),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip_address", sa.String(45)),
        sa.Column("user_agent", sa.String(512)),
        sa.Column("device_type", sa.String(20), nullable=False),
        sa.Column("browser", sa.String(100)),
        sa.Column("os", sa.String(100)),
        sa.Column("location", sa.String(255)),
        sa.Column("last_active", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("logged_out_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_reason", sa.String(50)),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_session_logs"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            [f"{SCHEMA}.users.id"],
            name="fk_session_logs_user_id_users",
            ondelete="CASCADE",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_session_logs_user_id_created_at",
        "session_logs",
        ["user_id", "created_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "uq_session_logs_session_token",
        "session_logs",
        ["session_token"],
        unique=True,
        schema=SCHEMA,
    )
    op.create_table(
        "rotated_refresh_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_rotated_refresh_tokens"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            [f"{SCHEMA}.session_logs.id"],
            name="fk_rotated_refresh_tokens_session_id_session_logs",
            ondelete="CASCADE",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_rotated_refresh_tokens_expires_at",
        "rotated_refresh_tokens",
        ["expires_at"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("rotated_refresh_tokens", schema=SCHEMA)
    op.drop_table("session_logs", schema=SCHEMA)
    op.drop_table("unknown_login_failures", schema=SCHEMA)
    op.drop_index(
        "ix_login_history_ip_address_created_at", table_name="login_history", schema=SCHEMA
    )
    op.drop_column("login_history", "session_id", schema=SCHEMA)
    op.drop_column("login_history", "location", schema=SCHEMA)
    op.drop_column("users", "last_failed_login_at", schema=SCHEMA)
