"""Handing stored messages to processing: a Celery worker through the broker, or a thread in-process.

Called after the inbox commit. In the embedded default (``memory://``) one background thread runs the
task function in this process, so the listener answers without waiting for processing; with a real
broker the task goes to the queue and a worker runs it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable

from himhis.config import Settings
from himhis.db import Database
from integrations.hl7 import tasks

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.in_process = settings.tasks_in_process
        self._base_url = settings.base_url + "/fhir"
        if self.in_process:
            self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._work, name="hl7-processing", daemon=True)
            self._thread.start()
        else:
            from integrations.celery_app import make_celery

            self.celery = make_celery(settings)

    def __call__(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        if self.in_process:
            for i in ids:
                self._queue.put(i)
            return
        with self.celery.producer_or_acquire() as producer:
            for i in ids:
                self.celery.send_task(tasks.PROCESS, args=[i], producer=producer)

    def _work(self) -> None:
        while (message_id := self._queue.get()) is not None:
            try:
                tasks.run(self.db, message_id, base_url=self._base_url)
            except Exception:
                log.exception("HL7 message %s could not be processed; the requeue sweep will try again", message_id)

    def close(self) -> None:
        if self.in_process:
            self._queue.put(None)
            self._thread.join(timeout=30)
        else:
            self.celery.close()
