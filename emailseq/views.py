from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.http import require_safe
from kombu import Connection

from api.views import api_bad_request, api_server_error
from emailseq import metrics as domain_metrics

logger = logging.getLogger(__name__)

# A health probe must answer before the load balancer gives up on it.
PROBE_TIMEOUT_SECONDS = 2


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def health(request: HttpRequest) -> JsonResponse:
    """For load balancers and uptime checks: answers 200 when the database answers."""
    try:
        _database()
    except Exception:  # any failure means "not healthy"; details go to the log, not the public
        logger.exception("health check: the database does not answer")
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


def _cache() -> str:
    # A key of its own per probe: concurrent probes must not read each other's value.
    key, value = f"health:{secrets.token_hex(8)}", secrets.token_hex(8)
    cache.set(key, value, timeout=30)
    answered = cache.get(key)
    cache.delete(key)
    if answered != value:
        raise RuntimeError("the cache did not give back what was stored")
    return "ok"


def _broker() -> str:
    url = settings.CELERY_BROKER_URL
    if url.startswith("memory://"):
        return "in-process"
    if url.startswith(("redis://", "rediss://", "unix://")):
        client = redis.Redis.from_url(
            url, socket_connect_timeout=PROBE_TIMEOUT_SECONDS, socket_timeout=PROBE_TIMEOUT_SECONDS
        )
        try:
            client.ping()
        finally:
            client.close()
        return "ok"
    with Connection(url, connect_timeout=PROBE_TIMEOUT_SECONDS) as broker:
        broker.ensure_connection(max_retries=1)
    return "ok"


HEALTH_CHECKS: dict[str, Callable[[], str]] = {"database": _database, "cache": _cache, "broker": _broker}


@require_safe
def health_checks(request: HttpRequest) -> JsonResponse:
    """Each part the product needs, checked: 200 when all answer, 503 naming those that do not."""
    checks: dict[str, str] = {}
    for name, check in HEALTH_CHECKS.items():
        try:
            checks[name] = check()
        except Exception:  # any failure means "unavailable"; details go to the log, not the public
            logger.exception("health check: the %s does not answer", name)
            checks[name] = "unavailable"
    healthy = "unavailable" not in checks.values()
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503
    )


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition; with METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
    token = getattr(settings, "METRICS_TOKEN", "")
    if token:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token.encode()):
            response = HttpResponse("A bearer token is needed.\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(domain_metrics.exposition(), content_type=domain_metrics.CONTENT_TYPE)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400 (a body Django itself refused to read): a problem document for API callers."""
    if request.path.startswith("/api/"):
        return api_bad_request(request)
    return defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: API callers get a problem document, people the usual error page."""
    if request.path.startswith("/api/"):
        return api_server_error(request)
    return defaults.server_error(request)
