"""emailseq.asgi.application serves HTTP through Django and WebSockets through Channels, which
accept only the routes they know, from the installation's own origins."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator, WebsocketCommunicator

from emailseq.asgi import application

OWN_ORIGIN = b"http://127.0.0.1:8000"


async def http_get(path: str) -> dict:
    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"127.0.0.1")])
    return await communicator.get_response(timeout=10)


async def websocket_connect(path: str, origin: bytes | None) -> str:
    """'accepted', 'closed <code>', or 'failed: <error>' (no route: the server drops the handshake)."""
    communicator = WebsocketCommunicator(application, path, headers=[(b"origin", origin)] if origin else [])
    try:
        connected, code = await communicator.connect(timeout=1)
    except ValueError as error:
        return f"failed: {error}"
    if connected:
        await communicator.disconnect()
        return "accepted"
    return f"closed {code}"


@pytest.mark.django_db(transaction=True)
def test_http_requests_reach_django() -> None:
    response = async_to_sync(http_get)("/healthz")

    assert response["status"] == 200
    assert response["body"] == b'{"status": "ok"}'
    assert (b"X-Frame-Options", b"DENY") in response["headers"]


@pytest.mark.django_db(transaction=True)
def test_an_unknown_websocket_path_is_refused_even_from_the_own_origin() -> None:
    outcome = async_to_sync(websocket_connect)("/ws/no-such-feed/", OWN_ORIGIN)

    assert outcome == "failed: No route found for path 'ws/no-such-feed/'."


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", [b"https://attacker.example", None], ids=["foreign-origin", "no-origin"])
def test_a_websocket_from_a_foreign_or_missing_origin_is_closed_before_routing(origin: bytes | None) -> None:
    outcome = async_to_sync(websocket_connect)("/ws/no-such-feed/", origin)

    assert outcome.startswith("closed")
