"""Receive bounces and complaints over SMTP: point BOUNCE_DOMAIN's MX here."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from prometheus_client import start_http_server

from deliverability import receiver


class Command(BaseCommand):
    help = (
        "Run the bounce receiver: an SMTP server that takes delivery status notifications (RFC 3464) and "
        "complaint reports (ARF, RFC 5965) for BOUNCE_DOMAIN and applies them. Safe to run several."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="0.0.0.0", help="Address to listen on (default: all).")
        parser.add_argument("--port", type=int, default=25, help="Port to listen on (default: 25).")
        parser.add_argument(
            "--workers", type=int, default=4, help="Reports applied at the same time (database connections)."
        )
        parser.add_argument(
            "--metrics-port", type=int, default=None, help="Serve this process's Prometheus counters on this port."
        )

    def handle(self, *args: Any, host: str, port: int, workers: int, metrics_port: int | None, **options: Any) -> None:
        if metrics_port is not None:
            start_http_server(metrics_port, addr=host)

        def ready(sockets: Any) -> None:
            addresses = ", ".join("{}:{}".format(*sock.getsockname()[:2]) for sock in sockets)
            self.stdout.write(f"bounce_server: listening on {addresses}")
            self.stdout.flush()

        asyncio.run(receiver.serve(host=host, port=port, workers=max(1, workers), ready=ready))
