"""hl7 interfaces: message inbox and hold queue

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 02:35:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("sending_application", sa.String(length=180), nullable=False),
        sa.Column("sending_facility", sa.String(length=180), nullable=False),
        sa.Column("control_id", sa.String(length=199), nullable=False),
        sa.Column("message_type", sa.String(length=20), nullable=False),
        sa.Column("version", sa.String(length=10), nullable=False),
        sa.Column("received", sa.DateTime(), nullable=False),
        sa.Column("peer", sa.String(length=64), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("processed", sa.DateTime(), nullable=True),
        sa.Column("resource_ids", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_inbox")),
        sa.UniqueConstraint("sending_application", "sending_facility", "control_id",
                            name=op.f("uq_hl7_inbox_sending_application_sending_facility_control_id")),
    )
    with op.batch_alter_table("hl7_inbox", schema=None) as batch_op:
        batch_op.create_index("ix_hl7_inbox_state_received", ["state", "received"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hl7_inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_hl7_inbox_state_received")
    op.drop_table("hl7_inbox")
