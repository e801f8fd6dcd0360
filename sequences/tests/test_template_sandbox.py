"""Templates are untrusted code (marketers write them). Whatever a template tries, it reaches
nothing outside its context (no Python internals, settings, files or environment): the attempt
is refused at save with its line and column, or renders to nothing. Runaway templates (endless
loops, output or values that explode in size) stop quickly with RenderError, and when sent they
fail only their own message."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from conftest import REPO, SmtpServer, process_env
from delivery.models import Message
from organizations.tests.factories import OrganizationFactory
from sequences import services
from sequences.models import EmailTemplate, Enrollment, Step
from sequences.personalization import (
    CompiledTemplate,
    RenderError,
    contact_context,
    organization_context,
    template_problems,
)
from sequences.tests.helpers import draft_sequence, tick
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

CANARY_VARIABLE = "EMAILSEQ_SANDBOX_CANARY"

ESCAPES = [
    "{{ contact.__class__ }}",
    "{{ contact.__class__.__mro__ }}",
    "{{ contact.__class__.__mro__[1].__subclasses__ }}",
    "{{ contact.properties.__init__.__globals__ }}",
    "{{ contact.email.__class__.__base__.__subclasses__ }}",
    "{{ contact['__class__'] }}",
    "{{ contact.properties['__dict__'] }}",
    "{{ contact.__dict__ }}",
    "{{ contact.items }}",
    "{{ contact.properties.keys }}",
    "{{ contact.email.upper }}",
    "{{ organization.__class__.__init__.__globals__.settings.SECRET_KEY }}",
    "{{ settings.SECRET_KEY }}",
    "{{ settings }}",
    "{{ os.environ }}",
    "{{ environ.HOME }}",
    "{{ __builtins__ }}",
    "{{ __import__ }}",
    "{{ self }}",
    "{{ request.META }}",
    "{{ context }}",
    "{{ environment }}",
    "{{ forloop.parentloop }}",
    "{% assign g = contact.__init__.__globals__ %}{{ g.os.environ }}",
    "{% capture s %}{{ contact.email.__class__ }}{% endcapture %}{{ s }}",
    "{% for item in contact.__class__.__mro__ %}{{ item }}{% endfor %}",
    "{% liquid echo contact.__class__.__mro__ %}",
    "{% echo os.environ %}",
    "{% cycle contact.__class__, os.environ %}",
    "{{ contact.properties.missing | default: settings.SECRET_KEY }}",
    "{% include '/etc/passwd' %}",
    "{% include 'templates/base.html' %}",
    "{% render 'x' %}",
    "{% render '/etc/passwd' %}",
    "{% render 'x' with contact as c %}",
    "{% extends '/etc/passwd' %}",
    "{% block body %}{% endblock %}",
    "{% macro leak %}{{ settings }}{% endmacro %}",
    "{{ contact | attr: 'x' }}",
    "{{ contact.email | attr: '__class__' }}",
    "{{ '' | getattr: '__globals__' }}",
    "{{ 'id' | system }}",
    "{{ '/etc/passwd' | read_file }}",
    "{{ 'os' | import }}",
    "{{ contact | json }}",
    "{{ contact | inspect }}",
    "{{ contact.email | unknown_filter }}",
]


def context() -> dict[str, object]:
    return {
        "contact": contact_context(
            email="ada@example.com", first_name="Ada", last_name="Lovelace", properties={"plan": "pro"}, timezone=""
        ),
        "organization": organization_context(name="Acme", postal_address="1 Example Street"),
        "unsubscribe_url": "https://example.com/u/token",
    }


def passwd_line() -> str:
    lines = [line for line in Path("/etc/passwd").read_text().splitlines() if line and not line.startswith("#")]
    return lines[0]


@pytest.fixture
def secrets_to_guard(monkeypatch) -> list[str]:
    canary = f"canary-{secrets.token_hex(8)}"
    monkeypatch.setenv(CANARY_VARIABLE, canary)
    assert len(settings.SECRET_KEY) >= 20
    return [settings.SECRET_KEY, canary, passwd_line(), str(settings.BASE_DIR), "<class", "object at 0x"]


@pytest.mark.parametrize("payload", ESCAPES)
def test_a_template_reaching_outside_its_context_is_refused_or_renders_nothing(
    payload: str, secrets_to_guard: list[str]
) -> None:
    source = f"<p>before</p>\n<p>[{payload}]</p>"
    problems = template_problems(source)

    if problems:
        with pytest.raises(ValidationError) as error:
            services.template_create(organization=OrganizationFactory(), name="Probe", subject="Hi", html_body=source)
        [message] = error.value.message_dict["html_body"]
        assert message.startswith("line 2, column ")
        output = message
    else:
        output = CompiledTemplate(source).render(context())
        assert output == "<p>before</p>\n<p>[]</p>"
    for secret in secrets_to_guard:
        assert secret not in output


def test_an_email_full_of_escape_attempts_sends_none_of_the_secrets(
    smtp_route: SmtpServer, secrets_to_guard: list[str], django_capture_on_commit_callbacks
) -> None:
    accepted = [payload for payload in ESCAPES if not template_problems(payload)]
    assert len(accepted) >= 25
    html = "<html><body>" + "".join(f"<p>[{i}:{payload}]</p>" for i, payload in enumerate(accepted)) + "</body></html>"
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    services.step_create(
        sequence=sequence,
        kind=Step.Kind.EMAIL,
        template=services.template_create(
            organization=organization,
            name="Escapes",
            subject="Hi {{ settings.SECRET_KEY }}{{ os.environ }}",
            html_body=html,
        ),
    )
    services.sequence_activate(sequence=sequence)
    services.enrollment_create(sequence=sequence, contact=ContactFactory(organization=organization))

    tick(django_capture_on_commit_callbacks)

    [mail] = smtp_route.received
    raw = mail.data.decode("utf-8", "replace")
    body = mail.html() + mail.text()
    for index in range(len(accepted)):
        assert f"[{index}:]" in body
    for secret in secrets_to_guard:
        assert secret not in raw
        assert secret not in body
    assert mail.parsed()["Subject"] == "Hi"


def test_a_contacts_own_data_is_inserted_as_text_never_run_as_markup() -> None:
    sneaky = "{{ settings.SECRET_KEY }}{% for i in (1..1000000000) %}x{% endfor %}"

    output = CompiledTemplate("Hi {{ contact.first_name }}, {{ contact.properties.note }}").render(
        {
            "contact": contact_context(
                email="a@example.com", first_name=sneaky, last_name="", properties={"note": sneaky}, timezone=""
            )
        }
    )

    assert output == f"Hi {sneaky}, {sneaky}"


# Runaway templates ---------------------------------------------------------------------------

RUNAWAYS = {
    "endless-loop": "{% for i in (1..1000000000) %}x{% endfor %}",
    "endless-empty-loop": "{% for i in (1..1000000000) %}{% endfor %}",
    "endless-tablerow": "{% tablerow i in (1..1000000000) %}x{% endtablerow %}",
    "huge-nested-loops": (
        "{% for a in (1..100000) %}{% for b in (1..100000) %}{% for c in (1..100000) %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    ),
    "nested-loops-each-small": "{% for a in (1..1000) %}{% for b in (1..1000) %}x{% endfor %}{% endfor %}",
    "append-doubling": "{% assign s = 'x' %}{% for i in (1..64) %}{% assign s = s | append: s %}{% endfor %}{{ s }}",
    "capture-doubling": (
        "{% capture s %}x{% endcapture %}{% for i in (1..64) %}{% capture s %}{{ s }}{{ s }}{% endcapture %}"
        "{% endfor %}{{ s | size }}"
    ),
    "concat-doubling": (
        "{% assign a = 'x,y' | split: ',' %}{% for i in (1..64) %}{% assign a = a | concat: a %}{% endfor %}"
        "{{ a | size }}"
    ),
    "number-squaring": "{% assign n = 2 %}{% for i in (1..64) %}{% assign n = n | times: n %}{% endfor %}{{ n }}",
    "output-flood": "{% for i in (1..9999) %}<p>" + "x" * 200 + "</p>{% endfor %}",
}


@pytest.mark.parametrize("source", RUNAWAYS.values(), ids=RUNAWAYS.keys())
def test_a_runaway_template_is_stopped_quickly_with_a_render_error(source: str) -> None:
    assert template_problems(source) == []
    compiled = CompiledTemplate(source)
    started = time.monotonic()

    with pytest.raises(RenderError):
        compiled.render(context())

    assert time.monotonic() - started < 2


# One filter call that multiplies sizes the other limits allow: the namespace limit keeps an
# assigned string near 131,072 characters and loops are capped, but `replace` or `join` with
# that string as argument builds its square (17 GB), and a chain of `times` squares numbers.
# Rendered in a child process with its address space and time capped, so a sandbox that lets
# the value grow fails this test with MemoryError or a timeout, not the machine.
MULTIPLIED = {
    "replace-with-itself": (
        "{% assign a = 'x' %}{% for i in (1..17) %}{% assign a = a | append: a %}{% endfor %}"
        "{{ a | replace: 'x', a | size }}"
    ),
    "join-with-itself": (
        "{% assign a = 'x' %}{% for i in (1..17) %}{% assign a = a | append: a %}{% endfor %}"
        "{{ a | split: '' | join: a | size }}"
    ),
    "times-chain": (
        "{% assign n = 10 %}{% for i in (1..17) %}{% assign n = n | times: n %}{% endfor %}"
        "{{ n" + " | times: n" * 60 + " | at_least: 0 | size }}"
    ),
}

RENDER_IN_A_CAPPED_PROCESS = """
import json, resource, signal, sys, time
import django
django.setup()
from sequences.personalization import CompiledTemplate, RenderError
source = sys.stdin.read()
compiled = CompiledTemplate(source)
cap = 1536 * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

def out_of_time(signum, frame):
    raise TimeoutError

signal.signal(signal.SIGALRM, out_of_time)
signal.alarm(5)
started = time.monotonic()
try:
    compiled.render({})
    outcome = "rendered"
except RenderError:
    outcome = "RenderError"
except MemoryError:
    outcome = "MemoryError"
except TimeoutError:
    outcome = "still rendering after 5 s"
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - started}))
"""


@pytest.mark.parametrize("source", MULTIPLIED.values(), ids=MULTIPLIED.keys())
def test_a_value_multiplied_by_one_filter_is_stopped_with_a_render_error(source: str, tmp_path: Path) -> None:
    assert template_problems(source) == []
    env = process_env(tmp_path) | {"DJANGO_SETTINGS_MODULE": "emailseq.settings"}

    result = subprocess.run(
        [sys.executable, "-c", RENDER_IN_A_CAPPED_PROCESS],
        input=source,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "RenderError"
    assert report["seconds"] < 2


def test_a_runaway_template_fails_only_its_own_message_when_sent(
    smtp_route: SmtpServer, django_capture_on_commit_callbacks
) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    html = "<html><body><p>Hi {{ contact.first_name }}{% for i in (1..contact.properties.cheers) %}!{% endfor %}</p></body></html>"
    services.step_create(
        sequence=sequence,
        kind=Step.Kind.EMAIL,
        template=services.template_create(organization=organization, name="Cheers", subject="Hi", html_body=html),
    )
    services.step_create(sequence=sequence, kind=Step.Kind.DELAY, delay=dt.timedelta(days=1))
    services.sequence_activate(sequence=sequence)
    first = ContactFactory(organization=organization, first_name="Ada", properties={"cheers": 3})
    runaway = ContactFactory(organization=organization, properties={"cheers": 1_000_000_000})
    last = ContactFactory(organization=organization, first_name="Alan", properties={"cheers": 1})
    services.enrollments_create(sequence=sequence, contacts=[first, runaway, last])

    started = time.monotonic()
    tick(django_capture_on_commit_callbacks)

    assert time.monotonic() - started < 10
    html_by_recipient = {mail.recipients[0]: mail.html() for mail in smtp_route.received}
    assert set(html_by_recipient) == {first.email, last.email}
    assert "Hi Ada!!!" in html_by_recipient[first.email]
    assert "Hi Alan!<" in html_by_recipient[last.email]
    failed = Message.objects.get(contact=runaway)
    assert failed.status == Message.Status.FAILED
    assert failed.response.startswith("render failed: ")
    assert "limit" in failed.response
    assert Enrollment.objects.get(contact=runaway).exit_reason == Enrollment.ExitReason.RENDER_FAILED
    assert Enrollment.objects.get(contact=runaway).status == Enrollment.Status.FAILED
    # The others go on: they wait for their next step.
    assert set(Enrollment.objects.exclude(contact=runaway).values_list("status", flat=True)) == {"active"}
    assert set(Message.objects.exclude(contact=runaway).values_list("status", flat=True)) == {Message.Status.SENT}


def test_a_stored_template_that_no_longer_parses_fails_its_messages_instead_of_running(
    smtp_route: SmtpServer, django_capture_on_commit_callbacks
) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    template = services.template_create(organization=organization, name="Fine", subject="Hi", html_body="<p>Hi</p>")
    services.step_create(sequence=sequence, kind=Step.Kind.EMAIL, template=template)
    services.step_create(sequence=sequence, kind=Step.Kind.DELAY, delay=dt.timedelta(days=1))
    services.sequence_activate(sequence=sequence)
    # Stored without validation (a raw update or a data migration): the send is the last guard.
    EmailTemplate.objects.filter(pk=template.pk).update(html_body="<p>{% include '/etc/passwd' %}</p>")
    contacts = ContactFactory.create_batch(2, organization=organization)
    services.enrollments_create(sequence=sequence, contacts=contacts)

    tick(django_capture_on_commit_callbacks)

    assert smtp_route.received == []
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.FAILED}
    assert set(Enrollment.objects.values_list("status", "exit_reason")) == {
        (Enrollment.Status.FAILED, Enrollment.ExitReason.RENDER_FAILED)
    }
