"""The SMTP route speaks the envelope itself: pipelined when the server offers PIPELINING, one
command at a time otherwise, with the same outcomes either way, over one connection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import SmtpServer
from deliverability import verp
from delivery.composer import Recipient, Skeleton
from delivery.transports import Outcome, TransportUnavailable
from delivery.transports.smtp import SmtpTransport
from emailseq.environment import EmailConfig

TEXT = "First line\n.A line that starts with a dot\n..and one with two\n.\nThe end"


@pytest.fixture(params=[True, False], ids=["pipelined", "one-command-at-a-time"])
def server(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    server = SmtpServer(pipelining=request.param)
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


def transport_for(server: SmtpServer) -> SmtpTransport:
    return SmtpTransport(EmailConfig(kind="smtp", host="127.0.0.1", port=server.port, timeout=10))


def message_to(address: str, message_id: int = 1):
    skeleton = Skeleton(
        subject="Hello",
        html_body="<p>Hello</p>",
        text_body=TEXT,
        from_name="Sender",
        from_email="sender@example.com",
        reply_to="",
        track_opens=False,
        track_clicks=False,
        organization_id=1,
        organization_name="Acme",
        postal_address="1 Street",
        sequence_id=1,
    )
    recipient = Recipient(message_id, message_id, address, "Ann", "", {}, "")
    return skeleton.compose(recipient, date_header="Tue, 24 Nov 2026 12:00:00 +0000")


def test_the_transport_uses_pipelining_exactly_when_the_server_offers_it(server: SmtpServer) -> None:
    with transport_for(server) as transport:
        assert transport.pipelining is server.handler.pipelining


@pytest.mark.django_db
def test_lines_starting_with_a_dot_arrive_unchanged(server: SmtpServer) -> None:
    with transport_for(server) as transport:
        result = transport.send(message_to("ann@example.com"), organization_id=1)

    assert result.outcome is Outcome.ACCEPTED and result.response.startswith("250")
    [mail] = server.received
    # The envelope sender is the message's VERP return path, where its bounces come back.
    assert mail.mail_from == verp.return_path(1) and mail.recipients == ("ann@example.com",)
    assert mail.text().replace("\r\n", "\n").startswith(TEXT + "\n")


@pytest.mark.django_db
def test_refused_recipients_are_classified_and_the_connection_goes_on(server: SmtpServer) -> None:
    server.reply_to_rcpt("busy@example.com", "451 4.7.1 Try again later")
    server.reply_to_rcpt("gone@example.com", "550 5.1.1 User unknown")

    with transport_for(server) as transport:
        busy = transport.send(message_to("busy@example.com", 1), organization_id=1)
        gone = transport.send(message_to("gone@example.com", 2), organization_id=1)
        fine = transport.send(message_to("fine@example.com", 3), organization_id=1)

    assert (busy.outcome, busy.response) == (Outcome.TRANSIENT, "451 4.7.1 Try again later")
    assert (gone.outcome, gone.response) == (Outcome.PERMANENT, "550 5.1.1 User unknown")
    assert fine.outcome is Outcome.ACCEPTED
    assert [mail.recipients for mail in server.received] == [("fine@example.com",)]


@pytest.mark.django_db
def test_a_server_closing_the_session_makes_the_route_unavailable(server: SmtpServer) -> None:
    server.reply_to_rcpt("closing@example.com", "421 4.3.2 Service shutting down")

    with transport_for(server) as transport:
        with pytest.raises(TransportUnavailable, match="421"):
            transport.send(message_to("closing@example.com"), organization_id=1)
        with pytest.raises(TransportUnavailable):
            transport.send(message_to("next@example.com", 2), organization_id=1)

    assert server.received == []
