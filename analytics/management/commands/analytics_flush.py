from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from analytics import intake, services


class Command(BaseCommand):
    help = "Write buffered tracking hits and fold every pending fact into the analytics rollups, now."

    def handle(self, *args: Any, **options: Any) -> None:
        hits = intake.hits_drain()
        facts = services.rollups_flush()
        self.stdout.write(f"{hits} tracking hits written, {facts} facts folded into the rollups")
