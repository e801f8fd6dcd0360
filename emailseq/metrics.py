"""Domain metrics for Prometheus, counted in the database when /metrics is scraped.

Beside django-prometheus's request and process metrics, one collector reports what the product
is doing: messages by status, failed and bounced messages by reason, delivery events by type,
custom events, the backlog of due enrollments and sends, and imports. They are gauges of what
the database holds at scrape time, so every web process reports the same figures and nothing
is lost on a restart.

No organization label: one would multiply every series by the number of organizations (no
bound in an installation that hosts many) and copy organization names into the monitoring
system. The label values are small fixed vocabularies. Per-organization figures are what the
API's analytics are for.

Each scrape runs six aggregate queries; the backlogs use the partial indexes the engine and
the sender claim with. The message and event counts read their whole tables: on installations
with tens of millions of rows, scrape every 30 s or less often.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from django.db import DatabaseError
from django.db.models import Case, CharField, Count, Min, Q, Sum, Value, When
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from delivery.models import Event, Message
from sequences.models import Enrollment
from subscribers.models import ContactEvent, ContactImport

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Why a message failed or bounced, from the text delivery.services records in Message.response
# (first matching prefix wins). A bounce is always the receiving server refusing the address.
FAILURE_REASONS: tuple[tuple[str, str], ...] = (
    ("render failed", "render_failed"),
    ("compose failed", "render_failed"),
    ("gave up: the worker", "worker_lost"),
    ("gave up:", "attempts_exhausted"),
)
# Failed messages with any other response were refused by the server for the message or the
# sender (policy, content, relay), not for the address.
REFUSED = "refused"
BOUNCED_REASON = "address_rejected"


def _failure_reason() -> Case:
    failed = Q(status=Message.Status.FAILED)
    return Case(
        When(status=Message.Status.BOUNCED, then=Value(BOUNCED_REASON)),
        *[When(failed & Q(response__startswith=prefix), then=Value(reason)) for prefix, reason in FAILURE_REASONS],
        When(failed, then=Value(REFUSED)),
        default=Value(""),
        output_field=CharField(),
    )


class DomainCollector(Collector):
    def describe(self) -> list[Metric]:
        # Names only: registering must not query the database.
        return list(self._families().values())

    def _families(self) -> dict[str, GaugeMetricFamily]:
        return {
            "messages": GaugeMetricFamily("emailseq_messages", "Messages by status.", labels=["status"]),
            "failed": GaugeMetricFamily(
                "emailseq_messages_failed",
                "Failed and bounced messages by reason.",
                labels=["status", "reason"],
            ),
            "sends_due": GaugeMetricFamily(
                "emailseq_messages_due", "Queued messages whose (re)send time has come: the send backlog."
            ),
            "events": GaugeMetricFamily(
                "emailseq_events",
                "Delivery events (opens, clicks, unsubscribes, bounces, complaints) by type; machine=true for "
                "those that look automated.",
                labels=["type", "machine"],
            ),
            "custom_events": GaugeMetricFamily("emailseq_custom_events", "Custom events received (all names)."),
            "enrollments_due": GaugeMetricFamily(
                "emailseq_enrollments_due", "Active enrollments whose next step is due: the engine's backlog."
            ),
            "enrollments_due_age": GaugeMetricFamily(
                "emailseq_enrollments_due_oldest_seconds", "How long the oldest due enrollment has waited (0: none)."
            ),
            "imports": GaugeMetricFamily("emailseq_imports", "Contact imports by status.", labels=["status"]),
            "import_rows": GaugeMetricFamily(
                "emailseq_imports_running_rows_processed", "Rows processed so far by the imports that are running."
            ),
            "available": GaugeMetricFamily(
                "emailseq_domain_metrics_available", "1 when the domain metrics above could be read from the database."
            ),
            "seconds": GaugeMetricFamily(
                "emailseq_domain_metrics_seconds", "Time taken to count the domain metrics of this scrape."
            ),
        }

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        started = time.monotonic()
        try:
            self._count(families)
        except DatabaseError:
            logger.exception("metrics: the domain metrics could not be read")
            families["available"].add_metric([], 0)
            yield families["available"]
            return
        families["available"].add_metric([], 1)
        families["seconds"].add_metric([], time.monotonic() - started)
        yield from families.values()

    def _count(self, families: dict[str, GaugeMetricFamily]) -> None:
        now = timezone.now()

        by_status = dict.fromkeys(Message.Status.values, 0)
        failures: dict[tuple[str, str], int] = {}
        rows = Message.objects.order_by().values("status", reason=_failure_reason()).annotate(count=Count("id"))
        for row in rows:
            by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
            if row["reason"]:
                failures[(row["status"], row["reason"])] = row["count"]
        for status, count in by_status.items():
            families["messages"].add_metric([status], count)
        for (status, reason), count in sorted(failures.items()):
            families["failed"].add_metric([status, reason], count)

        due_sends = Message.objects.filter(status=Message.Status.QUEUED, next_attempt_at__lte=now).count()
        families["sends_due"].add_metric([], due_sends)

        events = {(event_type, machine): 0 for event_type in Event.Type.values for machine in ("false", "true")}
        for row in Event.objects.order_by().values("type", "is_machine").annotate(count=Count("id")):
            events[(row["type"], "true" if row["is_machine"] else "false")] = row["count"]
        for (event_type, machine), count in events.items():
            families["events"].add_metric([event_type, machine], count)

        families["custom_events"].add_metric([], ContactEvent.objects.count())

        due = Enrollment.objects.filter(status=Enrollment.Status.ACTIVE, next_run_at__lte=now).aggregate(
            count=Count("id"), oldest=Min("next_run_at")
        )
        families["enrollments_due"].add_metric([], due["count"])
        oldest = due["oldest"]
        families["enrollments_due_age"].add_metric([], (now - oldest).total_seconds() if oldest else 0)

        imports = dict.fromkeys(ContactImport.Status.values, 0)
        running_rows = 0
        rows = ContactImport.objects.order_by().values("status").annotate(count=Count("id"), rows=Sum("rows_processed"))
        for row in rows:
            imports[row["status"]] = row["count"]
            if row["status"] == ContactImport.Status.RUNNING:
                running_rows = row["rows"] or 0
        for status, count in imports.items():
            families["imports"].add_metric([status], count)
        families["import_rows"].add_metric([], running_rows)


COLLECTOR = DomainCollector()
REGISTRY.register(COLLECTOR)


def exposition() -> bytes:
    """The text a scrape answers: django-prometheus's metrics and the domain metrics."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # Several server processes: their request metrics are merged from the shared directory,
        # as django-prometheus does; the domain metrics come from the database either way.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(COLLECTOR)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
