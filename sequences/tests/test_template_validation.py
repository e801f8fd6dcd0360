"""Templates are checked when saved: syntax errors and unknown filters are refused with their
line and column. Missing values render as their default or as nothing, never as an error.
Without a text body, the text part is derived from the HTML (links as "text (url)") with the
Liquid markup kept, so it is personalized like the HTML."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from organizations.tests.factories import OrganizationFactory
from sequences import services
from sequences.models import EmailTemplate, Sequence, Step
from sequences.personalization import CompiledTemplate, contact_context, organization_context, template_problems
from sequences.plaintext import html_to_text
from sequences.tests.helpers import captured_mail, draft_sequence, email_step, tick
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

VALID_HTML = "<html><body><p>Hi {{ contact.first_name }}</p></body></html>"


def create(html_body: str = VALID_HTML, *, subject: str = "Hello", text_body: str = "") -> EmailTemplate:
    return services.template_create(
        organization=OrganizationFactory(), name="Welcome", subject=subject, html_body=html_body, text_body=text_body
    )


def render(source: str, **contact_fields: object) -> str:
    contact = {"email": "ada@example.com", "first_name": "", "last_name": "", "properties": {}, "timezone": ""}
    contact.update(contact_fields)
    context = {
        "contact": contact_context(**contact),  # type: ignore[arg-type]
        "organization": organization_context(name="Acme", postal_address="1 Example Street"),
        "unsubscribe_url": "https://example.com/u/token",
    }
    return CompiledTemplate(source).render(context)


# Refused at save -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "where", "about"),
    [
        ("{{ contact.first_name ", "line 1, column 1", "expected '}}'"),
        ("<p>Dear reader,</p>\n<p>Our news:</p>\n  {{ contact.first_name ", "line 3, column 3", "expected '}}'"),
        ("one\ntwo\nthree\n{% bogus contact %}", "line 4, column 4", "unexpected tag 'bogus'"),
        ("<p>\n</p>\n\n\n{% endif %}", "line 5, column 4", "unexpected tag 'endif'"),
        ("a\nb\n<p>{{ contact.x | plus: 1, 2 ] }}</p>", "line 3, column 30", "found ']'"),
        ("{% if %}yes{% endif %}", "line 1, column 4", "missing expression"),
        ("{{ 'unterminated }}", "line 1, column 4", "unexpected"),
        (
            "<p>\n{% if contact.first_name %}\n{% for x in contact.properties.list %}\n{% endif %}",
            "line 4, column 4",
            "endif",
        ),
        ("text\n{% comment %} never closed", "line 2, column 4", "never closed"),
    ],
    ids=[
        "unclosed-output",
        "unclosed-output-on-line-3",
        "unknown-tag-on-line-4",
        "stray-end-tag-on-line-5",
        "stray-bracket",
        "if-without-condition",
        "unterminated-string",
        "block-closed-out-of-order",
        "unclosed-comment",
    ],
)
def test_a_syntax_error_is_refused_at_save_with_its_line_and_column(source: str, where: str, about: str) -> None:
    with pytest.raises(ValidationError) as error:
        create(source)

    [message] = error.value.message_dict["html_body"]
    assert message.startswith(f"{where}: ")
    assert about in message
    assert not EmailTemplate.objects.exists()


@pytest.mark.parametrize(
    ("source", "opening", "block"),
    [
        ("<p>a</p>\n<p>b</p>\n{% if contact.first_name %}\nHi\n", "line 3, column 4", "endif"),
        ("line1\nline2\nline3\n    {% for x in contact.properties.items %}\n{{ x }}", "line 4, column 8", "endfor"),
        ("{% capture greeting %}\nHello\n\n", "line 1, column 4", "endcapture"),
        ("a\nb\nc\n{% unless contact.first_name %}there", "line 4, column 4", "endunless"),
    ],
)
def test_an_unclosed_block_is_refused_at_its_opening_tag(source: str, opening: str, block: str) -> None:
    with pytest.raises(ValidationError) as error:
        create(source)

    [message] = error.value.message_dict["html_body"]
    assert message.startswith(f"{opening}: this ")
    assert "is never closed" in message and block in message


@pytest.mark.parametrize(
    "tag",
    ["{% for item in %}", "{% if contact.properties.plan == %}", "{% assign = 5 %}", "{{ 'x' | default: 'y' 'z' }}"],
)
def test_an_incomplete_tag_is_refused_on_its_line_at_or_just_after_it(tag: str) -> None:
    source = f"<p>first</p>\n<p>second</p>\n<p>{tag}</p>\n{{% endfor %}}{{% endif %}}"
    start = len("<p>") + 1

    with pytest.raises(ValidationError) as error:
        create(source)

    [message] = error.value.message_dict["html_body"]
    line, column = (int(part.split()[-1]) for part in message.split(":", 1)[0].split(","))
    assert line == 3
    assert start <= column <= start + len(tag)


def test_the_model_refuses_invalid_markup_in_every_field_with_full_clean() -> None:
    template = EmailTemplate(
        organization=OrganizationFactory(),
        name="Broken",
        subject="Hi {{ contact.first_name",
        html_body="<p>ok</p>\n<p>{% if x %}</p>",
        text_body="fine\n{{ contact.email | shout }}",
    )

    with pytest.raises(ValidationError) as error:
        template.full_clean()

    problems = error.value.message_dict
    assert set(problems) == {"subject", "html_body", "text_body"}
    assert problems["subject"] == ["line 1, column 4: expected '}}', found end of file"]
    assert problems["html_body"][0].startswith("line 2, column 7: this 'if' is never closed")
    assert problems["text_body"] == ["line 2, column 20: unknown filter 'shout'"]


def test_unknown_filters_are_refused_each_with_its_position() -> None:
    source = (
        "<p>Hi</p>\n\n<p>{{ contact.first_name | upcase | shout }}</p>\n{{ contact.email | base64_encode | rot13: 2 }}"
    )

    with pytest.raises(ValidationError) as error:
        create(source)

    assert error.value.message_dict["html_body"] == [
        "line 3, column 37: unknown filter 'shout'",
        "line 4, column 36: unknown filter 'rot13'",
    ]


def test_an_update_is_checked_like_a_new_template_and_leaves_the_saved_one_alone() -> None:
    template = create()

    with pytest.raises(ValidationError) as error:
        services.template_update(template=template, html_body="<p>\n{{ contact.first_name | nope }}</p>")

    assert error.value.message_dict["html_body"] == ["line 2, column 25: unknown filter 'nope'"]
    template.refresh_from_db()
    assert template.html_body == VALID_HTML


def test_valid_markup_has_no_problems() -> None:
    source = (
        '{% if contact.properties.plan == "pro" %}Pro{% else %}Free{% endif %}'
        "{% for item in contact.properties.items %}{{ forloop.index }}: {{ item | upcase }}{% endfor %}"
        '{{ contact.first_name | default: "there" | capitalize }} {{ unsubscribe_url }}'
    )

    assert template_problems(source) == []
    assert create(source).html_body == source


def test_a_sequence_whose_template_became_invalid_cannot_be_activated() -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    step = email_step(sequence, "Hello")
    # Changed behind the services' back (a raw update): activation checks again.
    EmailTemplate.objects.filter(pk=step.template_id).update(html_body="{% if contact.first_name %}unclosed")

    with pytest.raises(ValidationError) as error:
        services.sequence_activate(sequence=sequence)

    assert "Step 1" in str(error.value) and "line 1" in str(error.value)
    sequence.refresh_from_db()
    assert sequence.status == Sequence.Status.DRAFT


# Missing values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('Hi {{ contact.first_name | default: "there" }}!', "Hi there!"),
        ("Hi {{ contact.first_name }}!", "Hi !"),
        ("[{{ contact.properties.company }}]", "[]"),
        ("[{{ contact.properties.company.name.first }}]", "[]"),
        ("[{{ contact.properties.company | upcase | truncate: 3 }}]", "[]"),
        ('[{{ contact.properties.plan | default: "free" }}]', "[free]"),
        ("[{{ contact.properties.seats | plus: 1 }}]", "[1]"),
        ("[{{ nobody.anywhere }}]", "[]"),
        ("[{% for x in contact.properties.missing %}{{ x }}{% endfor %}]", "[]"),
        ("[{% if contact.properties.vip %}VIP{% endif %}]", "[]"),
    ],
)
def test_missing_values_render_as_their_default_or_as_nothing(source: str, expected: str) -> None:
    assert render(source) == expected


def test_present_values_render_in_place_of_the_default() -> None:
    source = 'Hi {{ contact.first_name | default: "there" }} from {{ contact.properties.company | default: "?" }}'

    assert render(source, first_name="Zoë", properties={"company": "Acme"}) == "Hi Zoë from Acme"


def test_a_contact_with_no_name_gets_the_default_in_the_email_that_is_sent(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    email_step(
        sequence,
        'Hello {{ contact.first_name | default: "there" }}',
        html="<html><body><p>Dear {{ contact.first_name | default: 'reader' }} {{ contact.properties.x }}.</p></body></html>",
    )
    services.sequence_activate(sequence=sequence)
    services.enrollment_create(sequence=sequence, contact=ContactFactory(organization=organization, first_name=""))

    tick(django_capture_on_commit_callbacks)

    [mail] = captured_mail(organization)
    assert str(mail["Subject"]) == "Hello there"
    assert "Dear reader ." in mail.get_body(("html",)).get_content()
    assert "Dear reader ." in mail.get_body(("plain",)).get_content()


# The derived text part -----------------------------------------------------------------------


def test_the_text_body_is_derived_from_the_html_with_links_spelled_out_and_liquid_kept() -> None:
    html = """<html><head><title>ignored</title><style>p { color: red }</style></head><body>
<h1>Welcome {{ contact.first_name | default: "there" }}</h1>
<p>Read <a href="https://example.com/guide?u={{ contact.email | url_encode }}&amp;x=1">the guide</a> now.<br>Thanks</p>
<ul><li>One</li><li><a href="https://example.com/two">https://example.com/two</a></li></ul>
<p><a href="mailto:help@example.com">Write to us</a> <img src="logo.png" alt="Acme logo"></p>
</body></html>"""

    text = html_to_text(html)

    assert text == (
        'Welcome {{ contact.first_name | default: "there" }}\n'
        "\n"
        "Read the guide (https://example.com/guide?u={{ contact.email | url_encode }}&x=1) now.\n"
        "Thanks\n"
        "\n"
        "- One\n"
        "\n"
        "- https://example.com/two\n"
        "\n"
        "Write to us Acme logo\n"
    )
    assert "ignored" not in text and "color" not in text


def test_an_email_without_a_text_body_sends_the_derived_text_personalized(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization, track_clicks=False)
    html = (
        "<html><body><p>Hi {{ contact.first_name }},</p>"
        '<p><a href="https://example.com/account/{{ contact.properties.account }}">Open your account</a></p>'
        "</body></html>"
    )
    services.step_create(
        sequence=sequence,
        kind=Step.Kind.EMAIL,
        template=services.template_create(organization=organization, name="Derived", subject="Hi", html_body=html),
    )
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization, first_name="Grace", properties={"account": "acct-42"})
    services.enrollment_create(sequence=sequence, contact=contact)

    tick(django_capture_on_commit_callbacks)

    [mail] = captured_mail(organization)
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("Hi Grace,\n\nOpen your account (https://example.com/account/acct-42)\n")
    assert "{{" not in text


def test_a_written_text_body_is_used_instead_of_the_derived_one(django_capture_on_commit_callbacks) -> None:
    organization = OrganizationFactory()
    sequence = draft_sequence(organization)
    services.step_create(
        sequence=sequence,
        kind=Step.Kind.EMAIL,
        template=services.template_create(
            organization=organization,
            name="Own text",
            subject="Hi",
            html_body="<p>HTML for {{ contact.first_name }}</p>",
            text_body="Plain words for {{ contact.first_name }}",
        ),
    )
    services.sequence_activate(sequence=sequence)
    contact = ContactFactory(organization=organization, first_name="Alan")
    services.enrollment_create(sequence=sequence, contact=contact)

    tick(django_capture_on_commit_callbacks)

    [mail] = captured_mail(organization)
    text = mail.get_body(("plain",)).get_content()
    assert text.startswith("Plain words for Alan")
    assert "HTML for" not in text
