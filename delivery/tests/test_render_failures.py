"""A template that fails while rendering for one contact (a loop limit, say) fails that
message and its enrollment; the others in the same batch are sent."""

from __future__ import annotations

import pytest

from conftest import SmtpServer
from delivery.models import Message
from delivery.tests.factories import email_sequence, send, write_messages
from organizations.tests.factories import OrganizationFactory
from sequences.models import Enrollment
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

HTML = """<html><body>
<p>Hello {{ contact.first_name }}: {% for i in (1..contact.properties.stars) %}*{% endfor %}</p>
</body></html>"""


def test_a_render_failure_fails_only_that_message_and_its_enrollment(settings, smtp_route: SmtpServer) -> None:
    settings.TEMPLATE_LOOP_LIMIT = 50
    organization = OrganizationFactory()
    sequence = email_sequence(organization, emails=2, html_body=HTML)
    first = ContactFactory(organization=organization, properties={"stars": 3})
    failing = ContactFactory(organization=organization, properties={"stars": 5000})
    last = ContactFactory(organization=organization, properties={"stars": 4})
    messages = write_messages(sequence, first, failing, last)

    report = send(*messages)

    assert (report.sent, report.failed) == (2, 1)
    failed = Message.objects.get(contact=failing)
    assert failed.status == Message.Status.FAILED
    assert failed.response.startswith("render failed:")
    assert "limit" in failed.response.lower()
    assert failed.next_attempt_at is None and failed.lease_expires_at is None
    enrollment = Enrollment.objects.get(contact=failing)
    assert (enrollment.status, enrollment.exit_reason) == (
        Enrollment.Status.FAILED,
        Enrollment.ExitReason.RENDER_FAILED,
    )

    received = {mail.recipients[0]: mail for mail in smtp_route.received}
    assert set(received) == {first.email, last.email}
    assert "Hello " + first.first_name + ": ***<" in received[first.email].html()
    assert "Hello " + last.first_name + ": ****<" in received[last.email].html()
    assert set(Enrollment.objects.filter(contact__in=[first, last]).values_list("status", flat=True)) == {
        Enrollment.Status.ACTIVE
    }
    assert set(Message.objects.filter(contact__in=[first, last]).values_list("status", flat=True)) == {
        Message.Status.SENT
    }
