from __future__ import annotations

import logging

from celery import shared_task

from analytics import intake, services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def rollups_flush() -> dict[str, int]:
    """Periodic: write spooled tracking hits, then fold pending facts into the rollups (even when
    the hits could not be written: the rest of the funnel must not wait on them)."""
    try:
        hits = intake.hits_drain()
    except Exception:
        logger.exception("writing spooled tracking hits failed; they stay in the spool")
        hits = 0
    return {"hits": hits, "facts": services.rollups_flush()}
