"""himparivar: links of patients to register members, proposed, decided and rejected

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 07:48:07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('himparivar_link',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('subject', sa.String(length=100), nullable=False),
    sa.Column('member_id', sa.String(length=20), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('probability', sa.Double(), nullable=False),
    sa.Column('match_weight', sa.Double(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himparivar_link')),
    sa.UniqueConstraint('subject', 'member_id', name=op.f('uq_himparivar_link_subject_member_id'))
    )
    with op.batch_alter_table('himparivar_link', schema=None) as batch_op:
        batch_op.create_index('ix_himparivar_link_state', ['state', 'created'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('himparivar_link', schema=None) as batch_op:
        batch_op.drop_index('ix_himparivar_link_state')

    op.drop_table('himparivar_link')
