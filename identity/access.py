"""What a caller may see of the record: the one place that turns a Principal into a store Scope.

Used by every module that reads or writes patient data (the FHIR API, the hospital flows), so scope
is decided once: a patient sees their own compartment, facility staff their facility's patients
(widened by break-glass), a laboratory system the orders addressed to it, other roles the policy alone.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request

from ehr.scope import Scope
from himhis.errors import ForbiddenError
from identity import breakglass
from identity.principal import Principal


def scope_for(session: Session, principal: Principal, request: Request | None = None) -> Scope:
    """What the caller may see: a patient their own compartment; facility staff their facility's
    patients, widened by any break-glass grant in force; a laboratory system the orders addressed to
    it; other roles are limited by policy alone."""
    if principal.has_role("patient"):
        if not principal.patient_id:
            raise ForbiddenError("This patient login is not linked to a patient record")
        return Scope(patient_id=principal.patient_id)
    if principal.has_role(*breakglass.ROLES):
        grants = breakglass.active(session, principal)
        reason = "; ".join(g.reason for g in grants) or None
        if request is not None:
            request.state.break_glass = reason
        if any(g.patient_id is None for g in grants):
            return Scope(reason=reason)
        if not principal.facility:
            raise ForbiddenError("This staff login has no facility; ask an administrator to set it, or use "
                                 "break-glass access with a reason")
        return Scope.of_facility(session, principal.facility, also=tuple(g.patient_id for g in grants), reason=reason)
    if principal.has_role("lab-system"):
        if not principal.client_id:
            raise ForbiddenError("This laboratory token names no client; it cannot be matched to its orders")
        return Scope(laboratory=principal.client_id)
    return Scope()
