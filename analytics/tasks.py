from __future__ import annotations

from celery import shared_task

from analytics import intake, services


@shared_task(acks_late=True)
def rollups_flush() -> dict[str, int]:
    """Periodic: write buffered tracking hits, then fold pending facts into the rollups."""
    return {"hits": intake.hits_drain(), "facts": services.rollups_flush()}
