"""Performance figures for HimHIS on PostgreSQL, each beside a ceiling measured in the same run.

    make bench                   (or: .venv/bin/python -m bench --help)

The API runs as a real uvicorn subprocess on a scratch database ``himhis_bench_*`` (dropped at the
end); load comes from several client processes. See ``bench/__main__.py`` for the phases.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Target:
    """An issue target with the published figures it was set against."""

    label: str
    value: float
    unit: str
    anchors: str


CRUD_PER_CORE = Target("mixed CRUD", 500, "req/s per core",
                       "HAPI FHIR, Aidbox ≈ 500 CRUD req/s per vCPU; Medplum ≈ 85")
INGEST_PER_CORE = Target("bundle ingest", 1000, "resources/s per core", "Blaze ≈ 520 bundle resources/s per core")
RSS_MB = Target("API peak RSS", 300, "MB (below)", "")
