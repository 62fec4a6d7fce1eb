"""Migration 0008 gives resources stored before it their grouped composite rows, and its downgrade
removes them again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import text

from ehr.service import FhirStore
from himhis.db import Database
from himhis.migrate import alembic_config, upgrade

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
TABLES = ("idx_string", "idx_token", "idx_date", "idx_number", "idx_quantity", "idx_uri", "idx_reference")


def blood_pressure(systolic: float, diastolic: float) -> dict:
    def part(code: str, value: float) -> dict:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "system": UCUM, "code": "mm[Hg]", "unit": "mm[Hg]"}}

    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "component": [part("8480-6", systolic), part("8462-4", diastolic)]}


def matches(db: Database, value: str) -> set[str]:
    criteria = f"component-code-value-quantity={value}"
    return set(db.run(lambda s: FhirStore(s).search_ids("Observation", criteria), write=False))


def test_upgrade_indexes_components_of_resources_stored_before_it(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url)
    db = Database(url)
    try:
        high = db.run(lambda s: FhirStore(s).create(blood_pressure(150, 95)).stored.res_id)
        crossed = db.run(lambda s: FhirStore(s).create(blood_pressure(120, 150)).stored.res_id)
        wanted = f"{LOINC}|8480-6$gt140|{UCUM}|mm[Hg]"
        assert matches(db, wanted) == {high} and crossed

        command.downgrade(alembic_config(url), "0007")  # as a database from before 0008 was
        db.dispose()
        with db.engine.connect() as conn:
            assert all("grp" not in [c[1] for c in conn.execute(text(f"PRAGMA table_info({t})"))] for t in TABLES)
            assert conn.execute(text("SELECT count(*) FROM idx_token WHERE param LIKE 'component-code-%'")
                                ).scalar_one() == 0

        upgrade(url)
        db.dispose()
        assert matches(db, wanted) == {high}, "the crossed halves of the other reading do not match"
        assert matches(db, f"{LOINC}|8462-4$gt140|{UCUM}|mm[Hg]") == {crossed}
    finally:
        db.dispose()
