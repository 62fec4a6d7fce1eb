"""Break-glass: a staff member's explicit, time-limited request to see patients beyond their facility.

It needs a stated reason, lasts at most ``MAX_MINUTES``, may be limited to one patient, and every
access made under it is audited with the reason (purpose of use ETREAT) and listed for the auditor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from ehr.repository import utcnow
from himhis.errors import ForbiddenError, InvalidError
from himhis.models.access import BreakGlass
from identity.principal import Principal

BG = BreakGlass.__table__
MIN_REASON = 10
MAX_MINUTES = 240
DEFAULT_MINUTES = 30
ROLES = ("doctor", "nurse")  # those whose view is limited to their facility


@dataclass(frozen=True, slots=True)
class Grant:
    reason: str
    patient_id: str | None
    expires: datetime


def request(session: Session, principal: Principal, *, reason: str, patient_id: str | None = None,
            minutes: int = DEFAULT_MINUTES) -> Grant:
    """Open a grant for the caller; the caller's unit of work commits it (and audits it)."""
    if not principal.has_role(*ROLES):
        raise ForbiddenError("Only clinical staff can use break-glass access")
    reason = " ".join((reason or "").split())
    if len(reason) < MIN_REASON:
        raise InvalidError(f"State the reason for emergency access (at least {MIN_REASON} characters)",
                           code="required", expression=["reason"])
    if not 1 <= minutes <= MAX_MINUTES:
        raise InvalidError(f"Break-glass lasts between 1 and {MAX_MINUTES} minutes", expression=["minutes"])
    now = utcnow()
    grant = Grant(reason, patient_id or None, now + timedelta(minutes=minutes))
    session.execute(insert(BG).values(subject=principal.subject, username=principal.username,
                                      facility=principal.facility, patient_id=grant.patient_id,
                                      reason=reason, started=now, expires=grant.expires))
    return grant


_ACTIVE = (select(BG.c.reason, BG.c.patient_id, BG.c.expires)
           .where(BG.c.subject == bindparam("subject"), BG.c.expires > bindparam("now"))
           .order_by(BG.c.expires.desc()))


def active(session: Session, principal: Principal) -> list[Grant]:
    """The caller's grants that have not expired."""
    rows = session.execute(_ACTIVE, {"subject": principal.subject, "now": utcnow()}).all()
    return [Grant(r.reason, r.patient_id, r.expires) for r in rows]


def for_review(session: Session, *, since: datetime | None = None) -> list[dict]:
    """Every grant, newest first, for the auditor's review."""
    stmt = select(BG).order_by(BG.c.started.desc())
    if since is not None:
        stmt = stmt.where(BG.c.started >= since)
    return [dict(r._mapping) for r in session.execute(stmt)]
