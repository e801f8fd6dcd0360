"""Time arithmetic for send windows and wait-until steps, in the contact's own time zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

UTC = dt.UTC


@lru_cache(maxsize=1024)
def zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def window_opening(
    now: dt.datetime, tz: zoneinfo.ZoneInfo, days: frozenset[int], start_hour: int, end_hour: int
) -> dt.datetime:
    """`now` if it lies inside the send window, else the next moment the window opens (UTC).

    The window is [start_hour, end_hour) local time on the given weekdays (Monday is 0).
    """
    local = now.astimezone(tz)
    if local.weekday() in days and start_hour <= local.hour < end_hour:
        return now
    for offset in range(8):
        day = local.date() + dt.timedelta(days=offset)
        if day.weekday() not in days:
            continue
        opening = dt.datetime.combine(day, dt.time(start_hour), tzinfo=tz)
        if opening > now:
            return opening.astimezone(UTC)
    raise ValueError("a send window needs at least one weekday")


def next_time_of_day(now: dt.datetime, tz: zoneinfo.ZoneInfo, at: dt.time, days: frozenset[int]) -> dt.datetime:
    """The first moment at or after `now` when the local clock shows `at` on one of `days`."""
    local = now.astimezone(tz)
    for offset in range(8):
        day = local.date() + dt.timedelta(days=offset)
        if day.weekday() not in days:
            continue
        moment = dt.datetime.combine(day, at, tzinfo=tz)
        if moment >= now:
            return moment.astimezone(UTC)
    raise ValueError("a wait-until step needs at least one weekday")
