"""Rate limits of delivery routes, shared by every worker that sends through a route.

With REDIS_URL the state lives in Redis and each decision is one Lua script, atomic across
worker processes and timed by Redis's clock; on the embedded defaults (one process) the same
rules run in process memory under a lock.

Per second: a sliding log, not a fixed-window counter (which lets 2N through across a window
boundary). A message may start when fewer than N log entries lie within the last window; its
entry is stamped far in the future while it is in flight and restamped with the time its send
returned. The receiving server's reply comes before that return, so any N+1 messages are at
least one window apart at the server too, however long each took on the wire. A rate factor
below 1 (after throttling) stretches the window: N per 1/factor seconds.

Per hour and per day: counters per UTC hour and day. Warm-up: a counter per day of the warm-up
schedule, counted from `warmup_started_at`. Connections: a set of leased slots; a worker that
dies frees its slot when the lease runs out.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# How long an in-flight message holds its place in the per-second log if its worker never
# reports back (it died): longer than any SMTP or HTTP timeout.
IN_FLIGHT_SECONDS = 120.0
HOUR = 3600
DAY = 86400


@dataclass(frozen=True)
class Limits:
    """A route's limits as they apply now. `key` names the route's state (unique per route)."""

    key: str
    per_second: int | None = None
    window: float = 1.0
    per_hour: int | None = None
    per_day: int | None = None
    warmup_ceiling: int | None = None
    warmup_day: int = 0
    warmup_day_ends: dt.datetime | None = None
    max_connections: int | None = None

    @property
    def limits_sending(self) -> bool:
        return any(limit is not None for limit in (self.per_second, self.per_hour, self.per_day, self.warmup_ceiling))


@dataclass(frozen=True)
class Decision:
    """Either a permit (`token`), a short wait before asking again, or `exhausted_until`."""

    token: str | None = None
    wait: float = 0.0
    exhausted_until: dt.datetime | None = None
    reason: str = ""


def _counter_keys(limits: Limits, wall: float) -> list[tuple[str, int | None, int, dt.datetime | None]]:
    """(state key, limit, seconds it lives, when the period ends) for hour, day and warm-up."""
    hour, day = int(wall // HOUR), int(wall // DAY)
    return [
        (f"{limits.key}:h:{hour}", limits.per_hour, HOUR + 60, _utc((hour + 1) * HOUR)),
        (f"{limits.key}:d:{day}", limits.per_day, DAY + 60, _utc((day + 1) * DAY)),
        (f"{limits.key}:w:{limits.warmup_day}", limits.warmup_ceiling, DAY + 60, limits.warmup_day_ends),
    ]


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


COUNTER_NAMES = ("per-hour limit", "per-day limit", "warm-up ceiling")


class LimiterUnavailable(Exception):
    """The shared state cannot be reached (Redis down): the limits cannot be kept just now."""


# Redis ---------------------------------------------------------------------------------------

ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limits = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
for i = 1, 3 do
  if limits[i] > 0 and tonumber(redis.call('GET', KEYS[i + 1]) or '0') >= limits[i] then
    return {2, tostring(i)}
  end
end
local n = tonumber(ARGV[1])
if n > 0 then
  local window = tonumber(ARGV[2])
  local in_flight = tonumber(ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= n then
    local nth = redis.call('ZREVRANGE', KEYS[1], n - 1, n - 1, 'WITHSCORES')
    return {1, tostring(tonumber(nth[2]) + window - now)}
  end
  redis.call('ZADD', KEYS[1], now + in_flight, ARGV[6])
  redis.call('EXPIRE', KEYS[1], math.ceil(window + in_flight) + 1)
end
for i = 1, 3 do
  if limits[i] > 0 then
    redis.call('INCR', KEYS[i + 1])
    redis.call('EXPIRE', KEYS[i + 1], tonumber(ARGV[7 + i]))
  end
end
return {0, tostring(now)}
"""

DONE = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], 'XX', tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[1])
return 1
"""

CONNECTION_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
return 1
"""


class RedisLimiter:
    def __init__(self) -> None:
        from django_redis import get_redis_connection

        self.client = get_redis_connection("default")
        self.acquire_script = self.client.register_script(ACQUIRE)
        self.done_script = self.client.register_script(DONE)
        self.connection_script = self.client.register_script(CONNECTION_ACQUIRE)

    def acquire(self, limits: Limits) -> Decision:
        try:
            return self._acquire(limits)
        except RedisError as error:
            raise LimiterUnavailable(str(error)) from error

    def _acquire(self, limits: Limits) -> Decision:
        token = uuid.uuid4().hex
        counters = _counter_keys(limits, time.time())
        keys = [f"emailseq:route:{limits.key}:log", *(f"emailseq:route:{key}" for key, *_ in counters)]
        args: list[Any] = [
            limits.per_second or 0,
            limits.window,
            *(limit or 0 for _, limit, _, _ in counters),
            token,
            IN_FLIGHT_SECONDS,
            *(ttl for _, _, ttl, _ in counters),
        ]
        code, value = self.acquire_script(keys=keys, args=args)
        code, value = int(code), value.decode() if isinstance(value, bytes) else str(value)
        if code == 0:
            return Decision(token=token)
        if code == 1:
            return Decision(wait=max(0.0, float(value)), reason="per-second limit")
        index = int(value) - 1
        return Decision(exhausted_until=counters[index][3], reason=COUNTER_NAMES[index])

    def done(self, limits: Limits, token: str) -> None:
        try:
            self.done_script(keys=[f"emailseq:route:{limits.key}:log"], args=[token])
        except RedisError:
            # The entry keeps its in-flight stamp and lapses later: the limit errs on the slow side.
            logger.warning("could not stamp a finished send of route %s", limits.key, exc_info=True)

    def connection_acquire(self, limits: Limits, lease: float) -> str | None:
        token = uuid.uuid4().hex
        try:
            taken = self.connection_script(
                keys=[f"emailseq:route:{limits.key}:connections"], args=[limits.max_connections, token, lease]
            )
        except RedisError as error:
            raise LimiterUnavailable(str(error)) from error
        return token if int(taken) else None

    def connection_release(self, limits: Limits, token: str) -> None:
        try:
            self.client.zrem(f"emailseq:route:{limits.key}:connections", token)
        except RedisError:
            logger.warning("could not free a connection slot of route %s", limits.key, exc_info=True)


# Process memory (embedded defaults) -----------------------------------------------------------


@dataclass
class LocalLimiter:
    lock: threading.Lock = field(default_factory=threading.Lock)
    logs: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> token -> time
    counters: dict[str, int] = field(default_factory=dict)
    connections: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> token -> lease end

    def acquire(self, limits: Limits) -> Decision:
        counters = _counter_keys(limits, time.time())
        with self.lock:
            now = time.monotonic()
            for index, (key, limit, _, ends) in enumerate(counters):
                if limit is not None and self.counters.get(key, 0) >= limit:
                    return Decision(exhausted_until=ends, reason=COUNTER_NAMES[index])
            token = uuid.uuid4().hex
            if limits.per_second is not None:
                log = self.logs.setdefault(limits.key, {})
                for old, stamp in list(log.items()):
                    if stamp <= now - limits.window:
                        del log[old]
                if len(log) >= limits.per_second:
                    nth = sorted(log.values(), reverse=True)[limits.per_second - 1]
                    return Decision(wait=max(0.0, nth + limits.window - now), reason="per-second limit")
                log[token] = now + IN_FLIGHT_SECONDS
            for key, limit, _, _ in counters:
                if limit is not None:
                    self.counters[key] = self.counters.get(key, 0) + 1
            self._forget_past_periods(counters)
            return Decision(token=token)

    def _forget_past_periods(self, current: list[tuple[str, int | None, int, dt.datetime | None]]) -> None:
        if len(self.counters) > 1000:
            keep = {key for key, *_ in current}
            self.counters = {key: count for key, count in self.counters.items() if key in keep}

    def done(self, limits: Limits, token: str) -> None:
        with self.lock:
            log = self.logs.get(limits.key)
            if log is not None and token in log:
                log[token] = time.monotonic()

    def connection_acquire(self, limits: Limits, lease: float) -> str | None:
        with self.lock:
            now = time.monotonic()
            slots = self.connections.setdefault(limits.key, {})
            for token, ends in list(slots.items()):
                if ends <= now:
                    del slots[token]
            if limits.max_connections is not None and len(slots) >= limits.max_connections:
                return None
            token = uuid.uuid4().hex
            slots[token] = now + lease
            return token

    def connection_release(self, limits: Limits, token: str) -> None:
        with self.lock:
            self.connections.get(limits.key, {}).pop(token, None)


_local = LocalLimiter()
_redis: dict[str, RedisLimiter] = {}


def limiter() -> RedisLimiter | LocalLimiter:
    """Redis when REDIS_URL is set (every worker shares it), process memory otherwise."""
    if not settings.REDIS_URL:
        return _local
    if settings.REDIS_URL not in _redis:
        _redis[settings.REDIS_URL] = RedisLimiter()
    return _redis[settings.REDIS_URL]


def send_permit(limits: Limits) -> Decision:
    return limiter().acquire(limits)


def send_done(limits: Limits, token: str) -> None:
    """The send that `token` permitted has returned (whatever its outcome)."""
    limiter().done(limits, token)


def connection_acquire(limits: Limits, *, lease: float) -> str | None:
    """A connection slot of the route, or None when all `max_connections` are taken."""
    return limiter().connection_acquire(limits, lease)


def connection_release(limits: Limits, token: str) -> None:
    limiter().connection_release(limits, token)


def per_second_window(rate_factor: float) -> float:
    """The window in which `per_second` messages may go: a second (and a millisecond for the
    clocks' resolution), stretched after throttling."""
    return 1.001 / min(1.0, max(rate_factor, 0.01))
