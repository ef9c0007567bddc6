"""gateway schema: outbox, inbox

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

from alembic import op

from runyard.shared.migrations import create_outbox_and_inbox, drop_outbox_and_inbox

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def upgrade() -> None:
    create_outbox_and_inbox(op.get_bind(), SCHEMA)


def downgrade() -> None:
    drop_outbox_and_inbox(op.get_bind(), SCHEMA)
