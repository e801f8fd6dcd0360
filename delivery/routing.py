"""Which route an organization's mail leaves by, and each route's circuit breaker.

An organization's active routes are tried in priority order; one without routes sends through
EMAIL_URL. A send batch loads the routes once (`RoutePlan`) and keeps their state for the batch;
every change of state is written to the route's row at once, so every worker sees it.

Circuit breaker: a route's connection failures and throttling replies count in a row
(`failures_in_a_row`); at ROUTE_CIRCUIT_FAILURES the circuit opens and the route is skipped.
At `probe_at` one worker wins the probe (a conditional UPDATE to half open) and sends one
message through it: any answer about the message itself closes the circuit, a failure opens it
again for twice the cool-down (up to ROUTE_CIRCUIT_MAX_COOLDOWN_SECONDS). A throttling reply
also rests the route until `throttled_until` and halves its `rate_factor` (the share of its
per-second limit in use); each batch that goes through afterwards gives back a tenth.

Limits (delivery.ratelimit): a message waits for the per-second limit on its route; when the
route's hour, day or warm-up allowance is used up, or all its connections are taken, the rest
of the batch goes to the next route, and when no route can take it, it goes back to the queue
(no attempt counted) until the earliest time one can.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from delivery import ratelimit
from delivery.models import DeliveryRoute
from delivery.transports.base import summary
from delivery.transports.smtp import public_addresses
from emailseq.environment import ANYMAIL_PROVIDERS, EmailConfig, parse_email_url
from organizations.models import Organization

logger = logging.getLogger(__name__)

# Throttled over and over, a route still sends at this share of its per-second limit.
MIN_RATE_FACTOR = 0.05
RATE_RECOVERY_STEP = 0.1


# Route addresses -------------------------------------------------------------------------------


# The provider options an organization's route may set, besides `timeout`. Anymail takes many
# more (api_url, client and session parameters, debugging), and some of them name where the
# worker sends its requests; those stay with the operator's EMAIL_URL and settings, so a route
# reaches nothing but its provider's own API.
ROUTE_OPTIONS: dict[str, frozenset[str]] = {
    "amazon-ses": frozenset(
        {"access_key_id", "secret_access_key", "region_name", "configuration_set_name", "message_tag_name"}
    ),
    "mailgun": frozenset({"sender_domain", "region"}),
    "postmark": frozenset({"message_stream"}),
    "sparkpost": frozenset({"subaccount", "region"}),
}
# The `region` option: the provider's API in that region, from this table only.
PROVIDER_REGIONS: dict[str, dict[str, str]] = {
    "mailgun": {"us": "https://api.mailgun.net/v3/", "eu": "https://api.eu.mailgun.net/v3/"},
    "sparkpost": {"us": "https://api.sparkpost.com/api/v1/", "eu": "https://api.eu.sparkpost.com/api/v1/"},
}
AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


def _route_provider_options(scheme: str, url: str, config: EmailConfig) -> EmailConfig:
    """Refuse options a route may not set and credentials it does not carry: without its own
    key, anymail would send with the operator's account from settings.ANYMAIL."""
    parts = urlsplit(url)
    options = {name.lower(): value for name, value in parse_qsl(parts.query, keep_blank_values=True)}
    options.pop("timeout", None)
    allowed = ROUTE_OPTIONS.get(scheme, frozenset())
    refused = sorted(set(options) - allowed)
    if refused:
        accepted = f"; {scheme} routes accept {', '.join(sorted(allowed))}" if allowed else ""
        raise ImproperlyConfigured(f"url: option(s) {', '.join(refused)} cannot be set on a route{accepted}")
    _, user_setting, password_setting = ANYMAIL_PROVIDERS[scheme]
    if (user_setting and not parts.username) or (password_setting and not parts.password):
        shape = "KEY:SECRET@" if password_setting else "KEY@"
        raise ImproperlyConfigured(f"url: a route carries its own credentials: {scheme}://{shape}")
    if scheme == "amazon-ses" and not (options.get("access_key_id") and options.get("secret_access_key")):
        raise ImproperlyConfigured("url: a route carries its own credentials: access_key_id and secret_access_key")
    if "region_name" in options and not AWS_REGION.fullmatch(options["region_name"]):
        raise ImproperlyConfigured(f"url: region_name {options['region_name']!r} is not an AWS region")
    anymail_settings = dict(config.anymail_settings)
    if "region" in options:
        regions = PROVIDER_REGIONS[scheme]
        if options["region"] not in regions:
            raise ImproperlyConfigured(f"url: region must be one of {', '.join(regions)}")
        prefix = config.anymail_backend.split(".")[-2].upper()
        anymail_settings[f"{prefix}_API_URL"] = regions[anymail_settings.pop(f"{prefix}_REGION")]
    return dataclasses.replace(config, anymail_settings=anymail_settings)


def route_config(url: str) -> EmailConfig:
    """Parse a route's url like EMAIL_URL, with only the provider options a route may set;
    ImproperlyConfigured when it is not one. An SMTP route connects to public addresses only,
    unless ROUTE_ALLOW_PRIVATE_HOSTS."""
    try:
        config = parse_email_url("url", url, mailbox_default=settings.MAILBOX_DIR)
    except ValueError as error:  # urlsplit's own complaints, e.g. a broken [IPv6] host
        raise ImproperlyConfigured(f"url: {error}") from None
    if config.kind == "console":
        raise ImproperlyConfigured("url: console:// is for debugging with EMAIL_URL, not a route")
    if config.kind == "anymail":
        config = _route_provider_options(urlsplit(url).scheme, url, config)
    return dataclasses.replace(config, public_hosts_only=not settings.ROUTE_ALLOW_PRIVATE_HOSTS)


def route_config_checked(url: str) -> EmailConfig:
    """route_config, and the host resolved now: a url whose host is not public is refused when
    it is saved (the transport checks again on each connection: names can change)."""
    config = route_config(url)
    if config.kind == "smtp" and config.public_hosts_only:
        try:
            public_addresses(config.host, config.port)
        except OSError as error:
            raise ImproperlyConfigured(f"url: {error}") from None
    return config


SECRET_OPTION_WORDS = ("key", "secret", "token", "password", "pass")
MASK = "********"


def url_masked(url: str) -> str:
    """The url without its secrets: the password, a provider's key in the user part, and any
    option whose name says it is a key, secret, token or password."""
    parts = urlsplit(url)
    secret_options = any(
        any(word in name.lower() for word in SECRET_OPTION_WORDS) for name, _ in parse_qsl(parts.query)
    )
    if not (parts.username or parts.password or secret_options):
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username or parts.password:
        user = parts.username or ""
        if parts.scheme in ANYMAIL_PROVIDERS and user:
            user = MASK
        netloc = f"{user}:{MASK}@{netloc}" if parts.password else f"{user}@{netloc}"
    options = [
        (name, MASK if any(word in name.lower() for word in SECRET_OPTION_WORDS) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(options, quote_via=quote, safe="*"), ""))


# The circuit breaker ----------------------------------------------------------------------------


def cooldown(failures_in_a_row: int) -> dt.timedelta:
    """How long an open circuit waits for its probe: doubling with each failed probe."""
    doublings = max(0, failures_in_a_row - settings.ROUTE_CIRCUIT_FAILURES)
    seconds = settings.ROUTE_CIRCUIT_COOLDOWN_SECONDS * 2 ** min(doublings, 30)
    return dt.timedelta(seconds=min(seconds, settings.ROUTE_CIRCUIT_MAX_COOLDOWN_SECONDS))


def probe_claim(*, route: DeliveryRoute, now: dt.datetime) -> bool:
    """Take the probe of an open circuit whose time has come; only one worker wins it. The
    probe time moves on by a cool-down, so a probe whose worker died is taken again later."""
    probe_at = now + cooldown(route.failures_in_a_row)
    won = (
        DeliveryRoute.objects.filter(
            pk=route.pk, circuit__in=[DeliveryRoute.Circuit.OPEN, DeliveryRoute.Circuit.HALF_OPEN], probe_at__lte=now
        ).update(circuit=DeliveryRoute.Circuit.HALF_OPEN, probe_at=probe_at, updated_at=now)
        == 1
    )
    if won:
        route.circuit, route.probe_at = DeliveryRoute.Circuit.HALF_OPEN, probe_at
    return won


def route_succeeded(*, route: DeliveryRoute, now: dt.datetime) -> None:
    """The route answered for a message: close its circuit and give back some of its rate.
    Writes only when there is something to change (the batch's copy says)."""
    recovering = route.rate_factor < 1 and (route.throttled_until is None or route.throttled_until <= now)
    if route.circuit == DeliveryRoute.Circuit.CLOSED and not route.failures_in_a_row and not recovering:
        return
    changes = {
        "circuit": DeliveryRoute.Circuit.CLOSED,
        "failures_in_a_row": 0,
        "circuit_opened_at": None,
        "probe_at": None,
    }
    if recovering:
        changes["rate_factor"] = min(1.0, round(route.rate_factor + RATE_RECOVERY_STEP, 4))
    DeliveryRoute.objects.filter(pk=route.pk).update(**changes, updated_at=now)
    if route.circuit != DeliveryRoute.Circuit.CLOSED:
        logger.info("route %s (%s) works again: circuit closed", route.pk, route.name)
    for name, value in changes.items():
        setattr(route, name, value)


@transaction.atomic
def route_failed(*, route: DeliveryRoute, error: str, throttled: bool, now: dt.datetime) -> None:
    """A connection failure or throttling reply: count it, open the circuit at the threshold
    (or again after a failed probe), and slow a throttled route down."""
    current = DeliveryRoute.objects.select_for_update().get(pk=route.pk)
    current.failures_in_a_row += 1
    current.last_error = summary(error)
    fields = ["failures_in_a_row", "last_error", "updated_at"]
    if throttled:
        current.rate_factor = max(MIN_RATE_FACTOR, round(current.rate_factor / 2, 4))
        current.throttled_until = now + dt.timedelta(seconds=settings.ROUTE_THROTTLE_PAUSE_SECONDS)
        fields += ["rate_factor", "throttled_until"]
    reopening = current.circuit == DeliveryRoute.Circuit.HALF_OPEN
    if reopening or current.failures_in_a_row >= settings.ROUTE_CIRCUIT_FAILURES:
        if current.circuit == DeliveryRoute.Circuit.CLOSED:
            current.circuit_opened_at = now
            logger.warning("route %s (%s) circuit opened: %s", route.pk, route.name, error)
        current.circuit = DeliveryRoute.Circuit.OPEN
        current.probe_at = now + cooldown(current.failures_in_a_row)
        fields += ["circuit", "circuit_opened_at", "probe_at"]
    current.save(update_fields=fields)
    for name in fields:
        setattr(route, name, getattr(current, name))


# Limits ------------------------------------------------------------------------------------------


def route_limits(*, route: DeliveryRoute, now: dt.datetime) -> ratelimit.Limits | None:
    """The route's limits as they apply now; None when it has none (no limiter call at all)."""
    warmup_ceiling, warmup_day, warmup_day_ends = None, 0, None
    if route.warmup_schedule and route.warmup_started_at is not None:
        warmup_day = max(0, (now - route.warmup_started_at) // dt.timedelta(days=1))
        if warmup_day < len(route.warmup_schedule):
            warmup_ceiling = int(route.warmup_schedule[warmup_day])
            warmup_day_ends = route.warmup_started_at + dt.timedelta(days=warmup_day + 1)
    limits = ratelimit.Limits(
        # The creation time keeps a new route with a reused id from inheriting old counts.
        key=f"{route.pk}-{int(route.created_at.timestamp() * 1000)}",
        per_second=route.per_second,
        window=ratelimit.per_second_window(route.rate_factor),
        per_hour=route.per_hour,
        per_day=route.per_day,
        warmup_ceiling=warmup_ceiling,
        warmup_day=warmup_day,
        warmup_day_ends=warmup_day_ends,
        max_connections=route.max_connections,
    )
    return limits if limits.limits_sending or limits.max_connections else None


# Choosing a route for a batch ---------------------------------------------------------------------


@dataclass
class Target:
    """One way out for the rest of a batch: a route, or EMAIL_URL (route None)."""

    route: DeliveryRoute | None
    config: EmailConfig
    probe: bool = False
    limits: ratelimit.Limits | None = None
    answered: bool = False  # the route has answered for a message in this batch

    @property
    def name(self) -> str:
        return "EMAIL_URL" if self.route is None else f"route {self.route.pk} ({self.route.name})"


@dataclass
class RoutePlan:
    """An organization's routes for one send batch, in order, with their state read once."""

    organization_id: int
    routes: list[DeliveryRoute] = field(default_factory=list)
    out: set[int | None] = field(default_factory=set)  # routes this batch no longer uses
    # The earliest time a route skipped for its state (circuit, rest, allowance) takes mail again.
    retry_at: dt.datetime | None = None

    @classmethod
    def load(cls, organization_id: int) -> RoutePlan:
        routes = list(DeliveryRoute.objects.filter(organization_id=organization_id, is_active=True))
        return cls(organization_id=organization_id, routes=routes)

    def _later(self, when: dt.datetime | None) -> None:
        if when is not None and (self.retry_at is None or when < self.retry_at):
            self.retry_at = when

    def next_target(self, now: dt.datetime) -> Target | None:
        """The first route that may take mail now, or None when none can."""
        if not self.routes:
            return None if None in self.out else Target(route=None, config=settings.EMAIL)
        for route in self.routes:
            if route.pk in self.out:
                continue
            try:
                config = route_config(route.url)
            except ImproperlyConfigured as error:
                logger.error("route %s (%s) has an unusable url: %s", route.pk, route.name, error)
                self.out.add(route.pk)
                continue
            if route.throttled_until is not None and route.throttled_until > now:
                self._later(route.throttled_until)
                continue
            probe = False
            if route.circuit != DeliveryRoute.Circuit.CLOSED:
                if route.probe_at is None or route.probe_at > now or not probe_claim(route=route, now=now):
                    self._later(route.probe_at)
                    continue
                probe = True
            return Target(route=route, config=config, probe=probe, limits=route_limits(route=route, now=now))
        return None

    def drop(self, target: Target, *, until: dt.datetime | None = None) -> None:
        """This batch is done with the target; `until`: when it can take mail again."""
        self.out.add(target.route.pk if target.route is not None else None)
        self._later(until)

    def succeeded(self, target: Target, now: dt.datetime) -> None:
        """The route answered for a message: its state changes once per batch at most."""
        if target.route is not None and not target.answered:
            route_succeeded(route=target.route, now=now)
        target.answered, target.probe = True, False

    def failed(self, target: Target, error: BaseException, *, throttled: bool, now: dt.datetime) -> None:
        until = None
        if target.route is not None:
            route = target.route
            route_failed(route=route, error=str(error), throttled=throttled, now=now)
            resting = [route.throttled_until] if throttled else []
            if route.circuit != DeliveryRoute.Circuit.CLOSED:
                resting.append(route.probe_at)
            until = max((when for when in resting if when is not None), default=None)
        self.drop(target, until=until)


# Managing routes ----------------------------------------------------------------------------------

ROUTE_STATE_FIELDS = (
    "circuit",
    "failures_in_a_row",
    "circuit_opened_at",
    "probe_at",
    "throttled_until",
    "rate_factor",
    "last_error",
)


def route_list(*, organization: Organization) -> QuerySet[DeliveryRoute]:
    return DeliveryRoute.objects.filter(organization=organization)


def route_get(*, organization: Organization, route_id: int) -> DeliveryRoute:
    return get_object_or_404(route_list(organization=organization), pk=route_id)


def _checked_url(url: str, *, current: DeliveryRoute | None = None) -> tuple[str, str]:
    """(url to store, kind). Sending back the masked url an answer showed keeps the secrets."""
    if current is not None and url == url_masked(current.url):
        url = current.url
    try:
        config = route_config_checked(url)
    except ImproperlyConfigured as error:
        raise ValidationError({"url": str(error).removeprefix("url: ")}) from None
    return url, config.kind


def _check_name_free(organization: Organization, name: str, *, route_id: int | None = None) -> None:
    taken = DeliveryRoute.objects.filter(organization=organization, name=name)
    if taken.filter(~Q(pk=route_id) if route_id else Q()).exists():
        raise ValidationError({"name": "This organization already has a route of this name."})


@transaction.atomic
def route_create(*, organization: Organization, name: str, url: str, **fields: object) -> DeliveryRoute:
    _check_name_free(organization, name)
    url, kind = _checked_url(url)
    if fields.get("warmup_schedule") and not fields.get("warmup_started_at"):
        fields["warmup_started_at"] = timezone.now()
    return DeliveryRoute.objects.create(organization=organization, name=name, url=url, kind=kind, **fields)


@transaction.atomic
def route_update(*, route: DeliveryRoute, **fields: object) -> DeliveryRoute:
    """Change a route's settings (never its state: see route_reset)."""
    if "name" in fields:
        _check_name_free(route.organization, str(fields["name"]), route_id=route.pk)
    if "url" in fields:
        fields["url"], fields["kind"] = _checked_url(str(fields["url"]), current=route)
    if fields.get("warmup_schedule") and not (fields.get("warmup_started_at") or route.warmup_started_at):
        fields["warmup_started_at"] = timezone.now()
    for name, value in fields.items():
        setattr(route, name, value)
    route.save(update_fields=[*fields, "updated_at"])
    return route


def route_delete(*, route: DeliveryRoute) -> None:
    """Messages it sent keep their history; their route becomes null."""
    route.delete()


def route_reset(*, route: DeliveryRoute) -> DeliveryRoute:
    """Close the circuit and forget failures and throttling: the route takes mail at once."""
    route.circuit = DeliveryRoute.Circuit.CLOSED
    route.failures_in_a_row = 0
    route.circuit_opened_at = None
    route.probe_at = None
    route.throttled_until = None
    route.rate_factor = 1.0
    route.save(update_fields=[*ROUTE_STATE_FIELDS[:-1], "updated_at"])
    return route
