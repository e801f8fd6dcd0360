from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from sequences import engine


@shared_task(acks_late=True)
def tick() -> dict[str, int | bool]:
    """The periodic scheduler pass (django-celery-beat runs it every few seconds)."""
    return asdict(engine.tick())
