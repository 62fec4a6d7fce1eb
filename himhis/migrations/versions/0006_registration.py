"""registration: per-facility UHID sequences

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-25 02:35:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "uhid_sequence",
        sa.Column("facility", sa.String(length=32), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("facility", "year", name=op.f("pk_uhid_sequence")),
    )


def downgrade() -> None:
    op.drop_table("uhid_sequence")
