"""Loading the generated demo data into the store, one transaction per generated Bundle."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from audit.service import AuditEntry, audit_bundle_hook
from ehr import bundle as bundles
from himhis.db import Database
from himhis.demo.generator import generate
from himhis.models import Resource


def has_patients(session: Session) -> bool:
    return bool(session.execute(select(exists().where(Resource.res_type == "Patient"))).scalar())


def seed_database(
    db: Database, *, seed: int = 20261124, patients: int = 300, progress: Callable[[int], None] | None = None,
    audit_as: AuditEntry | None = None,
) -> int:
    """Write every generated Bundle as a transaction; seeding twice changes nothing but versions.

    With ``audit_as`` (who is seeding), each transaction is recorded in the audit log as that entry.
    """
    total = 0
    audit = audit_bundle_hook(audit_as) if audit_as else None
    for bundle in generate(seed=seed, patients=patients):
        bundles.process(bundles.db_runner(db), bundle, audit=audit)
        n = len(bundle.get("entry") or [])
        total += n
        if progress:
            progress(n)
    return total
