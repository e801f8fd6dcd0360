"""The live streams (/ws/analytics, /ws/events, /ws/notifications) through the real ASGI
application: who may connect (a session, an API key, a JWT), which organization and sequence a
connection follows, and what it receives, frame by frame, as JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from analytics import live
from conftest import free_port
from emailseq.asgi import application
from organizations.models import Membership, Organization
from organizations.services import api_key_create, api_key_revoke
from organizations.tests.factories import MembershipFactory, OrganizationFactory, member
from sequences.tests.factories import SequenceFactory

pytestmark = pytest.mark.django_db(transaction=True)

OWN_ORIGIN = (b"origin", b"http://127.0.0.1:8000")
NOTHING_FOR = 0.3


def session_cookie(user: Any) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return (b"cookie", f"{name}={client.cookies[name].value}".encode())


def api_key(organization: Organization, scope: str = "read") -> str:
    return api_key_create(organization=organization, name="Dashboard", scope=scope)[1]


def open_event(organization_id: int, sequence_id: int | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "sequence_id": sequence_id,
        "step_id": 7,
        "message_id": 42,
        "type": "open",
        "occurred_at": "2026-03-01T12:00:00+00:00",
        "is_machine": False,
        "url": "",
    } | fields


class Connection:
    """A WebSocket client of the application: what it was told when it connected, and what came."""

    def __init__(self, path: str, headers: list[tuple[bytes, bytes]], subprotocols: list[str] | None = None) -> None:
        self.communicator = WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)
        self.subprotocol: str | None = None

    async def open(self) -> int | None:
        """None when the connection stays open, else the close code it got."""
        connected, self.subprotocol = await self.communicator.connect(timeout=3)
        assert connected
        return await self.close_code()

    async def close_code(self) -> int | None:
        if await self.communicator.receive_nothing(timeout=0.2):
            return None
        output = await self.communicator.receive_output(timeout=1)
        if output["type"] == "websocket.close":
            return output.get("code")
        self.communicator.output_queue.put_nowait(output)  # a frame: keep it for receive()
        return None

    async def receive(self) -> dict[str, Any]:
        return json.loads(await self.communicator.receive_from(timeout=2))

    async def receive_nothing(self) -> bool:
        return await self.communicator.receive_nothing(timeout=NOTHING_FOR)

    async def close(self) -> None:
        await self.communicator.disconnect()


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(scenario)()


async def publish_events(*events: dict[str, Any]) -> None:
    # From a worker thread, as a sync view or service calls it.
    await sync_to_async(live.events_publish)(list(events))


def close_code_of(path: str, headers: list[tuple[bytes, bytes]], subprotocols: list[str] | None = None) -> int | None:
    async def scenario() -> int | None:
        connection = Connection(path, headers, subprotocols)
        code = await connection.open()
        await connection.close()
        return code

    return run(scenario)


# Who may connect -----------------------------------------------------------------------------


def test_a_connection_without_a_session_or_token_is_closed_as_unauthenticated() -> None:
    for path in ("/ws/analytics/", "/ws/events/", "/ws/notifications/"):
        assert close_code_of(path, [OWN_ORIGIN]) == 4401, path


def test_a_token_that_does_not_verify_is_refused_even_beside_a_valid_session() -> None:
    organization = OrganizationFactory()
    cookie = session_cookie(member(organization))
    revoked, raw = api_key_create(organization=organization, name="Old", scope="read")
    api_key_revoke(api_key=revoked)

    assert close_code_of("/ws/events/", [OWN_ORIGIN, cookie, (b"authorization", b"Bearer esk_00000000_nope")]) == 4401
    assert close_code_of("/ws/events/?token=not-a-jwt", [OWN_ORIGIN, cookie]) == 4401
    assert close_code_of("/ws/events/", [OWN_ORIGIN, cookie, (b"authorization", f"Api-Key {raw}".encode())]) == 4401


def refused_before_the_consumer(headers: list[tuple[bytes, bytes]]) -> bool:
    async def scenario() -> bool:
        connected, _ = await WebsocketCommunicator(application, "/ws/events/", headers=headers).connect(timeout=3)
        return not connected

    return run(scenario)


def test_a_foreign_origin_is_refused_even_with_a_session_or_a_token() -> None:
    organization = OrganizationFactory()
    foreign = (b"origin", b"https://attacker.example")

    assert refused_before_the_consumer([foreign, session_cookie(member(organization))])
    assert refused_before_the_consumer([foreign, (b"authorization", f"Bearer {api_key(organization)}".encode())])


def test_without_an_origin_only_a_token_holder_gets_through() -> None:
    organization = OrganizationFactory()

    # Browsers always send Origin; a client without one is a script, which has no victim's cookie.
    assert refused_before_the_consumer([session_cookie(member(organization))])
    assert close_code_of("/ws/events/", [(b"authorization", f"Bearer {api_key(organization)}".encode())]) is None


# Which organization and sequence --------------------------------------------------------------


def test_a_member_follows_their_organization_and_nothing_of_another() -> None:
    ours, theirs = OrganizationFactory(), OrganizationFactory()
    cookie = session_cookie(member(ours, Membership.Role.VIEWER))

    async def scenario() -> tuple[dict[str, Any], bool]:
        connection = Connection("/ws/events/", [OWN_ORIGIN, cookie])
        assert await connection.open() is None
        await publish_events(open_event(theirs.pk))
        nothing = await connection.receive_nothing()
        await publish_events(open_event(ours.pk, url="https://shop.example.com/"))
        frame = await connection.receive()
        await connection.close()
        return frame, nothing

    frame, nothing_of_theirs = run(scenario)

    assert nothing_of_theirs
    assert frame == {"type": "event", "event": open_event(ours.pk, url="https://shop.example.com/")}


def test_a_member_of_several_organizations_names_one_and_may_only_name_their_own() -> None:
    first, second, foreign = OrganizationFactory(), OrganizationFactory(), OrganizationFactory()
    user = member(first)
    MembershipFactory(user=user, organization=second)
    cookie = session_cookie(user)

    assert close_code_of("/ws/events/", [OWN_ORIGIN, cookie]) == 4400
    assert close_code_of(f"/ws/events/?organization={second.pk}", [OWN_ORIGIN, cookie]) is None
    assert close_code_of(f"/ws/events/?organization={second.slug}", [OWN_ORIGIN, cookie]) is None
    assert close_code_of(f"/ws/events/?organization={foreign.pk}", [OWN_ORIGIN, cookie]) == 4403
    assert close_code_of("/ws/events/?organization=999999", [OWN_ORIGIN, cookie]) == 4403


def test_a_user_of_no_organization_is_forbidden() -> None:
    outsider = MembershipFactory().user
    Membership.objects.filter(user=outsider).delete()

    assert close_code_of("/ws/events/", [OWN_ORIGIN, session_cookie(outsider)]) == 4403


@pytest.mark.parametrize("carried_in", ["authorization-bearer", "authorization-api-key", "query", "subprotocol"])
def test_an_api_key_follows_its_own_organization_however_it_is_presented(carried_in: str) -> None:
    ours, theirs = OrganizationFactory(), OrganizationFactory()
    key = api_key(ours)
    headers, subprotocols, query = [OWN_ORIGIN], None, ""
    if carried_in == "authorization-bearer":
        headers.append((b"authorization", f"Bearer {key}".encode()))
    elif carried_in == "authorization-api-key":
        headers.append((b"authorization", f"Api-Key {key}".encode()))
    elif carried_in == "query":
        query = f"?token={key}"
    else:
        subprotocols = ["emailseq", f"token.{key}"]

    async def scenario() -> tuple[str | None, dict[str, Any], bool]:
        connection = Connection(f"/ws/events/{query}", headers, subprotocols)
        assert await connection.open() is None
        await publish_events(open_event(theirs.pk), open_event(ours.pk, message_id=1))
        frame = await connection.receive()
        nothing_more = await connection.receive_nothing()
        await connection.close()
        return connection.subprotocol, frame, nothing_more

    subprotocol, frame, nothing_more = run(scenario)

    assert frame["event"]["organization_id"] == ours.pk and frame["event"]["message_id"] == 1
    assert nothing_more
    # A browser only keeps a socket whose server picked one of the subprotocols it offered.
    assert subprotocol == ("emailseq" if carried_in == "subprotocol" else None)


def test_an_api_key_cannot_ask_for_another_organization() -> None:
    ours, theirs = OrganizationFactory(), OrganizationFactory()
    bearer = (b"authorization", f"Bearer {api_key(ours)}".encode())

    assert close_code_of(f"/ws/events/?organization={theirs.pk}", [OWN_ORIGIN, bearer]) == 4403
    assert close_code_of(f"/ws/events/?organization={ours.pk}", [OWN_ORIGIN, bearer]) is None


def test_a_jwt_access_token_authenticates_its_user() -> None:
    organization = OrganizationFactory()
    token = str(AccessToken.for_user(member(organization)))

    assert close_code_of("/ws/events/", [OWN_ORIGIN, (b"authorization", f"Bearer {token}".encode())]) is None
    assert close_code_of(f"/ws/events/?token={token}", [OWN_ORIGIN]) is None


def test_a_sequence_subscription_receives_only_that_sequences_events() -> None:
    organization, other = OrganizationFactory(), OrganizationFactory()
    followed, unfollowed = SequenceFactory(organization=organization), SequenceFactory(organization=organization)
    foreign = SequenceFactory(organization=other)
    cookie = session_cookie(member(organization))

    async def scenario() -> list[dict[str, Any]]:
        connection = Connection(f"/ws/events/?sequence={followed.pk}", [OWN_ORIGIN, cookie])
        assert await connection.open() is None
        await publish_events(
            open_event(organization.pk, unfollowed.pk),
            open_event(organization.pk, None),
            open_event(organization.pk, followed.pk, type="click", url="https://docs.example.com/"),
            open_event(organization.pk, followed.pk, type="open", is_machine=True),
        )
        frames = [await connection.receive(), await connection.receive()]
        assert await connection.receive_nothing()
        await connection.close()
        return frames

    frames = run(scenario)

    assert [(f["event"]["sequence_id"], f["event"]["type"], f["event"]["is_machine"]) for f in frames] == [
        (followed.pk, "click", False),
        (followed.pk, "open", True),
    ]
    assert close_code_of(f"/ws/events/?sequence={foreign.pk}", [OWN_ORIGIN, cookie]) == 4403
    assert close_code_of("/ws/events/?sequence=abc", [OWN_ORIGIN, cookie]) == 4400


# What each stream sends ----------------------------------------------------------------------


def test_analytics_starts_with_a_snapshot_of_the_totals_then_sends_counter_deltas() -> None:
    organization, other = OrganizationFactory(), OrganizationFactory()
    sequence = SequenceFactory(organization=organization)
    cookie = session_cookie(member(organization))

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        whole = Connection("/ws/analytics/", [OWN_ORIGIN, cookie])
        one = Connection(f"/ws/analytics/?sequence={sequence.pk}", [OWN_ORIGIN, cookie])
        assert await whole.open() is None and await one.open() is None
        snapshot, sequence_snapshot = await whole.receive(), await one.receive()
        await sync_to_async(live.counters_publish)(other.pk, None, {"opened": 5})
        await sync_to_async(live.counters_publish)(organization.pk, sequence.pk, {"opened": 2, "clicked": 0})
        delta, sequence_delta = await whole.receive(), await one.receive()
        assert await whole.receive_nothing() and await one.receive_nothing()
        await whole.close()
        await one.close()
        return snapshot, sequence_snapshot, delta, sequence_delta

    snapshot, sequence_snapshot, delta, sequence_delta = run(scenario)

    assert snapshot["type"] == "snapshot"
    assert (snapshot["organization_id"], snapshot["sequence_id"]) == (organization.pk, None)
    assert (sequence_snapshot["organization_id"], sequence_snapshot["sequence_id"]) == (organization.pk, sequence.pk)
    assert snapshot["totals"]["opened"] == 0 and sequence_snapshot["totals"]["sent"] == 0
    expected = {
        "type": "counters",
        "organization_id": organization.pk,
        "sequence_id": sequence.pk,
        "deltas": {"opened": 2},
    }
    assert delta == expected and sequence_delta == expected


def test_notifications_reach_the_organization_only_and_have_no_sequence_view() -> None:
    organization, other = OrganizationFactory(), OrganizationFactory()
    cookie = session_cookie(member(organization))

    async def scenario() -> dict[str, Any]:
        connection = Connection("/ws/notifications/", [OWN_ORIGIN, cookie])
        assert await connection.open() is None
        await sync_to_async(live.notification_publish)(other.pk, kind="import", title="Theirs", data={})
        await sync_to_async(live.notification_publish)(
            organization.pk, kind="experiment", title="Variant B wins", data={"experiment_id": 3, "lift": 0.12}
        )
        frame = await connection.receive()
        assert await connection.receive_nothing()
        await connection.close()
        return frame

    frame = run(scenario)

    assert frame.pop("created_at")
    assert frame == {
        "type": "notification",
        "organization_id": organization.pk,
        "kind": "experiment",
        "title": "Variant B wins",
        "data": {"experiment_id": 3, "lift": 0.12},
    }
    sequence = SequenceFactory(organization=organization)
    assert close_code_of(f"/ws/notifications/?sequence={sequence.pk}", [OWN_ORIGIN, cookie]) == 4400


def test_what_the_client_sends_is_ignored() -> None:
    organization = OrganizationFactory()
    cookie = session_cookie(member(organization))

    async def scenario() -> dict[str, Any]:
        connection = Connection("/ws/events/", [OWN_ORIGIN, cookie])
        assert await connection.open() is None
        await connection.communicator.send_to(text_data="not json {")
        await publish_events(open_event(organization.pk))
        frame = await connection.receive()
        await connection.close()
        return frame

    assert run(scenario)["event"]["organization_id"] == organization.pk


# Publishing ----------------------------------------------------------------------------------


def test_payloads_round_trip_through_json_whatever_the_caller_passes() -> None:
    import datetime as dt
    from decimal import Decimal

    payload = live.event_payload(
        {
            "organization_id": "3",
            "sequence_id": None,
            "type": "click",
            "occurred_at": dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC),
            "is_machine": 0,
            "url": "https://example.com/",
        }
    )
    frame = live.frame_json({"type": "notification", "data": {"revenue": Decimal("12.50")}})

    assert (
        json.loads(json.dumps(payload))
        == payload
        == {
            "organization_id": 3,
            "sequence_id": None,
            "step_id": None,
            "message_id": None,
            "type": "click",
            "occurred_at": "2026-03-01T12:00:00+00:00",
            "is_machine": False,
            "url": "https://example.com/",
        }
    )
    assert json.loads(frame) == {"type": "notification", "data": {"revenue": "12.50"}}


def test_a_channel_layer_that_is_down_is_logged_and_never_breaks_the_caller(settings, caplog) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }

    with caplog.at_level(logging.ERROR, logger="analytics.live"):
        live.events_publish([open_event(1, 2)])
        live.counters_publish(1, None, {"sent": 1})
        live.notification_publish(1, kind="import", title="Done", data={})

    assert [record.getMessage() for record in caplog.records] == [
        "live: could not publish 1 message(s) to the channel layer"
    ] * 3


def test_the_flush_sends_counter_deltas_revenue_included() -> None:
    from django.utils import timezone

    from analytics import services
    from delivery.tests.factories import email_sequence
    from sequences import services as sequence_services
    from sequences.models import Sequence
    from subscribers.services import NewContactEvent, contact_events_ingest
    from subscribers.tests.factories import ContactFactory

    organization = OrganizationFactory()
    sequence = email_sequence(organization)
    Sequence.objects.filter(pk=sequence.pk).update(goal={"type": "event", "name": "purchased"})
    contact = ContactFactory(organization=organization)
    cookie = session_cookie(member(organization))

    async def scenario() -> list[dict[str, Any]]:
        dashboard = Connection(f"/ws/analytics/?sequence={sequence.pk}", [OWN_ORIGIN, cookie])
        assert await dashboard.open() is None
        await dashboard.receive()  # the snapshot

        def purchase() -> None:
            sequence_services.enrollments_create(sequence=Sequence.objects.get(pk=sequence.pk), contacts=[contact])
            contact_events_ingest(
                organization=organization,
                events=[
                    NewContactEvent(
                        index=0,
                        name="purchased",
                        occurred_at=timezone.now(),  # after the enrollment began
                        properties={"revenue": 12.5},
                        contact_id=contact.pk,
                    )
                ],
            )
            services.rollups_flush()

        await sync_to_async(purchase)()
        frames = [await dashboard.receive()]
        await dashboard.close()
        return frames

    [frame] = run(scenario)

    assert frame["type"] == "counters" and frame["sequence_id"] == sequence.pk
    assert frame["deltas"] == {"enrolled": 1, "goal_reached": 1, "revenue": "12.50"}
