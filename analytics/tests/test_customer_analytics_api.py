"""The customer analytics routes: what they answer, to whom, and what they refuse."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from api.tests.clients import key_client, role_client
from delivery.models import Event
from delivery.tests.factories import EventFactory, MessageFactory, enrollment_for
from organizations.models import ApiKey, Membership, Organization
from organizations.tests.factories import OrganizationFactory
from sequences.models import Step
from sequences.tests.factories import EmailTemplateFactory, SequenceFactory, StepFactory
from subscribers.models import Contact, ContactEvent
from subscribers.tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)
ROUTES = ["api:customer-cohorts", "api:customer-rfm", "api:customer-lifetime-value", "api:customer-attribution"]


def purchase(contact: Contact, when: dt.datetime, revenue: object, name: str = "purchase") -> ContactEvent:
    return ContactEvent.objects.create(
        organization=contact.organization,
        contact=contact,
        name=name,
        properties={"revenue": revenue},
        occurred_at=when,
    )


def email_steps(organization: Organization, count: int) -> list[Step]:
    sequence = SequenceFactory(organization=organization)
    template = EmailTemplateFactory(organization=organization)
    return [
        StepFactory(
            sequence=sequence, position=index + 1, kind=Step.Kind.EMAIL, template=template, name=f"Email {index}"
        )
        for index in range(count)
    ]


def sent(step: Step, contact: Contact, when: dt.datetime):
    enrollment = contact.enrollments.filter(sequence=step.sequence).first() or enrollment_for(
        step.sequence, contact, enrolled_at=when
    )
    return MessageFactory(enrollment=enrollment, step=step, sent_at=when)


@pytest.fixture
def shop() -> Organization:
    return OrganizationFactory(name="Shop", slug="shop")


@pytest.fixture
def outsider_world() -> dict:
    """Another organization with customers, purchases, sends and engagement of its own."""
    outsider = OrganizationFactory(name="Outsider", slug="outsider")
    (step,) = email_steps(outsider, 1)
    now = timezone.now()
    for index in range(30):
        contact = ContactFactory(organization=outsider, email=f"outsider-{index}@outsider.example")
        message = sent(step, contact, now - 20 * DAY)
        EventFactory(message=message, type=Event.Type.CLICK, occurred_at=now - 19 * DAY)
        for days in (18, 10, 3):
            purchase(contact, now - days * DAY, 1000)
    return {"organization": outsider, "step": step}


def problem(response) -> dict:
    assert response["Content-Type"] == "application/problem+json"
    return response.json()


def fields_of(response) -> set[str]:
    return {error["field"] for error in problem(response)["errors"]}


# Attribution -------------------------------------------------------------------------------------


def test_attribution_credits_the_organizations_steps_and_sums_to_its_conversions(shop, outsider_world):
    welcome, offer = email_steps(shop, 2)
    now = timezone.now()
    ann, bob, cat = (ContactFactory(organization=shop, email=f"{name}@shop.example") for name in ("ann", "bob", "cat"))
    sent(welcome, ann, now - 10 * DAY)
    sent(offer, ann, now - 5 * DAY)
    sent(welcome, bob, now - 10 * DAY)
    purchase(ann, now - 4 * DAY, "40.00")
    purchase(bob, now - 60 * DAY, 25)  # before any touch: unattributed
    purchase(cat, now - 1 * DAY, "free")  # never touched, no revenue

    response = role_client(shop, Membership.Role.VIEWER).get(
        reverse("api:customer-attribution"), {"window_days": 30, "model": "first_touch,last_touch,markov"}
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert [model["model"] for model in body["models"]] == ["first_touch", "last_touch", "markov"]
    by_model = {model["model"]: model for model in body["models"]}
    for model in body["models"]:
        assert (model["total_conversions"], model["attributed_conversions"], model["unattributed_conversions"]) == (
            3,
            1,
            2,
        )
        assert (model["attributed_revenue"], model["unattributed_revenue"]) == (40.0, 25.0)
        assert sum(credit["conversions"] for credit in model["credits"]) == pytest.approx(1.0)
        assert sum(credit["revenue"] for credit in model["credits"]) == pytest.approx(40.0)
        assert {credit["step_id"] for credit in model["credits"]} <= {welcome.pk, offer.pk}
    assert by_model["first_touch"]["credits"][0]["step_id"] == welcome.pk
    assert by_model["first_touch"]["credits"][0]["sequence_id"] == welcome.sequence_id
    assert by_model["last_touch"]["credits"][0]["step_name"] == "Email 1"
    assert "outsider" not in response.content.decode()


def test_attribution_by_human_clicks_ignores_machine_clicks(shop):
    (step,) = email_steps(shop, 1)
    now = timezone.now()
    person = ContactFactory(organization=shop)
    message = sent(step, person, now - 3 * DAY)
    EventFactory(message=message, type=Event.Type.CLICK, occurred_at=now - 3 * DAY, is_machine=True)
    purchase(person, now - DAY, 10)
    client = key_client(shop, ApiKey.Scope.READ)

    by_clicks = client.get(reverse("api:customer-attribution"), {"touch": "clicked", "model": "linear"}).json()
    by_sends = client.get(reverse("api:customer-attribution"), {"touch": "sent", "model": "linear"}).json()

    assert by_clicks["models"][0]["attributed_conversions"] == 0
    assert by_sends["models"][0]["attributed_conversions"] == 1


def test_attribution_refuses_another_organizations_sequence(shop, outsider_world):
    client = key_client(shop, ApiKey.Scope.READ)
    response = client.get(reverse("api:customer-attribution"), {"sequence_id": outsider_world["step"].sequence_id})
    assert response.status_code == 404
    assert "outsider" not in response.content.decode().lower()


# Cohorts and RFM --------------------------------------------------------------------------------


def test_cohorts_show_only_the_organizations_contacts(shop, outsider_world):
    (step,) = email_steps(shop, 1)
    person = ContactFactory(organization=shop)
    EventFactory(message=sent(step, person, timezone.now()), type=Event.Type.OPEN, occurred_at=timezone.now())

    for basis in ("signup", "enrollment"):
        response = key_client(shop, ApiKey.Scope.READ).get(
            reverse("api:customer-cohorts"), {"basis": basis, "weeks": 4}
        )
        assert response.status_code == 200, response.content
        cohorts = response.json()["cohorts"]
        assert [(row["size"], row["retained"][0], row["shares"][0]) for row in cohorts] == [(1, 1, 1.0)]
        assert cohorts[0]["retained"][1:] == [None, None, None]


def test_cohorts_of_one_sequence_refuse_another_organizations_sequence(shop, outsider_world):
    client = key_client(shop, ApiKey.Scope.READ)
    own_sequence = email_steps(shop, 1)[0].sequence
    ok = client.get(reverse("api:customer-cohorts"), {"basis": "enrollment", "sequence_id": own_sequence.pk})
    foreign = client.get(
        reverse("api:customer-cohorts"), {"basis": "enrollment", "sequence_id": outsider_world["step"].sequence_id}
    )
    assert ok.status_code == 200
    assert foreign.status_code == 404


def test_rfm_lists_the_organizations_customers_with_segments(shop, outsider_world):
    now = timezone.now()
    big = ContactFactory(organization=shop, email="big@shop.example")
    small = ContactFactory(organization=shop, email="small@shop.example")
    for days in (1, 2, 3):
        purchase(big, now - days * DAY, 100)
    purchase(small, now - 80 * DAY, "5")
    for index in range(3):
        purchase(ContactFactory(organization=shop), now - (20 + index) * DAY, 50)

    response = key_client(shop, ApiKey.Scope.READ).get(reverse("api:customer-rfm"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["customers"] == 5
    rows = body["top_customers"]
    assert (rows[0]["email"], rows[0]["monetary"], rows[0]["segment"]) == ("big@shop.example", 300.0, "Champions")
    assert (rows[-1]["email"], rows[-1]["monetary"], rows[-1]["segment"]) == ("small@shop.example", 5.0, "Lost")
    assert (rows[-1]["recency_score"], rows[-1]["frequency_score"], rows[-1]["monetary_score"]) == (1, 3, 1)
    assert {segment["segment"] for segment in body["segments"]} >= {"Champions", "Lost", "At risk"}
    only_lost = key_client(shop, ApiKey.Scope.READ).get(reverse("api:customer-rfm"), {"segment": "Lost"}).json()
    assert [row["email"] for row in only_lost["top_customers"]] == ["small@shop.example"]
    assert "outsider" not in response.content.decode()


# Lifetime value -------------------------------------------------------------------------------


def bg_nbd_purchases(organization: Organization, customers: int, *, seed: int) -> None:
    """A year of purchases drawn from BG/NBD (r 0.8, alpha 4 per week, a 0.6, b 3), values from
    Gamma-Gamma (p 6, q 4, gamma 15); customers arrive over the first half year."""
    rng = np.random.default_rng(seed)
    now = timezone.now()
    contacts = Contact.objects.bulk_create(
        [Contact(organization=organization, email=f"customer{index}@shop.example") for index in range(customers)]
    )
    events = []
    for contact in contacts:
        rate = rng.gamma(0.8, 1 / 4)  # purchases per week while alive
        dropout = rng.beta(0.6, 3)  # chance of leaving after each purchase
        value_rate = rng.gamma(4, 1 / 15)
        times = [rng.uniform(0, 26)]  # weeks into the year
        while rng.random() >= dropout:
            following = times[-1] + rng.exponential(1 / rate)
            if following > 52:
                break
            times.append(following)
        for time in times:
            events.append(
                ContactEvent(
                    organization=organization,
                    contact=contact,
                    name="purchase",
                    properties={"revenue": round(float(rng.gamma(6, 1 / value_rate)), 2)},
                    occurred_at=now - dt.timedelta(weeks=52 - time),
                )
            )
    ContactEvent.objects.bulk_create(events)


def test_lifetime_value_is_fitted_on_the_organizations_purchases(shop, outsider_world):
    bg_nbd_purchases(shop, 300, seed=7)

    response = key_client(shop, ApiKey.Scope.READ).get(
        reverse("api:customer-lifetime-value"), {"months": 6, "limit": 10}
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["customers"] == 300
    assert body["repeat_customers"] >= 20
    assert all(value > 0 for value in [*body["bg_nbd"].values(), *body["gamma_gamma"].values()])
    top = body["top_customers"]
    assert len(top) == 10
    assert all(row["email"].endswith("@shop.example") for row in top)
    assert [row["lifetime_value"] for row in top] == sorted((row["lifetime_value"] for row in top), reverse=True)
    assert all(0 <= row["probability_alive"] <= 1 for row in top)
    assert body["lifetime_value"] >= sum(row["lifetime_value"] for row in top)
    longer = key_client(shop, ApiKey.Scope.READ).get(reverse("api:customer-lifetime-value"), {"months": 24}).json()
    assert longer["expected_purchases"] > body["expected_purchases"]


def test_lifetime_value_with_too_few_repeat_customers_is_a_422_problem(shop, outsider_world):
    person = ContactFactory(organization=shop)
    purchase(person, timezone.now() - 10 * DAY, 20)
    purchase(person, timezone.now() - 2 * DAY, 30)

    response = key_client(shop, ApiKey.Scope.READ).get(reverse("api:customer-lifetime-value"))

    assert response.status_code == 422
    assert "at least 20 customers with a repeat purchase" in problem(response)["detail"]
    assert "there are 1" in problem(response)["detail"]


# Access and input ------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_a_read_key_and_a_viewer_can_read_and_strangers_cannot(route, shop):
    assert key_client(shop, ApiKey.Scope.READ).get(reverse(route)).status_code in (200, 422)
    assert role_client(shop, Membership.Role.VIEWER).get(reverse(route)).status_code in (200, 422)
    anonymous = APIClient().get(reverse(route))
    assert anonymous.status_code == 401
    writes = key_client(shop, ApiKey.Scope.WRITE).post(reverse(route), {}, format="json")
    assert writes.status_code == 405


@pytest.mark.parametrize(
    ("route", "query", "field"),
    [
        ("api:customer-cohorts", {"basis": "astrology"}, "basis"),
        ("api:customer-cohorts", {"weeks": "0"}, "weeks"),
        ("api:customer-cohorts", {"cohorts": "many"}, "cohorts"),
        ("api:customer-cohorts", {"basis": "signup", "sequence_id": "1"}, "sequence_id"),
        ("api:customer-rfm", {"segment": "Whales"}, "segment"),
        ("api:customer-rfm", {"limit": "100000"}, "limit"),
        ("api:customer-rfm", {"event": " , "}, "event"),
        ("api:customer-lifetime-value", {"months": "0"}, "months"),
        ("api:customer-lifetime-value", {"discount_rate": "-1"}, "discount_rate"),
        ("api:customer-attribution", {"model": "shapley"}, "model"),
        ("api:customer-attribution", {"window_days": "0"}, "window_days"),
        ("api:customer-attribution", {"half_life_days": "nan"}, "half_life_days"),
        ("api:customer-attribution", {"touch": "smelled"}, "touch"),
        ("api:customer-attribution", {"since": "yesterday"}, "since"),
        ("api:customer-attribution", {"since": "0001-01-05T00:00:00Z"}, "since"),
        ("api:customer-attribution", {"since": "2026-02-01T00:00Z", "until": "2026-01-01T00:00Z"}, "until"),
        ("api:customer-attribution", {"sequence_id": "-3"}, "sequence_id"),
    ],
)
def test_bad_query_parameters_are_a_400_problem_naming_the_field(route, query, field, shop):
    response = key_client(shop, ApiKey.Scope.READ).get(reverse(route), query)
    assert response.status_code == 400, response.content
    assert field in fields_of(response)
