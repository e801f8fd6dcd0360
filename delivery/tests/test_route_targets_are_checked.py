"""An organization's route reaches its provider's own API or a public mail server, nothing else:
provider options that name an address are refused, an SMTP host must resolve to public
addresses when the route is saved and again on each connection, and whatever a server answers
is kept as one short line. EMAIL_URL, the operator's, is trusted as it is."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.test import Client
from django.urls import reverse

from conftest import SmtpServer, free_port
from delivery import routing
from delivery.composer import ComposedMessage
from delivery.models import DeliveryRoute, Message
from delivery.tests.factories import DeliveryRouteFactory, many_messages, send
from delivery.transports import TransportUnavailable, open_transport
from delivery.transports.base import SUMMARY_LENGTH, summary
from delivery.transports.esp import backend_options
from delivery.transports.smtp import is_public_address
from emailseq.environment import parse_email_url
from organizations.models import Membership
from organizations.tests.factories import OrganizationFactory, member

pytestmark = pytest.mark.django_db

SECRET_ANSWER = "INTERNAL-ONLY: db_password=hunter2"


class InternalService:
    """An HTTP service inside the network, answering every POST with a long, private body."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                service.requests += 1
                body = ("\n".join([SECRET_ANSWER, *["more private lines " * 20] * 200])).encode()
                self.send_response(service.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture
def internal_service() -> Iterator[Callable[[int], InternalService]]:
    started: list[InternalService] = []

    def start(status: int) -> InternalService:
        service = InternalService(status)
        threading.Thread(target=service.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.server.shutdown()
        service.server.server_close()


@pytest.fixture
def private_hosts_refused(settings) -> None:
    settings.ROUTE_ALLOW_PRIVATE_HOSTS = False


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Names the resolver answers with the address given here (changeable during a test)."""
    answers: dict[str, str] = {}
    resolve = socket.getaddrinfo

    def getaddrinfo(host: str, port: object, *args: object, **kwargs: object) -> list:
        return resolve(answers.get(host, host), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def composed() -> ComposedMessage:
    return ComposedMessage(
        envelope_from="a@x.example",
        recipient="b@y.example",
        from_header="a@x.example",
        subject="s",
        text="t",
        html="<p>t</p>",
        extra_headers=[],
        links=[],
        message_id_header="<1@x.example>",
        dkim_signer=None,
    )


# Provider options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mailgun://key@?sender_domain=x.example&api_url=http://10.0.0.5:8080/",
        "mailgun://key@?sender_domain=x.example&API_URL=http://10.0.0.5:8080/",
        "postmark://token@?api_url=https://attacker.example/",
        "postmark://token@?debug_api_requests=true",
        "amazon-ses://?access_key_id=a&secret_access_key=b&client_params=x",
        "amazon-ses://?access_key_id=a&secret_access_key=b&session_params=x",
        "sendgrid://key@?requests_timeout=1",
        "mailgun://key@?sender_domain=x.example&region=internal",
        "amazon-ses://?access_key_id=a&secret_access_key=b&region_name=localhost:9000",
    ],
)
def test_a_route_cannot_set_a_provider_option_that_names_where_requests_go(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        routing.route_create(organization=OrganizationFactory(), name="r", url=url)

    assert list(refused.value.message_dict) == ["url"]
    assert not DeliveryRoute.objects.exists()


def test_the_admin_form_refuses_a_refused_option(client: Client) -> None:
    route = DeliveryRouteFactory(url="capture://")
    client.force_login(member(route.organization, Membership.Role.ADMIN))
    url = "postmark://token@?api_url=http://10.0.0.5/"

    page = client.post(
        reverse("admin:delivery_deliveryroute_change", args=[route.pk]),
        {"organization": route.organization_id, "name": route.name, "url": url, "priority": 0, "warmup_schedule": "[]"},
    )

    assert page.status_code == 200 and "api_url" in page.content.decode()
    route.refresh_from_db()
    assert route.url == "capture://"


@pytest.mark.parametrize(
    "url",
    ["postmark://", "mailgun://?sender_domain=x.example", "mailjet://public@", "amazon-ses://?region_name=eu-west-1"],
)
def test_a_provider_route_carries_its_own_credentials_rather_than_using_the_operators(url: str) -> None:
    with pytest.raises(ValidationError, match="credentials"):
        routing.route_create(organization=OrganizationFactory(), name="r", url=url)


def test_a_region_picks_the_providers_own_api_and_ses_credentials_go_into_its_session() -> None:
    mailgun = routing.route_config("mailgun://key@?sender_domain=x.example&region=eu")
    ses = routing.route_config("amazon-ses://?access_key_id=AKIA&secret_access_key=s&region_name=eu-west-1")

    assert backend_options(mailgun) == {
        "api_key": "key",
        "sender_domain": "x.example",
        "api_url": "https://api.eu.mailgun.net/v3/",
    }
    assert backend_options(ses) == {
        "session_params": {"aws_access_key_id": "AKIA", "aws_secret_access_key": "s", "region_name": "eu-west-1"}
    }


def test_the_operators_email_url_keeps_every_option(tmp_path: Path) -> None:
    config = parse_email_url("EMAIL_URL", "postmark://t@?api_url=http://10.0.0.5/", mailbox_default=tmp_path)

    assert backend_options(config)["api_url"] == "http://10.0.0.5/" and not config.public_hosts_only


def test_a_stored_route_naming_an_internal_service_is_never_used(
    internal_service: Callable[[int], InternalService],
) -> None:
    service = internal_service(400)
    organization = OrganizationFactory()
    # Written before routes were checked: the send path parses it again and skips it.
    DeliveryRouteFactory(
        organization=organization, kind="anymail", url=f"mailgun://k@?sender_domain=x.example&api_url={service.url}"
    )
    messages = many_messages(organization, 2)

    report = send(*messages)

    assert report.sent == 0 and service.requests == 0
    assert not Message.objects.filter(response__contains="hunter2").exists()


# SMTP hosts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::1]",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.251",
        "[::ffff:127.0.0.1]",
        "[fe80::1]",
        "[fd00::1]",
    ],
)
def test_an_smtp_route_to_a_private_address_is_refused(private_hosts_refused: None, host: str) -> None:
    with pytest.raises(ValidationError, match="not a public address"):
        routing.route_create(organization=OrganizationFactory(), name="r", url=f"smtp://{host}:25")


def test_a_name_that_resolves_to_a_private_address_is_refused(private_hosts_refused: None, dns: dict) -> None:
    dns["relay.example.com"] = "127.0.0.1"

    with pytest.raises(ValidationError, match="relay.example.com resolves to 127.0.0.1"):
        routing.route_create(organization=OrganizationFactory(), name="r", url="smtp://relay.example.com:25")


def test_a_public_address_is_accepted_and_private_ones_when_allowed(settings, dns: dict) -> None:
    settings.ROUTE_ALLOW_PRIVATE_HOSTS = False
    dns["relay.example.com"] = "93.184.215.14"
    public = routing.route_create(organization=OrganizationFactory(), name="r", url="smtp://relay.example.com:25")
    settings.ROUTE_ALLOW_PRIVATE_HOSTS = True
    lan = routing.route_create(organization=OrganizationFactory(), name="r", url="smtp://10.0.0.5:25")

    assert (public.kind, lan.kind) == ("smtp", "smtp")
    assert is_public_address("2a00:1450:4001:82a::200e") and not is_public_address("fe80::1%eth0")


def test_a_name_that_turns_private_after_saving_is_refused_when_connecting(
    private_hosts_refused: None, dns: dict, smtp_server: SmtpServer
) -> None:
    organization = OrganizationFactory()
    dns["relay.example.com"] = "93.184.215.14"
    route = routing.route_create(
        organization=organization, name="r", url=f"smtp://relay.example.com:{smtp_server.port}"
    )
    dns["relay.example.com"] = "127.0.0.1"  # where the test server listens

    report = send(*many_messages(organization, 2))

    assert report.sent == 0 and smtp_server.received == []
    route.refresh_from_db()
    assert "not a public address" in route.last_error
    with (
        pytest.raises(TransportUnavailable, match="not a public address"),
        open_transport(routing.route_config(route.url)),
    ):
        pass


def test_a_route_url_that_is_not_one_stays_an_improper_configuration() -> None:
    with pytest.raises(ImproperlyConfigured):
        routing.route_config_checked("smtp://")


# Answers kept ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 503])
def test_a_providers_answer_is_kept_as_one_short_line(
    settings, internal_service: Callable[[int], InternalService], status: int
) -> None:
    service = internal_service(status)
    # The operator may point a provider elsewhere (settings.ANYMAIL); the route only brings its key.
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_API_URL": service.url}
    config = routing.route_config("postmark://token@")

    with open_transport(config) as transport:
        try:
            kept = transport.send(composed(), organization_id=1).response
        except TransportUnavailable as unavailable:
            kept = str(unavailable)

    assert service.requests == 1
    assert str(status) in kept and SECRET_ANSWER[:14] in kept
    assert "\n" not in kept and len(kept) <= SUMMARY_LENGTH


def test_a_long_smtp_reply_is_kept_as_one_short_line() -> None:
    reply = "550-5.1.1 The account does not exist\n" + "550-5.1.1 " + "x" * 5000 + "\n550 5.1.1 end"

    kept = summary(reply)

    assert kept.startswith("550-5.1.1 The account does not exist 550-5.1.1 xxx")
    assert len(kept) == SUMMARY_LENGTH and "\n" not in kept
