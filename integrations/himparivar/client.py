"""A client for the HimParivar register's API, as written down in ``data/openapi.json``.

Answers are checked like extract lines (``records.member_row``), so a member from the API and one
from an extract look the same to the rest of HimHIS. Used only when ``HIMHIS_HIMPARIVAR_URL`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

from integrations.himparivar.records import RowError, member_row


class RegisterUnavailable(Exception):
    """The register could not be asked, or answered something other than the contract."""


@dataclass(frozen=True, slots=True)
class HimParivarClient:
    base_url: str
    token: str = ""
    timeout: float = 5.0

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            r = httpx.get(self.base_url.rstrip("/") + path, params=params, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise RegisterUnavailable(f"the HimParivar register did not answer ({type(exc).__name__})") from exc
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise RegisterUnavailable(f"the HimParivar register answered HTTP {r.status_code}")
        try:
            body = r.json()
        except ValueError as exc:
            raise RegisterUnavailable("the HimParivar register's answer was not JSON") from exc
        if not isinstance(body, dict):
            raise RegisterUnavailable("the HimParivar register's answer was not a JSON object")
        return body

    def _member(self, data: Any, today: date) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise RegisterUnavailable("the HimParivar register sent a member that is not a JSON object")
        try:
            return member_row(data, today=today)
        except RowError as exc:
            raise RegisterUnavailable(f"the HimParivar register sent a member HimHIS cannot accept: {exc}") from exc

    def member(self, member_id: str, *, today: date | None = None) -> dict[str, Any] | None:
        """``GET /members/{member_id}``: the member as a register row, or None if the register has no such member."""
        body = self._get(f"/members/{member_id}")
        return None if body is None else self._member(body, today or date.today())

    def family(self, family_id: str, *, today: date | None = None) -> list[dict[str, Any]] | None:
        """``GET /families/{family_id}``: the family's members, or None if there is no such family."""
        body = self._get(f"/families/{family_id}")
        if body is None:
            return None
        members = body.get("members")
        if not isinstance(members, list):
            raise RegisterUnavailable("the HimParivar register sent a family without its members")
        return [self._member(m, today or date.today()) for m in members]

    def search(self, *, name: str, district: str, birth_year: int | None = None, gender: str | None = None,
               limit: int = 20, today: date | None = None) -> list[dict[str, Any]]:
        """``GET /members``: members whose name starts with ``name`` in ``district``."""
        params: dict[str, Any] = {"name": name, "district": district, "limit": limit}
        if birth_year is not None:
            params["birth_year"] = birth_year
        if gender is not None:
            params["gender"] = gender
        body = self._get("/members", params) or {}
        members = body.get("members")
        if not isinstance(members, list):
            raise RegisterUnavailable("the HimParivar register's search answer has no members list")
        return [self._member(m, today or date.today()) for m in members]


def client_from(settings) -> HimParivarClient | None:
    """The configured client, or None when no register API is configured."""
    if not settings.himparivar_url:
        return None
    return HimParivarClient(settings.himparivar_url, settings.himparivar_token, settings.himparivar_timeout)
