"""The same API with authorisation and audit switched off, for one purpose: measuring what they cost.

``uvicorn bench.unguarded:create_app --factory`` serves ``himhis.app.create_app()`` with every caller
taken to be one doctor-and-admin without checking the token, no policy check, no facility or
patient scope, and nothing written to the audit log. It lives in ``bench/``, which is not installed
and is never imported by the application; a production deployment cannot start it by configuration.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

BENCH_PRINCIPAL_ROLES = frozenset({"doctor", "admin"})


def create_app() -> FastAPI:
    import audit.service
    import ehr.routes
    from ehr.scope import Scope
    from himhis.app import create_app as real_app
    from identity import dependencies
    from identity.policy import Policy
    from identity.principal import Principal

    anyone = Principal(subject="bench-unguarded", username="bench", roles=BENCH_PRINCIPAL_ROLES, facility="IGMC")

    def principal(request=None) -> Principal:
        return anyone

    async def unaudited(request, fn, entry, *, write: bool, details=None):
        return await run_in_threadpool(request.app.state.db.run, fn, write=write)

    Policy.allows = lambda self, p, interaction, res_type: True  # type: ignore[method-assign]
    Policy.check = lambda self, p, interaction, res_type: None  # type: ignore[method-assign]
    ehr.routes.get_principal = principal
    ehr.routes.scope_for = lambda session, p, request=None: Scope()
    ehr.routes._audited = unaudited
    ehr.routes.record = lambda session, entry: 0
    audit.service.record_many = lambda session, entries: []
    app = real_app()
    app.dependency_overrides[dependencies.get_principal] = principal
    return app
