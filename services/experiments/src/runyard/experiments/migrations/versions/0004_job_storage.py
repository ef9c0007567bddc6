"""job storage: the bytes of signal files each dataset job holds (for the per-user quota)

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"
TABLES = ("dataset_generations", "dataset_imports")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table,
            sa.Column("bytes_stored", sa.BigInteger(), server_default="0", nullable=False),
            schema=SCHEMA,
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "bytes_stored", schema=SCHEMA)
