"""Telling automated opens and clicks from human ones.

Security scanners follow every link in a message within seconds of delivery, and privacy
proxies (Apple Mail Privacy Protection) fetch every image whether or not anyone reads the mail.
Counting those as engagement would make opens meaningless and let machines steer sequences.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from functools import lru_cache

SCANNER_USER_AGENTS = re.compile(
    r"bot\b|bot/|crawler|spider|slurp|preview|scanner|scan\b|proofpoint|mimecast|barracuda|symantec|"
    r"messagelabs|forcepoint|trendmicro|trend micro|sophos|fireeye|ironport|cisco|paloalto|zscaler|"
    r"safelinks|safe links|linkprotect|python-requests|python-urllib|aiohttp|httpx|curl/|wget|"
    r"go-http-client|java/|okhttp|apache-httpclient|headlesschrome|phantomjs|libwww|nessus|"
    r"microsoft office|ms-office|office protocol discovery|skypeuripreview|facebookexternalhit|"
    r"slackbot|whatsapp|discordbot|yahoo! slurp",
    re.IGNORECASE,
)
# Apple owns 17.0.0.0/8; Mail Privacy Protection fetches come from there or announce only
# "Mozilla/5.0" as their user agent.
APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")
APPLE_PROXY_USER_AGENT = "Mozilla/5.0"
# Humans rarely open or click within this many seconds of the message leaving our server.
TOO_FAST = dt.timedelta(seconds=5)


@lru_cache(maxsize=4096)
def _is_scanner(agent: str) -> bool:
    # The pattern costs tens of microseconds a search, and user agents repeat by the thousand.
    return SCANNER_USER_AGENTS.search(agent) is not None


@lru_cache(maxsize=65536)
def _in_apple_network(ip: str) -> bool:
    # Parsing an address costs a few microseconds; a drain of tracking hits asks thousands.
    try:
        return ipaddress.ip_address(ip) in APPLE_NETWORK
    except ValueError:
        return False


def machine_reason(
    *, user_agent: str, ip: str | None, sent_at: dt.datetime | None, occurred_at: dt.datetime, method: str = "GET"
) -> str:
    """Why this request looks automated, or "" when it looks human."""
    if method == "HEAD":
        return "head_request"
    agent = user_agent.strip()
    if not agent:
        return "no_user_agent"
    if agent == APPLE_PROXY_USER_AGENT:
        return "apple_privacy_proxy"
    if ip and _in_apple_network(ip):
        return "apple_privacy_proxy"
    if _is_scanner(agent):
        return "scanner_user_agent"
    if sent_at is not None and occurred_at - sent_at < TOO_FAST:
        return "too_fast_after_delivery"
    return ""
