"""``himhis audit verify`` through Typer's runner, on both databases."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from audit.cli import app
from himhis.config import get_settings


@pytest.fixture
def audit_cli(db, monkeypatch):
    monkeypatch.setenv("HIMHIS_DATABASE_URL", db.engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args), env={"COLUMNS": "1000"})
    get_settings.cache_clear()


def test_verify_says_ok_with_the_count(audit_cli, chain):
    chain(7)
    result = audit_cli("verify")
    assert result.exit_code == 0, result.output
    assert "OK: 7 audit records, chain intact up to record 7." in result.output


def test_verify_names_every_problem_and_fails(audit_cli, chain, attack):
    chain(12)
    attack("UPDATE audit_log SET query = 'name=someone' WHERE seq = 3",
           "DELETE FROM audit_patient WHERE audit_pk IN (SELECT pk FROM audit_log WHERE seq IN (6, 7, 12))",
           "DELETE FROM audit_log WHERE seq IN (6, 7, 12)")
    result = audit_cli("verify", "--batch", "5")
    assert result.exit_code == 1
    lines = [line.strip() for line in result.output.splitlines()]
    assert lines == ["The audit log fails verification: 3 problem(s) in 9 records.",
                     "record 3 was edited: hash mismatch", "records 6–7 are missing",
                     "log truncated after 11; head says 12"]
