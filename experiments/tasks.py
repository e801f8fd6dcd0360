from __future__ import annotations

from celery import shared_task

from experiments import services


@shared_task(acks_late=True)
def experiments_evaluate() -> int:
    """Apply guardrails and decide winners of every running experiment (every few minutes)."""
    return services.experiments_evaluate_all()
