"""Configuration from environment variables prefixed ``HIMHIS_`` (see README, "Configuration")."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting HimHIS reads; the defaults are the embedded development set-up."""

    model_config = SettingsConfigDict(env_prefix="HIMHIS_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = Field(default=f"sqlite:///{ROOT / 'var' / 'himhis.db'}")
    broker_url: str = "memory://"
    db_pool_size: int = 10
    db_max_overflow: int = 20
    var_dir: Path = ROOT / "var"

    base_url: str = "http://127.0.0.1:8000"
    oidc_issuer: str = "http://127.0.0.1:8000/realms/himhis"
    oidc_audience: str = "himhis-api"
    oidc_client_id: str = "himhis-ward"
    oidc_client_secret: str = ""
    lab_client_secret: str = "lab-secret"
    session_secret: str = "development-session-secret"

    max_request_bytes: int = 32 * 1024 * 1024
    default_page_size: int = 50

    # ABDM gateway for checking ABHA numbers at registration; empty: the format is checked alone.
    abdm_url: str = ""
    abdm_token: str = ""
    abdm_timeout: float = 5.0

    # HimParivar family register API (integrations/himparivar/data/openapi.json); empty: not asked.
    himparivar_url: str = ""
    himparivar_token: str = ""
    himparivar_timeout: float = 5.0

    # HL7 v2 over MLLP from laboratory systems (integrations/hl7); 2575 is HL7's registered port.
    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575
    mllp_max_message_bytes: int = 4 * 1024 * 1024  # a larger frame is refused with AR
    mllp_frame_timeout: float = 30.0  # seconds a started frame may take to complete
    mllp_idle_timeout: float = 600.0  # seconds a connection may stay silent
    hl7_requeue_after: float = 60.0  # seconds after which a stored, unprocessed message is queued again
    hl7_queue: str = "hl7"  # the Celery queue HL7 processing tasks go to

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def tasks_in_process(self) -> bool:
        """Celery runs tasks eagerly in-process when no real broker is configured."""
        return self.broker_url.startswith("memory://")


@lru_cache
def get_settings() -> Settings:
    return Settings()
