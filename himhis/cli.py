"""The ``himhis`` command line: serve, db upgrade, seed-demo, import."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from audit.cli import app as audit_app
from audit.service import command_line_entry
from himhis.config import get_settings

app = typer.Typer(help="HimHIS hospital information system and FHIR record store.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
search_app = typer.Typer(help="FHIR search indexes.", no_args_is_help=True)
app.add_typer(search_app, name="search")
app.add_typer(audit_app, name="audit")
himparivar_app = typer.Typer(help="HimParivar, the state family register.", no_args_is_help=True)
app.add_typer(himparivar_app, name="himparivar")
console = Console()


def _database():
    from himhis.db import Database

    return Database(get_settings().database_url)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Alembic revision to upgrade to")) -> None:
    """Apply the schema migrations (Alembic) to HIMHIS_DATABASE_URL."""
    from himhis.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    console.print(f"Database at {_safe_url()} is at revision {revision}.")


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)


@app.command("seed-demo")
def seed_demo(
    if_empty: bool = typer.Option(False, "--if-empty", help="Only seed when the record holds no patients"),
    patients: int = typer.Option(300, help="How many synthetic patients"),
    seed: int = typer.Option(20261124, help="Random seed (the same seed gives the same data)"),
) -> None:
    """Load the demo facilities, wards, beds, staff and synthetic patients."""
    from himhis.demo.seed import has_patients, seed_database

    db = _database()
    if if_empty and db.run(has_patients, write=False):
        console.print("Demo data already present; nothing to seed.")
        return
    with _progress() as progress:
        task = progress.add_task("Seeding demo data", total=None)
        n = seed_database(db, seed=seed, patients=patients, progress=lambda k: progress.advance(task, k),
                          audit_as=command_line_entry("transaction", query=f"seed-demo --patients {patients}"))
    console.print(f"Seeded {n} demo resources.")


@app.command("import")
def import_(files: list[Path] = typer.Argument(..., help="FHIR Bundle (.json) or NDJSON (.ndjson) files or "
                                                       "directories of them")) -> None:
    """Import FHIR data; an interrupted import resumes where it stopped."""
    from ehr.importer import count_entries, expand, import_files

    paths = expand(files)
    total = sum(count_entries(p) for p in paths)
    db = _database()
    with _progress() as progress:
        task = progress.add_task("Importing", total=total)
        report = import_files(db, paths, base_url=get_settings().base_url + "/fhir",
                              progress=lambda k: progress.advance(task, k),
                              audit_as=command_line_entry("transaction"))
    skipped = sum(1 for f in report.files if f.skipped)
    console.print(f"Imported {report.resources} resources from {len(report.files) - skipped} files"
                  f"{f' ({skipped} already imported)' if skipped else ''}.")
    for f in report.failed:
        console.print(f"[red]{f.path}: {f.error}[/red]")
    if report.failed:
        raise typer.Exit(1)


@himparivar_app.command("import")
def himparivar_import(file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                 help="Register extract: .csv, or .jsonl (JSON lines)"),
                      batch: int = typer.Option(5000, min=1, help="Lines per committed batch")) -> None:
    """Load a register extract into the local register; an interrupted import resumes where it stopped."""
    from himhis.errors import HimHISError
    from integrations.himparivar.importer import import_extract

    db = _database()
    try:
        with _bytes_progress() as progress:
            task = progress.add_task(f"Importing {file.name}", total=file.stat().st_size)
            report = import_extract(db, file, batch=batch, progress=lambda k: progress.advance(task, k))
    except HimHISError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from exc
    if report.already_imported:
        console.print(f"{file.name} was imported already (import {report.import_id}): "
                      f"{report.accepted} members, {report.refused} lines refused.")
    else:
        resumed = f", resumed after line {report.resumed_at_line}" if report.resumed_at_line else ""
        console.print(f"Import {report.import_id}{resumed}: {report.accepted} members loaded, "
                      f"{report.refused} of {report.lines} lines refused.")
    for line, reason in report.refusals:
        console.print(f"  line {line}: {reason}")
    if report.refused > len(report.refusals):
        console.print(f"  … and {report.refused - len(report.refusals)} more (table himparivar_refusal, "
                      f"import_id {report.import_id})")


@himparivar_app.command("generate")
def himparivar_generate(out: Path = typer.Argument(..., dir_okay=False, help="Extract to write: .csv or .jsonl"),
                        members: int = typer.Option(10_000, min=1, help="How many members"),
                        seed: int = typer.Option(7, help="Random seed (the same seed writes the same register)")
                        ) -> None:
    """Write a synthetic register extract of fictional families (for tests, demos and benchmarks)."""
    from integrations.himparivar.synthetic import write

    n = write(out, members, seed=seed)
    console.print(f"Wrote {n} synthetic members to {out}.")


@himparivar_app.command("train-model")
def himparivar_train_model(members: int = typer.Option(5000, min=100), records: int = typer.Option(800, min=100),
                           seed: int = typer.Option(5)) -> None:
    """Fit the linkage model on a labelled synthetic set and store it (used for runs too small to fit on)."""
    from datetime import date

    import orjson

    from integrations.himparivar import linkage
    from integrations.himparivar.records import member_row
    from integrations.himparivar.synthetic import Register, programme_records

    today = date(2026, 11, 24)
    raw = list(Register(members, seed=seed, today=today))
    model = linkage.train([member_row(r, today=today) for r in raw],
                          programme_records(raw, records, seed=seed + 1, today=today), today=today)
    linkage.MODEL.write_bytes(orjson.dumps(model, option=orjson.OPT_INDENT_2) + b"\n")
    console.print(f"Stored the linkage model fitted on {members} members and {records} records in {linkage.MODEL}.")


@himparivar_app.command("link-patients")
def himparivar_link_patients() -> None:
    """Link patients without a HimParivar member ID to the loaded register; unsure pairs go to review."""
    from datetime import date

    from audit.service import record
    from integrations.himparivar.links import link_patients

    def work(session):
        run = link_patients(session, today=date.today(), base=get_settings().base_url + "/fhir")
        record(session, command_line_entry("update", resource_type="Patient", patient_ids=run.patient_ids or [],
                                           query=f"himparivar link-patients: {run.linked} linked, "
                                                 f"{run.proposed} proposed for review"))
        return run

    run = _database().run(work)
    console.print(f"{run.patients} patients without a HimParivar member ID: {run.linked} linked, "
                  f"{run.proposed} proposed for review (/himparivar/review), {run.unlinked} not found.")


@search_app.command("reindex")
def search_reindex(types: list[str] = typer.Argument(..., help="Resource types to reindex, e.g. Observation")) -> None:
    """Rebuild the search index of resource types (after a search parameter definition changed).

    Runs in short batches while the server keeps serving; restart the servers first so that new
    writes are indexed with the new definitions too.
    """
    from ehr.search import reindex as rx
    from ehr.validation import is_resource_type

    for t in types:
        if not is_resource_type(t):
            console.print(f"[red]'{t}' is not a FHIR R4 resource type[/red]")
            raise typer.Exit(2)
    db = _database()
    for t in types:
        with _progress() as progress:
            task = progress.add_task(f"Reindexing {t}", total=rx.count(db, t))
            n = rx.reindex(db, t, progress=lambda k, task=task: progress.advance(task, k))
        console.print(f"Reindexed {n} {t} resources.")


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Address to listen on"),
          port: int = typer.Option(8000, help="Port to listen on"),
          workers: int = typer.Option(1, help="Worker processes")) -> None:
    """Serve the API and pages."""
    import uvicorn

    settings = get_settings()
    url = f"http://{host}:{port}"
    console.print(f"HimHIS ({settings.environment}) on [bold]{url}[/bold] — FHIR base {url}/fhir")
    if not settings.is_production:
        from identity.devidp.realm import DevRealm

        console.print("Demo logins, all with password 'demo':")
        for user in DevRealm.load().demo_logins():
            where = f", {user.facility}" if user.facility else ""
            who = f", Patient/{user.patient}" if user.patient else ""
            roles = ", ".join(r for r in user.roles if not r.startswith("default-roles"))
            console.print(f"  {user.username:<14} {roles}{where}{who}")
        console.print(f"Lab gateway client: lab-gateway / {settings.lab_client_secret} (client credentials)")
        console.print(f"Tokens: POST {settings.oidc_issuer}/protocol/openid-connect/token")
    uvicorn.run("himhis.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info")


@app.command()
def mllp(host: str = typer.Option(None, help="Address to listen on (default HIMHIS_MLLP_HOST, 127.0.0.1)"),
         port: int = typer.Option(None, help="Port to listen on (default HIMHIS_MLLP_PORT, 2575)")) -> None:
    """Receive HL7 v2 lab results over MLLP: store, acknowledge, and process them."""
    from integrations.hl7.mllp import serve

    settings = get_settings()
    where = f"{host or settings.mllp_host}:{settings.mllp_port if port is None else port}"
    mode = "in-process" if settings.tasks_in_process else f"Celery workers on {settings.broker_url.split('@')[-1]}"
    console.print(f"HimHIS MLLP listener on [bold]{where}[/bold]; processing {mode}")
    serve(settings, host=host, port=port)


def _bytes_progress() -> Progress:
    from rich.progress import DownloadColumn, TransferSpeedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console)


if __name__ == "__main__":
    app()
