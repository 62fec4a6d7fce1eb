"""reference index: extended statistics on (target_type, target_id, param)

The three columns are strongly dependent (an Organization target is referenced by ``organization`` or
``service-provider``, a Patient by ``subject``/``patient``), so PostgreSQL's per-column estimates
multiply to about one row where a facility has thousands of patients and encounters. With that
estimate the facility scope (``ehr.scope.at_facility``) was planned as a hashed subplan that reads the
whole facility's compartment for every search (405 ms for 70 Observations at 100 k, growing with the
record); with the statistics it stays a few index lookups per candidate row (4.5 ms).
https://www.postgresql.org/docs/current/planner-stats.html#PLANNER-STATS-EXTENDED

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 07:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE STATISTICS st_idx_reference_target (dependencies, mcv) "
                   "ON target_type, target_id, param FROM idx_reference")
        op.execute("ANALYZE idx_reference")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_idx_reference_target")
