"""search: composite components grouped by the element they come from

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 07:40:00

Adds ``grp`` to every search index table and re-extracts the search values of the stored resources
whose types have composites over repeating elements (Observation.component, useContext, ...), so
``component-code-value-quantity`` matches both halves within one component.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("idx_string", "idx_token", "idx_date", "idx_number", "idx_quantity", "idx_uri", "idx_reference")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("grp", sa.Integer(), nullable=True))
    _index_grouped_components()


def _index_grouped_components() -> None:
    """Add the grouped component rows of resources already stored (nothing else of their index changes)."""
    import orjson

    from ehr.repository import index_row
    from ehr.search.extract import extract, grouped_composites

    conn = op.get_bind()
    stored = conn.execute(sa.text("SELECT DISTINCT res_type FROM resource WHERE deleted = :f"),
                          {"f": False}).scalars().all()
    for res_type in sorted(t for t in stored if grouped_composites(t)):
        after = 0
        while True:
            rows = conn.execute(sa.text(
                "SELECT pk, content FROM resource WHERE res_type = :t AND pk > :a AND deleted = :f "
                "ORDER BY pk LIMIT 1000"), {"t": res_type, "a": after, "f": False}).all()
            if not rows:
                break
            after = rows[-1].pk
            by_table: dict[str, list[dict]] = {}
            for row in rows:
                for value in extract(orjson.loads(row.content)):
                    if value.group is not None:
                        name, values = index_row(value)
                        by_table.setdefault(name, []).append(
                            values | {"resource_pk": row.pk, "res_type": res_type})
            for name, values in by_table.items():
                table = sa.table(name, *[sa.column(key) for key in values[0]])
                conn.execute(sa.insert(table), values)


def downgrade() -> None:
    for table in TABLES:
        op.execute(sa.text(f"DELETE FROM {table} WHERE grp IS NOT NULL"))
        with op.batch_alter_table(table) as batch:
            batch.drop_column("grp")
