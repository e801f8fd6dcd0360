"""What a contact receives is the variant it was assigned: subject, body, sender or template."""

from __future__ import annotations

from collections import defaultdict

import pytest

from delivery.models import Message
from experiments.services import VariantSpec
from experiments.tests.factories import enroll, split_sequence
from organizations.tests.factories import OrganizationFactory
from sequences import engine
from sequences.tests.factories import EmailTemplateFactory

pytestmark = pytest.mark.django_db

OTHER_HTML = (
    '<html><body><p>Brand new body for {{ contact.first_name }}</p><a href="https://example.com/b">B</a></body></html>'
)


def test_each_variant_sends_its_own_overrides(smtp_route, django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    whole = EmailTemplateFactory(
        organization=organization,
        subject="Whole template {{ contact.first_name }}",
        html_body="<html><body><p>Another template entirely</p></body></html>",
        text_body="Another template, in text",
    )
    sequence = split_sequence(
        organization,
        [
            VariantSpec(name="control"),
            VariantSpec(name="subject", subject="Subject override for {{ contact.first_name }}"),
            VariantSpec(name="body", html_body=OTHER_HTML),
            VariantSpec(name="sender", from_name="Other Sender"),
            VariantSpec(name="template", template=whole, from_name="Template Sender"),
        ],
    )
    contacts = enroll(sequence, 40)

    with django_capture_on_commit_callbacks(execute=True):
        engine.tick()

    received = smtp_route.wait_for(40)
    variant_of = dict(Message.objects.filter(sequence=sequence).values_list("recipient", "variant__name"))
    first_name = {contact.email: contact.first_name for contact in contacts}
    mail_by_variant = defaultdict(list)
    for mail in received:
        [recipient] = mail.recipients
        mail_by_variant[variant_of[recipient]].append((mail.parsed(), first_name[recipient]))
    assert len(received) == 40
    assert set(mail_by_variant) == {"control", "subject", "body", "sender", "template"}  # 40 draws of 5
    for parsed, name in mail_by_variant["control"]:
        assert parsed["Subject"] == f"Base subject for {name}"
        assert parsed["From"].addresses[0].display_name == "Base Sender"
        assert f"Hello {name}" in parsed.get_body(("html",)).get_content()
    for parsed, name in mail_by_variant["subject"]:
        assert parsed["Subject"] == f"Subject override for {name}"
        assert f"Hello {name}" in parsed.get_body(("html",)).get_content()
    for parsed, name in mail_by_variant["body"]:
        assert parsed["Subject"] == f"Base subject for {name}"
        assert f"Brand new body for {name}" in parsed.get_body(("html",)).get_content()
        assert "Hello" not in parsed.get_body(("plain",)).get_content()  # derived from the new HTML
    for parsed, name in mail_by_variant["sender"]:
        assert parsed["From"].addresses[0].display_name == "Other Sender"
        assert parsed["Subject"] == f"Base subject for {name}"
    for parsed, name in mail_by_variant["template"]:
        assert parsed["Subject"] == f"Whole template {name}"
        assert parsed["From"].addresses[0].display_name == "Template Sender"
        assert "Another template entirely" in parsed.get_body(("html",)).get_content()
        assert "Another template, in text" in parsed.get_body(("plain",)).get_content()
