"""session kinds: the one session of a user's HTTP Basic credentials checked by the gateway

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "auth"


def upgrade() -> None:
    op.add_column(
        "session_logs",
        sa.Column("kind", sa.String(20), nullable=False, server_default="login"),
        schema=SCHEMA,
    )
    op.create_check_constraint(
        "ck_session_logs_kind", "session_logs", "kind IN ('login','basic_auth')", schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_constraint("ck_session_logs_kind", "session_logs", type_="check", schema=SCHEMA)
    op.drop_column("session_logs", "kind", schema=SCHEMA)
