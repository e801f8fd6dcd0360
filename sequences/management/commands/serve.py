from __future__ import annotations

import logging
import threading
import time
from typing import Any

from channels.routing import get_default_application
from daphne.endpoints import build_endpoint_description_strings
from daphne.server import Server
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from analytics import services as analytics_services
from sequences import engine

logger = logging.getLogger("sequences.scheduler")


def run_scheduler(stop: threading.Event, interval: float) -> None:
    """The in-process scheduler: a tick every `interval` seconds, sends included (no broker)."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            close_old_connections()
            report = engine.tick()
            if report.claimed or report.messages_dispatched:
                logger.info(
                    "tick: %d enrollments advanced, %d messages written, %d re-dispatched",
                    report.claimed,
                    report.messages_created,
                    report.messages_dispatched,
                )
            # Rollups trail events by one interval on embedded defaults.
            analytics_services.rollups_flush()
            if report.more_due:
                continue
        except Exception:
            # The scheduler must outlive a bad tick (a database hiccup); the next one retries.
            logger.exception("tick failed")
        finally:
            close_old_connections()
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


class Command(BaseCommand):
    help = (
        "Run the whole product in one process: web, WebSockets (daphne), and the scheduler and "
        "sender on embedded defaults. With REDIS_URL set, run Celery workers and beat instead "
        "(see README.md) and pass --no-scheduler."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-scheduler", action="store_true", help="Serve the web only.")

    def handle(self, *args: Any, host: str, port: int, no_scheduler: bool, **options: Any) -> None:
        stop = threading.Event()
        if not no_scheduler:
            if not settings.CELERY_TASK_ALWAYS_EAGER:
                self.stdout.write("REDIS_URL is set: sends go to the broker; a Celery worker must be running.")
            interval = settings.SCHEDULER_INTERVAL_SECONDS
            threading.Thread(target=run_scheduler, args=(stop, interval), name="scheduler", daemon=True).start()
            self.stdout.write(f"Scheduler: a tick every {interval:g}s")
        self.stdout.write(f"Serving {settings.BASE_URL} on http://{host}:{port}/ (Ctrl+C stops)")
        try:
            Server(
                application=get_default_application(),
                endpoints=build_endpoint_description_strings(host=host, port=port),
                verbosity=int(options.get("verbosity", 1)),
            ).run()
        finally:
            stop.set()
