from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sequences import engine


class Command(BaseCommand):
    help = (
        "Run one scheduler pass: advance due enrollments and send the resulting messages. "
        "Without a broker (no REDIS_URL) the sends happen in this process."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--until-idle", action="store_true", help="Repeat until nothing is due now.")
        parser.add_argument("--batch-size", type=int, default=None, help="Enrollments claimed per transaction.")

    def handle(self, *args: Any, until_idle: bool, batch_size: int | None, **options: Any) -> None:
        totals = engine.TickReport()
        passes = 0
        while True:
            report = engine.tick(batch_size=batch_size)
            passes += 1
            totals.add(report)
            if not until_idle or (report.claimed == 0 and report.messages_dispatched == 0):
                break
        self.stdout.write(
            f"{passes} pass(es): {totals.claimed} enrollments claimed, {totals.advanced_steps} steps run, "
            f"{totals.messages_created} messages written, {totals.messages_dispatched} re-dispatched, "
            f"{totals.finished} finished, {totals.parked} parked"
        )
