"""The HimParivar benchmark runs end to end at a tiny size and reports what it measured."""

from __future__ import annotations

import pytest

from bench import himparivar
from bench.server import postgres_problem
from tests.conftest import IN_CI


def test_one_linkage_run_reports_its_figures():
    figures = himparivar.link_once(1500, seed=7)
    assert figures["register"] == 1500 and figures["records"] == 200
    assert figures["seconds"] > 0 and 0.9 <= figures["precision"] <= 1 and 0.8 <= figures["recall"] <= 1


def test_the_import_phase_loads_every_member_into_postgresql():
    if problem := postgres_problem():
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {problem}")
        pytest.skip(problem)
    figures = himparivar.import_rate(600)
    assert figures["members"] == 600 and figures["rate"] > 0 and figures["parse_rate"] > 0


def test_the_whole_report(capsys):
    if problem := postgres_problem():
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {problem}")
        pytest.skip(problem)
    assert himparivar.main(["--sizes", "1000,1500", "--import-members", "300"]) == 0
    out = capsys.readouterr().out
    assert "Register import on PostgreSQL: 300 members" in out and "EXTRAPOLATED" in out
    assert "     1,000      133" in out and "     1,500      200" in out
