"""Celery tasks of the HL7 interface: process one stored message (idempotent, acknowledged late, retried)."""

from __future__ import annotations

import logging
from functools import cache

from sqlalchemy.exc import DBAPIError, OperationalError

from himhis.config import get_settings
from himhis.db import Database
from integrations.celery_app import celery
from integrations.hl7 import inbox, service

log = logging.getLogger(__name__)
PROCESS = "integrations.hl7.tasks.process_message"


@cache
def _database() -> Database:
    settings = get_settings()
    kw = {} if settings.database_url.startswith("sqlite") else {"pool_size": 4, "max_overflow": 4}
    return Database(settings.database_url, **kw)


def run(db: Database, message_id: int, *, base_url: str | None = None) -> service.Outcome:
    """Process inbox message ``message_id`` in one unit of work (the task body, also run in-process)."""
    return db.run(lambda s: service.process(s, message_id=message_id, base_url=base_url))


@celery.task(name=PROCESS, bind=True, acks_late=True, max_retries=8, autoretry_for=(OperationalError, DBAPIError),
             retry_backoff=True, retry_backoff_max=60)
def process_message(self, message_id: int) -> str:
    """Place inbox message ``message_id`` in the record, or hold it with the reason."""
    db = _database()
    try:
        return run(db, message_id, base_url=get_settings().base_url + "/fhir").state
    except (OperationalError, DBAPIError):
        raise  # retried; after the last retry the requeue sweep offers it again
    except Exception as exc:  # a fault in the mapping itself: stop retrying, show it in the hold queue
        log.exception("HL7 message %s failed", message_id)
        reason = f"{type(exc).__name__}: {exc}"
        db.run(lambda s: inbox.mark_failed(s, message_id, reason))
        return inbox.FAILED
