"""Rebuilding a type's search index restores search without touching other types or versions."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from ehr.search import reindex as rx
from himhis.models import Resource, StringIndex, TokenIndex


def _index_rows(db, res_type: str) -> int:
    return db.run(lambda s: s.execute(select(func.count()).select_from(TokenIndex).where(
        TokenIndex.res_type == res_type)).scalar_one(), write=False)


def test_reindex_restores_lost_index_rows(fhir, db):
    for i in range(7):
        fhir.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female",
                                         "name": [{"family": f"Kanwar{i}"}]})
    fhir.post("/fhir/Organization", json={"resourceType": "Organization", "name": "IGMC", "active": True})
    deleted = fhir.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}).json()
    fhir.delete(f"/fhir/Patient/{deleted['id']}")
    before = _index_rows(db, "Patient")
    org_rows = _index_rows(db, "Organization")

    def wipe(session):  # as if the definitions had changed and the old values were wrong
        for table in (TokenIndex.__table__, StringIndex.__table__):
            session.execute(delete(table).where(table.c.res_type == "Patient"))
    db.run(wipe)
    assert fhir.get("/fhir/Patient?gender=female&_summary=count").json()["total"] == 0

    seen = []
    assert rx.reindex(db, "Patient", batch=3, progress=seen.append) == 7
    assert seen == [3, 3, 1]
    assert _index_rows(db, "Patient") == before
    assert _index_rows(db, "Organization") == org_rows
    assert fhir.get("/fhir/Patient?gender=female&_summary=count").json()["total"] == 7
    assert fhir.get("/fhir/Patient?name=kanwar3").json()["entry"][0]["resource"]["name"][0]["family"] == "Kanwar3"
    versions = db.run(lambda s: s.execute(select(func.max(Resource.version_id))).scalar_one(), write=False)
    assert versions == 2  # reindexing writes no versions


def test_reindex_command(fhir, db, settings, monkeypatch):
    from himhis.cli import app
    from himhis.config import get_settings

    fhir.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"})
    monkeypatch.setenv("HIMHIS_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["search", "reindex", "Patient"])
        assert result.exit_code == 0, result.output
        assert "Reindexed 1 Patient" in result.output
        bad = CliRunner().invoke(app, ["search", "reindex", "Spaceship"])
        assert bad.exit_code == 2 and "not a FHIR R4 resource type" in bad.output
    finally:
        get_settings.cache_clear()
