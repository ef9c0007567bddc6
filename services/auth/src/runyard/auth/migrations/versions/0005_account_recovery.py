"""password reset, email verification, per-network client keys in the login history

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"


def _at(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column("users", _at("email_verified_at", nullable=True), schema=SCHEMA)

    op.add_column("login_history", sa.Column("client_key", sa.String(64)), schema=SCHEMA)
    # An IPv4 address stays as it is; an IPv6 address becomes its /64 (IPv4-mapped: the IPv4).
    op.execute(
        """
        UPDATE auth.login_history SET client_key = CASE
            WHEN family(ip_address::inet) = 4 THEN host(ip_address::inet)
            WHEN ip_address::inet <<= '::ffff:0:0/96'::inet
                THEN host(('0.0.0.0'::inet + (ip_address::inet - '::ffff:0.0.0.0'::inet)))
            ELSE network(set_masklen(ip_address::inet, 64))::text
        END
        WHERE ip_address IS NOT NULL
        """
    )
    op.drop_index(
        "ix_login_history_ip_address_created_at", table_name="login_history", schema=SCHEMA
    )
    op.create_index(
        "ix_login_history_client_key_created_at",
        "login_history",
        ["client_key", "created_at"],
        schema=SCHEMA,
    )

    op.create_table(
        "password_reset_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email_key", sa.String(64), nullable=False),
        sa.Column("email", sa.String(254)),
        sa.Column("client_key", sa.String(64)),
        sa.Column("ip_address", sa.String(45)),
        _at("created_at"),
        _at("processed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_password_reset_requests"),
        schema=SCHEMA,
    )
    for columns in (["email_key", "created_at"], ["client_key", "created_at"]):
        op.create_index(
            f"ix_password_reset_requests_{columns[0]}_created_at",
            "password_reset_requests",
            columns,
            schema=SCHEMA,
        )
    op.create_index(
        "ix_password_reset_requests_processed_at_created_at",
        "password_reset_requests",
        ["processed_at", "created_at"],
        schema=SCHEMA,
    )

    op.create_table(
        "password_reset_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        _at("used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_password_reset_tokens"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            [f"{SCHEMA}.users.id"],
            name="fk_password_reset_tokens_user_id_users",
            ondelete="CASCADE",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "uq_password_reset_tokens_token_hash",
        "password_reset_tokens",
        ["token_hash"],
        unique=True,
        schema=SCHEMA,
    )
    op.create_index(
        "ix_password_reset_tokens_user_id", "password_reset_tokens", ["user_id"], schema=SCHEMA
    )
    op.create_index(
        "ix_password_reset_tokens_expires_at",
        "password_reset_tokens",
        ["expires_at"],
        schema=SCHEMA,
    )

    op.create_table(
        "email_verifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("purpose", sa.String(10), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        _at("used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_email_verifications"),
        sa.CheckConstraint("purpose IN ('signup','change')", name="purpose"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            [f"{SCHEMA}.users.id"],
            name="fk_email_verifications_user_id_users",
            ondelete="CASCADE",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "uq_email_verifications_token_hash",
        "email_verifications",
        ["token_hash"],
        unique=True,
        schema=SCHEMA,
    )
    op.create_index(
        "ix_email_verifications_user_id_created_at",
        "email_verifications",
        ["user_id", "created_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_email_verifications_expires_at", "email_verifications", ["expires_at"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_table("email_verifications", schema=SCHEMA)
    op.drop_table("password_reset_tokens", schema=SCHEMA)
    op.drop_table("password_reset_requests", schema=SCHEMA)
    op.drop_index(
        "ix_login_history_client_key_created_at", table_name="login_history", schema=SCHEMA
    )
    op.create_index(
        "ix_login_history_ip_address_created_at",
        "login_history",
        ["ip_address", "created_at"],
        schema=SCHEMA,
    )
    op.drop_column("login_history", "client_key", schema=SCHEMA)
    op.drop_column("users", "email_verified_at", schema=SCHEMA)
