from __future__ import annotations

from celery import shared_task

from api import idempotency


@shared_task(ignore_result=True, time_limit=300, soft_time_limit=240)
def idempotency_records_expire() -> int:
    return idempotency.idempotency_records_expire()
