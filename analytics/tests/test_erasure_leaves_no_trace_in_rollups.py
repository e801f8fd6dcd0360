"""Erasing a person keeps the counts their messages placed in the funnels, but nothing in the
analytics tables leads back to them: not their messages' states, not a link personalized with
their address."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import pytest
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from analytics import services
from analytics.models import FunnelRollup, LinkRollup, MessageState
from delivery.composer import click_url
from delivery.tests.factories import BROWSER, MessageFactory, email_sequence, email_step, enrollment_for
from organizations.tests.factories import OrganizationFactory
from subscribers.services import contact_erase
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel)"


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def totals(sequence_id: int) -> dict[str, int]:
    return {
        "clicked": FunnelRollup.objects.filter(sequence_id=sequence_id, period="day").aggregate(n=Sum("clicked"))["n"],
        "link_clicks": LinkRollup.objects.filter(sequence_id=sequence_id, period="day").aggregate(
            n=Sum("clicks_total")
        )["n"],
        "link_machine_clicks": LinkRollup.objects.filter(sequence_id=sequence_id, period="day").aggregate(
            n=Sum("machine_clicks_total")
        )["n"],
    }


def test_erasing_a_person_forgets_their_links_and_states_and_keeps_the_counts():
    organization = OrganizationFactory()
    sequence = email_sequence(organization)
    step = email_step(sequence)
    erased = ContactFactory(organization=organization, email="Ada.Lovelace+news@example.org")
    kept = ContactFactory(organization=organization, email="grace@example.org")
    messages = {}
    for contact in (erased, kept):
        messages[contact.pk] = MessageFactory(
            enrollment=enrollment_for(sequence, contact),
            step=step,
            sent_at=timezone.now() - dt.timedelta(hours=1),
            links=[
                f"https://shop.example/welcome?e={quote(contact.email, safe='')}",  # personalized
                f"https://shop.example/u/{contact.email}/prefs",  # personalized, as it is
                "https://shop.example/sale",  # the same for everyone
            ],
        )
    client = Client()
    for message in messages.values():
        for index, link in enumerate(message.links):
            client.get(path_of(click_url(message.pk, index, link)), HTTP_USER_AGENT=BROWSER)
            client.get(path_of(click_url(message.pk, index, link)), HTTP_USER_AGENT=SCANNER)
    services.rollups_flush()
    before = totals(sequence.pk)
    assert LinkRollup.objects.filter(url__icontains="lovelace").exists()

    contact_erase(contact=erased)
    services.rollups_flush()

    assert totals(sequence.pk) == before
    assert not MessageState.objects.filter(message_id=messages[erased.pk].pk).exists()
    assert MessageState.objects.filter(message_id=messages[kept.pk].pk).exists()
    urls = set(LinkRollup.objects.filter(sequence_id=sequence.pk).values_list("url", flat=True))
    assert not any("lovelace" in url.lower() for url in urls)
    assert {
        "https://shop.example/welcome?e=[erased]",
        "https://shop.example/u/[erased]/prefs",
        "https://shop.example/sale",
        "https://shop.example/welcome?e=grace%40example.org",  # another person's stays theirs
    } <= urls
