from __future__ import annotations

from celery import shared_task

from subscribers import importing

# A task works on an import for this long, then hands it to a fresh task: well inside the time
# limits below, and each chunk commits its own progress anyway.
IMPORT_TASK_BUDGET_SECONDS = 180


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=300, soft_time_limit=270)
def import_run(import_id: int) -> str:
    """Work on a CSV import from its checkpoint. Ids only: the row says what is left to do."""
    outcome = importing.contact_import_process(import_id=import_id, time_budget=IMPORT_TASK_BUDGET_SECONDS)
    if outcome is importing.Outcome.PAUSED:
        import_run.delay(import_id)
    return outcome.value


@shared_task(ignore_result=True, time_limit=60, soft_time_limit=50)
def imports_resume() -> int:
    """Dispatch imports that no worker holds: their dispatch was lost or their worker died."""
    import_ids = importing.contact_imports_due()
    for import_id in import_ids:
        import_run.delay(import_id)
    return len(import_ids)
