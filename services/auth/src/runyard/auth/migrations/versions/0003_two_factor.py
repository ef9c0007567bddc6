"""two-factor authentication: last used TOTP step, backup codes

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"


def _timestamp(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.add_column("users", sa.Column("totp_last_used_step", sa.BigInteger()), schema=SCHEMA)
    op.create_table(
        "backup_codes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(255), nullable=False),
        sa.Column("is_used", sa.Boolean(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("ip_address", sa.String(45)),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_backup_codes"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            [f"{SCHEMA}.users.id"],
            name="fk_backup_codes_user_id_users",
            ondelete="CASCADE",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_backup_codes_user_unused", "backup_codes", ["user_id", "is_used"], schema=SCHEMA
    )
    op.create_index(
        "uq_backup_codes_code_hash", "backup_codes", ["code_hash"], unique=True, schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_table("backup_codes", schema=SCHEMA)
    op.drop_column("users", "totp_last_used_step", schema=SCHEMA)
