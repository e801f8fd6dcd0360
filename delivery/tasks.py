from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from delivery import services


@shared_task(acks_late=True, reject_on_worker_lost=True)
def send_messages(message_ids: list[int]) -> dict[str, int]:
    """Send a batch of messages. Ids only: the rows say what still needs doing."""
    return asdict(services.messages_send(message_ids=message_ids))
