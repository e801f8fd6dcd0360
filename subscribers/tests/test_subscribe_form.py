"""The public subscribe endpoint: the hosted page and its embeddable copy, sign-ups from HTML
forms and as JSON, the honeypot, bad input, throttling, and what a sign-up does to addresses
that are already contacts or suppressed."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from conftest import SmtpServer
from organizations.tests.factories import OrganizationFactory, UserFactory
from subscribers import links, services
from subscribers.models import ConsentRecord, Contact, ContactList, SubscribeForm, Suppression
from subscribers.tests.factories import ContactFactory, ContactListFactory, SubscribeFormFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_budgets() -> None:
    cache.clear()


@pytest.fixture
def form() -> SubscribeForm:
    """A form without a list of its own: people choose among the public lists."""
    organization = OrganizationFactory(name="Acme Coffee", double_opt_in=True)
    ContactListFactory(organization=organization, name="Roasting news", is_public=True)
    ContactListFactory(organization=organization, name="Offers", is_public=True)
    ContactListFactory(organization=organization, name="Staff only")
    return SubscribeFormFactory(organization=organization)


def url(form: SubscribeForm) -> str:
    return reverse("subscribers:subscribe", args=[form.token])


def post(client: Client, form: SubscribeForm, capture, data: dict, **extra):
    with capture(execute=True):
        return client.post(url(form), data, **extra)


def test_the_hosted_page_offers_the_public_lists_the_wording_and_a_hidden_honeypot(client: Client, form: SubscribeForm):
    page = client.get(url(form)).content.decode()

    assert "Roasting news" in page and "Offers" in page
    assert "Staff only" not in page
    assert form.consent_wording in page
    assert 'name="homepage"' in page and "left:-10000px" in page and 'tabindex="-1"' in page


def test_the_embeddable_snippet_posts_to_the_absolute_url_with_the_honeypot(client: Client, form: SubscribeForm):
    answer = client.get(reverse("subscribers:subscribe-embed", args=[form.token]))

    snippet = answer.content.decode()
    assert answer.status_code == 200
    assert f'action="{links.subscribe_url(form.token)}"' in snippet
    assert links.subscribe_url(form.token).startswith("http")
    assert 'method="post"' in snippet and 'name="homepage"' in snippet and 'name="email"' in snippet
    assert "Roasting news" in snippet


def test_a_cross_site_post_from_an_embedded_form_is_accepted_without_a_csrf_token(
    form: SubscribeForm, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    browser = Client(enforce_csrf_checks=True)
    offers = ContactList.objects.get(organization=form.organization, name="Offers")

    answer = post(
        browser,
        form,
        django_capture_on_commit_callbacks,
        {"email": "reader@example.com", "lists": [offers.pk]},
        HTTP_ORIGIN="https://blog.example.org",
    )

    assert answer.status_code == 200
    [record] = ConsentRecord.objects.filter(action=ConsentRecord.Action.SUBSCRIBE)
    assert record.detail["lists"] == [offers.pk]
    smtp_route.wait_for(1, timeout=10)


def test_a_filled_honeypot_is_answered_as_a_success_and_stores_nothing(
    client: Client, form: SubscribeForm, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    answer = post(
        client,
        form,
        django_capture_on_commit_callbacks,
        {"email": "bot@example.com", "homepage": "http://spam.example"},
    )
    as_json = post(
        client,
        form,
        django_capture_on_commit_callbacks,
        json.dumps({"email": "bot2@example.com", "homepage": "x"}),
        content_type="application/json",
    )

    assert answer.status_code == 200 and b"Check your inbox" in answer.content
    assert as_json.status_code == 202 and as_json.json() == {"status": "received"}
    assert not Contact.objects.exists()
    assert not ConsentRecord.objects.exists()
    assert smtp_route.received == []


def test_bad_input_shows_the_form_again_with_the_errors_and_what_was_typed(
    client: Client, form: SubscribeForm, django_capture_on_commit_callbacks
):
    answer = post(client, form, django_capture_on_commit_callbacks, {"email": "ann@@example", "first_name": "Ann"})

    page = answer.content.decode()
    assert answer.status_code == 400
    assert "Enter a valid email address." in page
    assert 'value="ann@@example"' in page and 'value="Ann"' in page
    assert not Contact.objects.exists()


def test_bad_json_gets_a_problem_document_naming_the_field(
    client: Client, form: SubscribeForm, django_capture_on_commit_callbacks
):
    answer = post(
        client,
        form,
        django_capture_on_commit_callbacks,
        json.dumps({"email": "nope", "lists": [999999]}),
        content_type="application/json",
    )
    not_json = post(client, form, django_capture_on_commit_callbacks, "{", content_type="application/json")

    assert answer.status_code == 400
    assert answer["Content-Type"] == "application/problem+json"
    assert {error["field"] for error in answer.json()["errors"]} == {"email", "lists"}
    assert not_json.status_code == 400 and not_json["Content-Type"] == "application/problem+json"
    assert not Contact.objects.exists()


def test_a_json_sign_up_is_accepted(
    client: Client, form: SubscribeForm, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    answer = post(
        client,
        form,
        django_capture_on_commit_callbacks,
        json.dumps({"email": "json@example.com", "first_name": "Jay"}),
        content_type="application/json",
    )

    assert answer.status_code == 202
    assert answer.json() == {"status": "received"}
    assert Contact.objects.get().status == Contact.Status.PENDING
    smtp_route.wait_for(1, timeout=10)


def test_without_double_opt_in_a_new_contact_is_active_in_its_lists_at_once(
    client: Client, form: SubscribeForm, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    form.organization.double_opt_in = False
    form.organization.save()
    offers = ContactList.objects.get(organization=form.organization, name="Offers")

    answer = post(
        client, form, django_capture_on_commit_callbacks, {"email": "quick@example.com", "lists": [offers.pk]}
    )

    contact = Contact.objects.get()
    assert answer.status_code == 200 and b"Thank you for subscribing" in answer.content
    assert contact.status == Contact.Status.ACTIVE
    assert list(contact.lists.all()) == [offers]
    assert smtp_route.received == []


def _an_address_in_each_state(organization) -> list[str]:
    """A new address, then one active, pending, unsubscribed, erased, bounced and complained."""
    active = ContactFactory(organization=organization, email="active@example.com")
    ContactFactory(organization=organization, email="pending@example.com", status=Contact.Status.PENDING)
    services.contact_unsubscribe(
        contact=ContactFactory(organization=organization, email="left@example.com"), source="t"
    )
    services.contact_erase(contact=ContactFactory(organization=organization, email="erased@example.com"))
    services.contact_mark_bounced(
        contact=ContactFactory(organization=organization, email="gone@example.com"), detail=""
    )
    services.contact_mark_complained(
        contact=ContactFactory(organization=organization, email="spam@example.com"), detail=""
    )
    offers = ContactList.objects.get(organization=organization, name="Offers")
    active.lists.add(offers)
    return [
        "new@example.com",
        "active@example.com",
        "pending@example.com",
        "left@example.com",
        "erased@example.com",
        "gone@example.com",
        "spam@example.com",
    ]


def _answer(answer) -> tuple[int, str, str]:
    return answer.status_code, answer["Content-Type"], answer.content.decode()


@pytest.mark.parametrize("double_opt_in", [True, False])
def test_the_answer_to_a_sign_up_does_not_tell_what_the_address_is_to_us(
    client: Client, form: SubscribeForm, django_capture_on_commit_callbacks, double_opt_in: bool
):
    form.organization.double_opt_in = double_opt_in
    form.organization.save()
    offers = ContactList.objects.get(organization=form.organization, name="Offers")
    addresses = _an_address_in_each_state(form.organization)

    as_json = {
        _answer(
            post(
                client,
                form,
                django_capture_on_commit_callbacks,
                json.dumps({"email": address, "lists": [offers.pk]}),
                content_type="application/json",
            )
        )
        for address in addresses
    }
    as_html = {
        _answer(post(client, form, django_capture_on_commit_callbacks, {"email": address, "lists": [offers.pk]}))
        for address in addresses
    }

    assert as_json == {(202 if double_opt_in else 200, "application/json", '{"status": "received"}')}
    [(status, _, page)] = as_html
    assert status == 200
    assert ("Check your inbox" if double_opt_in else "Thank you for subscribing") in page


def test_an_active_subscriber_signing_up_again_for_nothing_new_gets_no_email(
    client: Client, form: SubscribeForm, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    offers = ContactList.objects.get(organization=form.organization, name="Offers")
    ContactFactory(organization=form.organization, email="known@example.com").lists.add(offers)

    answer = post(
        client, form, django_capture_on_commit_callbacks, {"email": "known@example.com", "lists": [offers.pk]}
    )

    assert answer.status_code == 200 and b"Check your inbox" in answer.content
    assert smtp_route.received == []


def test_an_existing_active_contact_stays_active(
    client: Client, form: SubscribeForm, django_capture_on_commit_callbacks
):
    contact = ContactFactory(organization=form.organization, email="known@example.com")

    post(client, form, django_capture_on_commit_callbacks, {"email": "Known@Example.com"})

    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE
    assert ConsentRecord.objects.filter(contact=contact, action=ConsentRecord.Action.SUBSCRIBE).exists()


def test_an_unsubscribed_contact_is_not_resubscribed_until_it_confirms(
    client: Client, form: SubscribeForm, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    contact = ContactFactory(organization=form.organization, email="left@example.com")
    services.contact_unsubscribe(contact=contact, source="test")

    post(client, form, django_capture_on_commit_callbacks, {"email": "left@example.com"})

    contact.refresh_from_db()
    assert contact.status == Contact.Status.UNSUBSCRIBED
    assert Suppression.objects.filter(organization=form.organization).exists()
    [mail] = smtp_route.wait_for(1, timeout=10)
    sign_up = ConsentRecord.objects.filter(action=ConsentRecord.Action.SUBSCRIBE).latest("id")
    assert links.confirmation_url(sign_up.pk).split("/confirm/")[0] in mail.text()

    client.post(reverse("subscribers:confirm", args=[links.confirmation_token(sign_up.pk)]))

    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE
    assert not Suppression.objects.filter(organization=form.organization).exists()
    confirmation = ConsentRecord.objects.get(action=ConsentRecord.Action.CONFIRM)
    assert confirmation.detail["previous_status"] == "unsubscribed"
    assert confirmation.detail["suppression_lifted"] == "unsubscribed"


@pytest.mark.parametrize("mark", ["contact_mark_bounced", "contact_mark_complained"])
def test_a_bounced_or_complaining_address_gets_no_confirmation_and_cannot_be_confirmed(
    client: Client, form: SubscribeForm, smtp_route: SmtpServer, django_capture_on_commit_callbacks, mark: str
):
    contact = ContactFactory(organization=form.organization, email="gone@example.com")
    getattr(services, mark)(contact=contact, detail="550 5.1.1 no such user")
    status = Contact.objects.get(pk=contact.pk).status

    post(client, form, django_capture_on_commit_callbacks, {"email": "gone@example.com"})
    sign_up = ConsentRecord.objects.filter(action=ConsentRecord.Action.SUBSCRIBE).latest("id")
    answer = client.post(reverse("subscribers:confirm", args=[links.confirmation_token(sign_up.pk)]))

    assert smtp_route.received == []
    assert answer.status_code == 409
    assert Contact.objects.get(pk=contact.pk).status == status


def test_a_link_from_before_an_unsubscribe_no_longer_confirms(
    client: Client, form: SubscribeForm, django_capture_on_commit_callbacks
):
    post(client, form, django_capture_on_commit_callbacks, {"email": "ann@example.com"})
    contact = Contact.objects.get()
    sign_up = ConsentRecord.objects.get(action=ConsentRecord.Action.SUBSCRIBE)
    services.contact_unsubscribe(contact=contact, source="unsubscribe page")

    answer = client.post(reverse("subscribers:confirm", args=[links.confirmation_token(sign_up.pk)]))

    assert answer.status_code == 409
    assert Contact.objects.get().status == Contact.Status.UNSUBSCRIBED


def test_sign_ups_from_one_client_are_throttled(
    client: Client, form: SubscribeForm, settings, django_capture_on_commit_callbacks
):
    settings.SUBSCRIBE_REQUESTS_PER_IP_PER_HOUR = 2

    answers = [
        post(client, form, django_capture_on_commit_callbacks, {"email": f"p{n}@example.com"}, REMOTE_ADDR="192.0.2.1")
        for n in range(3)
    ]
    elsewhere = post(
        client, form, django_capture_on_commit_callbacks, {"email": "p9@example.com"}, REMOTE_ADDR="192.0.2.2"
    )

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert elsewhere.status_code == 200
    assert Contact.objects.count() == 3


def test_an_address_gets_a_few_confirmation_emails_a_day_at_most(
    client: Client, form: SubscribeForm, settings, smtp_route: SmtpServer, django_capture_on_commit_callbacks
):
    settings.CONFIRMATION_EMAILS_PER_ADDRESS_PER_DAY = 2

    for _ in range(4):
        assert (
            post(client, form, django_capture_on_commit_callbacks, {"email": "target@example.com"}).status_code == 200
        )

    smtp_route.wait_for(2, timeout=10)
    assert len(smtp_route.received) == 2


def test_an_inactive_or_unknown_form_is_not_found(client: Client, form: SubscribeForm):
    form.is_active = False
    form.save()

    assert client.get(url(form)).status_code == 404
    assert client.post(url(form), {"email": "a@example.com"}).status_code == 404
    assert client.get(reverse("subscribers:subscribe", args=["no-such-form"])).status_code == 404


def test_a_form_with_a_redirect_sends_the_browser_there(
    client: Client, form: SubscribeForm, django_capture_on_commit_callbacks
):
    form.redirect_url = "https://acme.example/thanks"
    form.save()

    answer = post(client, form, django_capture_on_commit_callbacks, {"email": "ann@example.com"})

    assert answer.status_code == 303
    assert answer["Location"] == "https://acme.example/thanks"


def test_staff_create_a_form_in_the_admin_and_see_its_url_and_embed_code(client: Client):
    organization = OrganizationFactory()
    client.force_login(UserFactory(is_superuser=True))

    answer = client.post(
        reverse("admin:subscribers_subscribeform_add"),
        {"organization": organization.pk, "name": "Blog footer", "consent_wording": "Yes please", "is_active": "on"},
    )

    form = SubscribeForm.objects.get()
    assert answer.status_code == 302, answer.content[:2000]
    assert len(form.token) >= 20
    page = client.get(reverse("admin:subscribers_subscribeform_change", args=[form.pk])).content.decode()
    assert links.subscribe_url(form.token) in page and "homepage" in page
    assert client.get(reverse("admin:subscribers_consentrecord_changelist")).status_code == 200
