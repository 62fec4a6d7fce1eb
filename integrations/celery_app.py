"""The Celery application of HimHIS's integrations, configured from ``HIMHIS_BROKER_URL``.

Production runs a worker, ``celery -A integrations.celery_app worker -Q hl7`` (the queue is
``HIMHIS_HL7_QUEUE``), on Redis (``redis://…``) or RabbitMQ (``amqp://…``). In the embedded default
(``memory://``) there is no worker: the listener runs the same task function in-process (see
``integrations.hl7.dispatch``). Tasks are acknowledged late and requeued when a worker dies, so a task
is never lost with the worker; they take inbox ids and are idempotent, so running one twice changes
nothing twice.
"""

from __future__ import annotations

from celery import Celery

from himhis.config import Settings, get_settings


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings.broker_url`` (a new one per call: the listener and tests use their own)."""
    app = Celery("himhis", broker=settings.broker_url, include=["integrations.hl7.tasks"])
    app.conf.update(
        task_acks_late=True,  # acknowledged to the broker after the task ran, not before
        task_reject_on_worker_lost=True,  # a worker killed mid-task gives its task back to the queue
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.hl7_queue,
        task_routes={"integrations.hl7.tasks.*": {"queue": settings.hl7_queue}},
        worker_prefetch_multiplier=4,
        broker_connection_retry_on_startup=True,
        # Redis redelivers an unacknowledged task after this many seconds (a worker that died).
        broker_transport_options={"visibility_timeout": max(30, int(settings.hl7_requeue_after) * 2)},
        task_always_eager=settings.tasks_in_process,
    )
    return app


celery = make_celery(get_settings())
