"""``himhis audit …``: check the audit log's hash chain."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(help="The audit log of access to patient data.", no_args_is_help=True)
console = Console()


@app.callback()
def main() -> None:
    """The audit log of access to patient data."""


@app.command("verify")
def verify_command(batch: int = typer.Option(5000, min=1, help="Records read per query")) -> None:
    """Check the hash chain; name every edited, deleted, moved or truncated record (exit 1 if any)."""
    from audit.verify import verify
    from himhis.config import get_settings
    from himhis.db import Database

    db = Database(get_settings().database_url)
    try:
        report = db.run(lambda s: verify(s, batch=batch), write=False)
    finally:
        db.dispose()
    if report.ok:
        console.print(f"OK: {report.checked} audit records, chain intact up to record {report.last_seq}.")
        return
    console.print(f"[red]The audit log fails verification: {len(report.problems)} problem(s) in "
                  f"{report.checked} records.[/red]")
    for problem in report.problems:
        console.print(f"  {problem.message}", markup=False, highlight=False)
    raise typer.Exit(1)
