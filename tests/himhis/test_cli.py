"""The ``himhis`` command line through Typer's runner, against the real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select
from typer.testing import CliRunner, Result

from audit.service import A
from ehr import importer
from ehr.search.engine import search
from ehr.service import FhirStore
from himhis.cli import app
from himhis.config import get_settings
from himhis.db import Database
from himhis.migrate import alembic_config
from himhis.models import ImportProgress
from tests.conftest import free_port, require_corpora

Invoke = Callable[..., Result]
BASE = "http://127.0.0.1:8000/fhir"
HEART_RATE = {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]}


@pytest.fixture
def himhis(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """``himhis("import", path)`` runs the command line with HIMHIS_DATABASE_URL naming the test database."""
    monkeypatch.setenv("HIMHIS_DATABASE_URL", db.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("HIMHIS_ENVIRONMENT", "development")
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str | Path) -> Result:
        # A wide console, so rich does not wrap the messages the tests read.
        return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})

    yield invoke
    get_settings.cache_clear()


def counts(db: Database, *types: str) -> dict[str, int]:
    """Live resources of each type, by the store's own search (``_summary=count``)."""
    def work(session) -> dict[str, int]:
        return {t: search(session, t, [("_summary", "count")], base=BASE)["total"] for t in types}

    return db.run(work, write=False)


def versions(db: Database) -> int:
    """Every version the store holds (system history total): a line loaded twice shows up here."""
    return db.run(lambda s: FhirStore(s).history(count=1)[1], write=False)


def progress_rows(db: Database) -> list[tuple[str, int, bool]]:
    rows = db.run(lambda s: s.execute(select(ImportProgress.source, ImportProgress.done,
                                             ImportProgress.completed)).all(), write=False)
    return [tuple(r) for r in rows]


def patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1984-03-02",
            "name": [{"family": "Thakur", "given": [f"Meena {pid}"]}],
            "identifier": [{"system": "https://himhis.hp.gov.in/fhir/sid/uhid", "value": pid}]}


def observation(oid: str, pid: str, value: int) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": HEART_RATE,
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-01-05T09:30:00+05:30",
            "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org",
                              "code": "/min"}}


def ndjson_lines(patients: int = 200, observations: int = 1000) -> list[str]:
    """Patients first, then Observations pointing at them by relative reference: 1,200 lines, three chunks."""
    pids = [f"pt-{i:04d}" for i in range(patients)]
    lines = [json.dumps(patient(p)) for p in pids]
    lines += [json.dumps(observation(f"obs-{i:05d}", pids[i % patients], 60 + i % 40)) for i in range(observations)]
    return lines


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def transaction(*pids: str) -> dict:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": f"urn:uuid:{p}", "resource": patient(p),
                       "request": {"method": "PUT", "url": f"Patient/{p}"}} for p in pids]}


# -- db upgrade ------------------------------------------------------------------------------------


def _revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_db_upgrade_is_idempotent(himhis: Invoke, db: Database) -> None:
    head = ScriptDirectory.from_config(alembic_config(str(db.engine.url))).get_current_head()
    for _ in range(2):
        result = himhis("db", "upgrade")
        assert result.exit_code == 0, result.output
        assert "is at revision head" in result.output
        assert _revision(db) == head


@pytest.mark.parametrize("backend", ["sqlite"])  # on PostgreSQL the db fixture itself is built this way
def test_db_upgrade_builds_a_fresh_database(himhis: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'fresh.db'}"
    monkeypatch.setenv("HIMHIS_DATABASE_URL", url)
    get_settings.cache_clear()
    assert himhis("db", "upgrade").exit_code == 0
    fresh = Database(url)
    try:
        assert _revision(fresh) is not None
        assert himhis("db", "upgrade").exit_code == 0
        assert counts(fresh, "Patient") == {"Patient": 0}
    finally:
        fresh.dispose()


# -- seed-demo -------------------------------------------------------------------------------------


def test_seed_demo_if_empty_seeds_once(himhis: Invoke, db: Database) -> None:
    first = himhis("seed-demo", "--if-empty", "--patients", "5")
    assert first.exit_code == 0, first.output
    assert "Seeded" in first.output
    seeded = counts(db, "Patient", "Organization")
    assert seeded["Patient"] >= 5 and seeded["Organization"] >= 1
    history = versions(db)
    audited = db.run(lambda s: s.execute(select(A.c.interaction, A.c.actor_username, A.c.query, A.c.patient_ids))
                     .all(), write=False)
    assert audited and {r[:3] for r in audited} == {("transaction", getpass.getuser(), "seed-demo --patients 5")}
    assert {p for r in audited if r.patient_ids for p in r.patient_ids.split(",")} >= {"demo-patient-1"}

    second = himhis("seed-demo", "--if-empty", "--patients", "5")
    assert second.exit_code == 0, second.output
    assert "nothing to seed" in second.output
    assert counts(db, "Patient", "Organization") == seeded
    assert versions(db) == history


# -- import: NDJSON --------------------------------------------------------------------------------


def test_import_ndjson_loads_every_line(himhis: Invoke, db: Database, tmp_path: Path) -> None:
    lines = ndjson_lines()
    assert len(lines) > 2 * importer.CHUNK
    path = write_lines(tmp_path / "export.ndjson", lines)

    result = himhis("import", path)
    assert result.exit_code == 0, result.output
    assert "Imported 1200 resources from 1 files." in result.output
    assert counts(db, "Patient", "Observation") == {"Patient": 200, "Observation": 1000}
    assert versions(db) == 1200
    assert progress_rows(db) == [(str(path.resolve()), 1200, True)]

    again = himhis("import", path)
    assert again.exit_code == 0, again.output
    assert "(1 already imported)" in again.output
    assert versions(db) == 1200


def test_import_resumes_after_an_interruption(himhis: Invoke, db: Database, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies while reading line 700: chunk one (lines 1–500) is committed with its mark."""
    path = write_lines(tmp_path / "export.ndjson", ndjson_lines())
    real_lines = importer._lines

    def dies_at_line_700(*args, **kw):
        for item in real_lines(*args, **kw):  # (line number, ...) for each line
            if item[0] == 700:
                raise RuntimeError("simulated crash at line 700")
            yield item

    with monkeypatch.context() as m:
        m.setattr(importer, "_lines", dies_at_line_700)
        crashed = himhis("import", path)
    assert crashed.exit_code != 0
    assert isinstance(crashed.exception, RuntimeError)
    assert counts(db, "Patient", "Observation") == {"Patient": 200, "Observation": 300}
    assert progress_rows(db) == [(str(path.resolve()), importer.CHUNK, False)]

    resumed = himhis("import", path)
    assert resumed.exit_code == 0, resumed.output
    assert "Imported 700 resources from 1 files." in resumed.output
    assert counts(db, "Patient", "Observation") == {"Patient": 200, "Observation": 1000}
    assert versions(db) == 1200  # nothing loaded twice: every resource is at version 1
    assert progress_rows(db) == [(str(path.resolve()), 1200, True)]


def test_import_stops_at_an_invalid_line_with_a_clear_message(himhis: Invoke, db: Database,
                                                               tmp_path: Path) -> None:
    lines = ndjson_lines()
    lines[699] = lines[699][:-1]  # line 700 loses its closing brace
    path = write_lines(tmp_path / "export.ndjson", lines)

    result = himhis("import", path)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "export.ndjson line 700: not valid JSON" in result.output
    assert counts(db, "Patient", "Observation") == {"Patient": 200, "Observation": 300}

    again = himhis("import", path)  # the same broken file: resumes after line 500 and stops again
    assert again.exit_code == 1
    assert "line 700: not valid JSON" in again.output
    assert versions(db) == importer.CHUNK


def test_import_after_fixing_the_invalid_line_loads_nothing_twice(himhis: Invoke, db: Database,
                                                                  tmp_path: Path) -> None:
    lines = ndjson_lines()
    broken = [*lines[:699], lines[699][:-1], *lines[700:]]
    path = write_lines(tmp_path / "export.ndjson", broken)
    assert himhis("import", path).exit_code == 1
    assert versions(db) == importer.CHUNK

    write_lines(path, lines)  # the operator fixes line 700 and runs the import again
    fixed = himhis("import", path)
    assert fixed.exit_code == 0, fixed.output
    assert counts(db, "Patient", "Observation") == {"Patient": 200, "Observation": 1000}
    assert versions(db) == 1200, "lines 1-500 were loaded a second time"


# -- import: Bundles -------------------------------------------------------------------------------


def test_import_bundle_twice_skips_it(himhis: Invoke, db: Database, tmp_path: Path) -> None:
    path = tmp_path / "ward.json"
    path.write_text(json.dumps(transaction("bed-1", "bed-2", "bed-3")))

    first = himhis("import", path)
    assert first.exit_code == 0, first.output
    assert "Imported 3 resources from 1 files." in first.output
    second = himhis("import", path)
    assert second.exit_code == 0, second.output
    assert "Imported 0 resources from 0 files (1 already imported)." in second.output
    assert counts(db, "Patient") == {"Patient": 3}
    assert versions(db) == 3


def test_import_directory_in_name_order(himhis: Invoke, db: Database, tmp_path: Path) -> None:
    """A directory stands for its .json and .ndjson files; other files are left alone."""
    (tmp_path / "a.json").write_text(json.dumps(transaction("dir-1")))
    write_lines(tmp_path / "b.ndjson", [json.dumps(observation("dir-obs", "dir-1", 72))])
    (tmp_path / "notes.txt").write_text("not FHIR")

    result = himhis("import", tmp_path)
    assert result.exit_code == 0, result.output
    assert "Imported 2 resources from 2 files." in result.output
    assert counts(db, "Patient", "Observation") == {"Patient": 1, "Observation": 1}


def test_import_missing_file(himhis: Invoke, tmp_path: Path) -> None:
    result = himhis("import", tmp_path / "absent.json")
    assert result.exit_code != 0


def test_import_names_a_bundle_file_that_is_not_json(himhis: Invoke, db: Database, tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(transaction("ok-1")))
    (tmp_path / "b.json").write_text("{not json")

    result = himhis("import", tmp_path)
    assert result.exit_code == 1
    assert "b.json" in result.output
    assert counts(db, "Patient") == {"Patient": 1}


def _batch(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "batch", "entry": list(entries)}


def _put(resource: dict) -> dict:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def test_a_batch_with_a_failed_entry_fails_again_on_the_next_run(himhis: Invoke, db: Database,
                                                                 tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(_batch(_put(patient("b-1")), _put(patient("b-2") | {"birthDate": "not-a-date"}))))
    first = himhis("import", path)
    assert first.exit_code == 1
    assert "1 of 2 batch entries failed" in first.output
    assert counts(db, "Patient") == {"Patient": 1}

    second = himhis("import", path)
    assert "already imported" not in second.output
    assert second.exit_code == 1
    assert "1 of 2 batch entries failed" in second.output


def test_a_batch_entry_with_an_unresolvable_reference_fails_the_command(himhis: Invoke, db: Database,
                                                                        tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(_batch(_put(patient("r-1")), _put(observation("r-obs", "nobody", 70)))))
    result = himhis("import", path)
    assert counts(db, "Patient", "Observation") == {"Patient": 1, "Observation": 0}
    assert "already imported" not in result.output
    assert result.exit_code == 1


# -- import: Synthea -------------------------------------------------------------------------------


def _expected_counts(files: list[Path]) -> Counter:
    """What the files should leave: conditional creates in the batch files deduplicate by their criteria."""
    expected: Counter = Counter()
    for f in files:
        data = json.loads(f.read_text())
        if data["type"] == "batch":
            distinct = {(e["resource"]["resourceType"], e["request"].get("ifNoneExist") or e["fullUrl"])
                        for e in data["entry"]}
            expected.update(rtype for rtype, _ in distinct)
        else:
            expected.update(e["resource"]["resourceType"] for e in data["entry"])
    return expected


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])  # ~15 s on SQLite; the batch files alone take ~50 s on PostgreSQL
def test_import_synthea_patient_before_the_batches_it_needs(himhis: Invoke, db: Database) -> None:
    """The patient transaction comes first and fails on its conditional references; it is retried at the end."""
    corpora = require_corpora() / "synthea-r4"
    batches = [next(corpora.glob(f"{name}*.json")) for name in ("hospitalInformation", "practitionerInformation")]
    one_patient = min((f for f in corpora.glob("*.json") if f not in batches), key=lambda f: f.stat().st_size)

    result = himhis("import", one_patient, *batches)
    assert result.exit_code == 0, result.output
    total = sum(len(json.loads(f.read_text())["entry"]) for f in [one_patient, *batches])
    assert f"Imported {total} resources from 3 files." in result.output

    expected = _expected_counts([one_patient, *batches])
    assert counts(db, *expected) == dict(expected)
    assert {(Path(src).name, done) for src, done, completed in progress_rows(db) if completed} == {
        (f.name, len(json.loads(f.read_text())["entry"])) for f in [one_patient, *batches]}

    # The patient's encounters now point at the organisations that hospitalInformation stored.
    def service_providers(session) -> set[str]:
        bundle = orjson.loads(orjson.dumps(search(session, "Encounter", [("_count", "1000")], base=BASE)))
        refs = {e["resource"]["serviceProvider"]["reference"] for e in bundle["entry"]}
        for ref in refs:
            FhirStore(session).read(*ref.split("/"))
        return refs

    providers = db.run(service_providers, write=False)
    assert providers and all(ref.startswith("Organization/") for ref in providers)

    # Named first, the patient landed last: its first attempt failed and the retry came after the batches.
    def newest(session, rtype: str):
        return FhirStore(session).history(rtype, count=1)[0][0].last_updated

    assert db.run(lambda s: newest(s, "Patient") > newest(s, "PractitionerRole") > newest(s, "Location"),
                  write=False)


# -- serve -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_serve_with_workers_answers_over_http(db: Database, tmp_path: Path) -> None:
    """``himhis serve --workers 2`` as the systemd unit runs it, in a process of its own."""
    port = free_port()
    env = {**os.environ, "HIMHIS_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
           "HIMHIS_VAR_DIR": str(tmp_path), "HIMHIS_ENVIRONMENT": "development"}
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "himhis.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "2"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["resourceType"] == "CapabilityStatement"
        assert httpx.get(f"http://127.0.0.1:{port}/fhir/Patient").status_code == 401
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert f"http://127.0.0.1:{port}" in output and "doctor.igmc" in output


# -- himparivar ------------------------------------------------------------------------------------


def test_himparivar_generate_and_import(himhis: Invoke, db: Database, tmp_path: Path) -> None:
    extract = tmp_path / "register.csv"
    result = himhis("himparivar", "generate", extract, "--members", "700", "--seed", "4")
    assert result.exit_code == 0 and "Wrote 700 synthetic members" in result.output
    with extract.open("a", encoding="utf-8") as f:
        f.write("HP-SML-00000001,HPF-SML-0000001,self,Test Person,,Q,1990-01-01,,,,,,Shimla,,,,,,active,\n")
    result = himhis("himparivar", "import", extract, "--batch", "200")
    assert result.exit_code == 0, result.output
    assert "700 members loaded, 1 of 701 lines refused" in result.output
    assert "line 702: gender 'Q' is not M, F or O" in result.output
    again = himhis("himparivar", "import", extract)
    assert again.exit_code == 0 and "was imported already" in again.output
    missing = tmp_path / "nocolumns.csv"
    missing.write_text("member_id,name\nHP-SML-00000002,X Y\n", encoding="utf-8")
    result = himhis("himparivar", "import", missing)
    assert result.exit_code == 1 and "no column family_id, relation, gender, district" in result.output
