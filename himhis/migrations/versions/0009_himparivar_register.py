"""himparivar: the local copy of the family register, its imports and refused lines

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 07:37:35
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('himparivar_import',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('file_name', sa.String(length=400), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.Column('header', sa.Text(), nullable=True),
    sa.Column('bytes_done', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lines_done', sa.Integer(), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('started', sa.DateTime(), nullable=False),
    sa.Column('finished', sa.DateTime(), nullable=True),
    sa.Column('by', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himparivar_import')),
    sa.UniqueConstraint('sha256', name=op.f('uq_himparivar_import_sha256'))
    )
    op.create_table('himparivar_member',
    sa.Column('member_id', sa.String(length=20), nullable=False),
    sa.Column('family_id', sa.String(length=20), nullable=False),
    sa.Column('relation', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('name_devanagari', sa.String(length=200), nullable=True),
    sa.Column('gender', sa.String(length=8), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('birth_year', sa.SmallInteger(), nullable=True),
    sa.Column('birth_estimated', sa.Boolean(), nullable=False),
    sa.Column('relative_name', sa.String(length=200), nullable=True),
    sa.Column('village', sa.String(length=120), nullable=True),
    sa.Column('block', sa.String(length=120), nullable=True),
    sa.Column('tehsil', sa.String(length=120), nullable=True),
    sa.Column('district', sa.String(length=40), nullable=False),
    sa.Column('pin', sa.String(length=6), nullable=True),
    sa.Column('ration_card', sa.String(length=20), nullable=True),
    sa.Column('abha', sa.String(length=17), nullable=True),
    sa.Column('mobile', sa.String(length=10), nullable=True),
    sa.Column('himcare_card', sa.String(length=16), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('updated', sa.Date(), nullable=True),
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('source_line', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['himparivar_import.id'],
                            name=op.f('fk_himparivar_member_import_id_himparivar_import')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_himparivar_member'))
    )
    with op.batch_alter_table('himparivar_member', schema=None) as batch_op:
        batch_op.create_index('ix_himparivar_member_abha', ['abha'], unique=False)
        batch_op.create_index('ix_himparivar_member_block', ['district', 'birth_year', 'gender'], unique=False)
        batch_op.create_index('ix_himparivar_member_family', ['family_id'], unique=False)

    op.create_table('himparivar_refusal',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('line', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.String(length=40), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['himparivar_import.id'],
                            name=op.f('fk_himparivar_refusal_import_id_himparivar_import')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himparivar_refusal'))
    )
    with op.batch_alter_table('himparivar_refusal', schema=None) as batch_op:
        batch_op.create_index('ix_himparivar_refusal_import', ['import_id', 'line'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('himparivar_refusal', schema=None) as batch_op:
        batch_op.drop_index('ix_himparivar_refusal_import')

    op.drop_table('himparivar_refusal')
    with op.batch_alter_table('himparivar_member', schema=None) as batch_op:
        batch_op.drop_index('ix_himparivar_member_family')
        batch_op.drop_index('ix_himparivar_member_block')
        batch_op.drop_index('ix_himparivar_member_abha')

    op.drop_table('himparivar_member')
    op.drop_table('himparivar_import')
