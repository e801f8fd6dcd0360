"""The preference page a contact reaches from its emails: public lists, a pause, unsubscribing
from everything; each change on record with what was before and after."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from subscribers import links
from subscribers.models import ConsentRecord, Contact, ContactList, Suppression
from subscribers.tests.factories import ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact() -> Contact:
    contact = ContactFactory(email="ann@example.com")
    news = ContactListFactory(organization=contact.organization, name="News", is_public=True)
    ContactListFactory(organization=contact.organization, name="Offers", is_public=True)
    internal = ContactListFactory(organization=contact.organization, name="Internal VIPs")
    contact.lists.add(news, internal)
    return contact


def page_url(contact: Contact) -> str:
    return links.preferences_url(contact.pk)


def named(contact: Contact, name: str) -> ContactList:
    return ContactList.objects.get(organization=contact.organization, name=name)


def test_the_page_shows_the_public_lists_as_chosen_and_changes_nothing(client: Client, contact: Contact):
    page = client.get(page_url(contact)).content.decode()

    assert "News" in page and "Offers" in page
    assert "Internal VIPs" not in page
    assert f'value="{named(contact, "News").pk}"' in page and "checked" in page
    assert not ConsentRecord.objects.exists()


def test_the_preference_link_is_absolute_and_names_the_contact(contact: Contact, settings):
    assert page_url(contact).startswith(settings.BASE_URL + "/preferences/")
    assert links.preferences_contact_id(page_url(contact).rsplit("/", 1)[1]) == contact.pk


def test_choosing_lists_changes_only_the_public_ones_and_is_recorded(client: Client, contact: Contact):
    news, offers, internal = named(contact, "News"), named(contact, "Offers"), named(contact, "Internal VIPs")

    answer = client.post(page_url(contact), {"action": "save", "lists": [offers.pk]}, REMOTE_ADDR="203.0.113.5")

    assert answer.status_code == 200 and b"Your preferences are saved." in answer.content
    assert set(contact.lists.all()) == {offers, internal}
    record = ConsentRecord.objects.get(contact=contact)
    assert record.action == ConsentRecord.Action.PREFERENCES
    assert record.ip == "203.0.113.5"
    assert record.detail["before"]["lists"] == [news.pk]
    assert record.detail["after"]["lists"] == [offers.pk]


def test_pausing_sets_the_date_until_which_no_marketing_mail_goes_out(client: Client, contact: Contact):
    news = named(contact, "News")

    client.post(page_url(contact), {"action": "save", "lists": [news.pk], "pause": "month"})

    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE
    assert contact.paused_until - timezone.now() > dt.timedelta(days=29, hours=23)
    assert contact.paused_until - timezone.now() <= dt.timedelta(days=30)
    record = ConsentRecord.objects.get(contact=contact)
    assert record.detail["before"]["paused_until"] is None
    assert record.detail["after"]["paused_until"] == contact.paused_until.isoformat()

    client.post(page_url(contact), {"action": "save", "lists": [news.pk], "pause": "resume"})

    contact.refresh_from_db()
    assert contact.paused_until is None
    assert ConsentRecord.objects.filter(contact=contact).count() == 2


def test_saving_without_a_change_records_nothing(client: Client, contact: Contact):
    client.post(page_url(contact), {"action": "save", "lists": [named(contact, "News").pk]})

    assert not ConsentRecord.objects.exists()


def test_unsubscribing_from_everything_stops_all_mail(client: Client, contact: Contact):
    answer = client.post(page_url(contact), {"action": "unsubscribe"}, HTTP_USER_AGENT="Browser/1")

    contact.refresh_from_db()
    assert answer.status_code == 200
    assert contact.status == Contact.Status.UNSUBSCRIBED
    assert Suppression.objects.filter(organization=contact.organization).exists()
    record = ConsentRecord.objects.get(contact=contact)
    assert (record.action, record.source, record.user_agent) == ("unsubscribe", "preference page", "Browser/1")
    assert record.detail["previous_status"] == "active" and record.detail["status"] == "unsubscribed"


def test_an_unsubscribed_contact_can_subscribe_again_from_the_page(client: Client, contact: Contact):
    client.post(page_url(contact), {"action": "unsubscribe"})

    page = client.get(page_url(contact)).content.decode()
    client.post(page_url(contact), {"action": "resubscribe"})

    assert "Subscribe again" in page
    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE
    assert not Suppression.objects.filter(organization=contact.organization).exists()
    assert ConsentRecord.objects.filter(contact=contact).latest("id").action == ConsentRecord.Action.RESUBSCRIBE


def test_a_lists_choice_from_another_organization_is_refused(client: Client, contact: Contact):
    elsewhere = ContactListFactory(name="Elsewhere", is_public=True)

    answer = client.post(page_url(contact), {"action": "save", "lists": [elsewhere.pk]})

    assert answer.status_code == 400
    assert not contact.lists.filter(pk=elsewhere.pk).exists()


def test_a_forged_preference_link_is_not_found(client: Client, contact: Contact):
    token = links.preferences_token(contact.pk)
    for forged in (f"{contact.pk + 1}:{token.split(':')[1]}", token[:-2], links.confirmation_token(contact.pk)):
        assert client.get(reverse("subscribers:preferences", args=[forged])).status_code == 404
        assert (
            client.post(reverse("subscribers:preferences", args=[forged]), {"action": "unsubscribe"}).status_code == 404
        )

    contact.refresh_from_db()
    assert contact.status == Contact.Status.ACTIVE
