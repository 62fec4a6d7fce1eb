"""What the hospital-flow routes share: the page templates, authorisation by policy, audited units of work.

Every route with patient data takes the caller from ``identity.dependencies.get_principal`` (token or
session cookie), is allowed by ``identity.policy``, sees through ``identity.access.scope_for`` and runs in
``audit.requests.audited``, exactly as the FHIR API does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from audit import requests
from audit.service import AuditEntry, audit_read
from ehr.http import base_url
from ehr.scope import Scope
from himhis import i18n
from himhis.errors import ForbiddenError
from identity.access import scope_for
from identity.dependencies import get_principal
from identity.policy import policy
from identity.principal import Principal

HERE = Path(__file__).resolve().parent
_env = Environment(loader=ChoiceLoader([FileSystemLoader(HERE / "templates"),
                                        FileSystemLoader(HERE.parent / "himhis" / "templates")]),
                   autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)
i18n.install(_env)
templates = Jinja2Templates(env=_env)


def allow(interaction: str, res_type: str):
    """A dependency: the caller, if the policy lets their role do ``interaction`` on ``res_type``;
    a refusal is recorded in the audit log."""

    async def dependency(request: Request) -> Principal:
        principal = get_principal(request)
        try:
            policy().check(principal, interaction, res_type)
        except ForbiddenError as exc:
            code = "operation" if interaction.startswith("operation:") else \
                {"search": "search-type"}.get(interaction, interaction)
            entry = requests.entry(request, principal, code, resource_type=res_type,
                                   resource_id=request.path_params.get("patient_id"),
                                   query=f"{request.method} {request.url.path}")
            await run_in_threadpool(audit_read, request.app.state.db, entry.failed_with(exc))
            raise
        return principal

    return dependency


def can(principal: Principal, interaction: str, res_type: str) -> bool:
    return policy().allows(principal, interaction, res_type)


_env.globals["can"] = can  # the menu offers only what the role may do


def authorizer(principal: Principal) -> Callable[[str, str], None]:
    """``authorize(interaction, type)`` for services that touch several types."""
    return lambda interaction, res_type: policy().check(principal, interaction, res_type)


def entry(request: Request, principal: Principal, interaction: str, **kw: Any) -> AuditEntry:
    return requests.entry(request, principal, interaction, **kw)


def scope(session, principal: Principal, request: Request) -> Scope:
    return scope_for(session, principal, request)


def base(request: Request) -> str:
    return base_url(request)


async def audited(request: Request, fn, audit_entry: AuditEntry, *, write: bool, details=None):
    """``audit.requests.audited``: one audited unit of work, as the FHIR API runs them."""
    return await requests.audited(request, fn, audit_entry, write=write, details=details)
