"""A small client for the ABDM gateway: does an ABHA number exist?

The call is the ABHA (Health ID) service's ``POST /v1/search/existsByHealthId`` with
``{"healthId": "<ABHA number>"}``, answered ``{"status": true|false}`` (ABDM sandbox API, "Check the
ABHA in our system"). It is made only when ``HIMHIS_ABDM_URL`` is set; without it, registration
checks the number's format alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

EXISTS_PATH = "/v1/search/existsByHealthId"


class GatewayUnavailable(Exception):
    """The gateway could not be asked, or answered something other than the contract."""


@dataclass(frozen=True, slots=True)
class AbdmClient:
    base_url: str
    token: str = ""
    timeout: float = 5.0

    def exists(self, abha: str) -> bool:
        """Whether the gateway knows this ABHA number (XX-XXXX-XXXX-XXXX)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            r = httpx.post(self.base_url.rstrip("/") + EXISTS_PATH, json={"healthId": abha}, headers=headers,
                           timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"the ABDM gateway did not answer ({type(exc).__name__})") from exc
        if r.status_code == 404:
            return False
        if r.status_code != 200:
            raise GatewayUnavailable(f"the ABDM gateway answered HTTP {r.status_code}")
        try:
            status = r.json().get("status")
        except (ValueError, AttributeError) as exc:
            raise GatewayUnavailable("the ABDM gateway's answer was not the expected JSON") from exc
        if not isinstance(status, bool):
            raise GatewayUnavailable("the ABDM gateway's answer had no true/false 'status'")
        return status


def client_from(settings) -> AbdmClient | None:
    """The configured client, or None when no gateway is configured."""
    if not settings.abdm_url:
        return None
    return AbdmClient(settings.abdm_url, settings.abdm_token, settings.abdm_timeout)
