"""contact_create and contact_update keep a contact's details valid: a well-formed address,
properties that are an object of names to values, a known time zone."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from organizations.tests.factories import OrganizationFactory
from subscribers import services
from subscribers.models import Contact

pytestmark = pytest.mark.django_db


def test_a_contact_is_stored_with_its_address_normalized_and_names_trimmed() -> None:
    contact = services.contact_create(
        organization=OrganizationFactory(), email=" Zoe@BÜCHER.Example ", first_name="  Zoe "
    )

    contact.refresh_from_db()
    assert (contact.email, contact.first_name) == ("zoe@xn--bcher-kva.example", "Zoe")


def test_a_malformed_address_is_refused_on_the_email_field() -> None:
    organization = OrganizationFactory()

    with pytest.raises(ValidationError) as refused:
        services.contact_create(organization=organization, email="not an address")

    assert list(refused.value.message_dict) == ["email"]
    assert not Contact.objects.exists()


@pytest.mark.parametrize("properties", [["plan", "pro"], "plan=pro", 42, True])
def test_properties_that_are_not_an_object_are_refused_on_create_and_update(properties: object) -> None:
    organization = OrganizationFactory()
    with pytest.raises(ValidationError) as refused:
        services.contact_create(organization=organization, email="ada@example.com", properties=properties)
    assert "properties" in refused.value.message_dict
    contact = services.contact_create(organization=organization, email="ada@example.com", properties={"plan": "pro"})

    with pytest.raises(ValidationError) as refused_update:
        services.contact_update(contact=contact, properties=properties)

    assert "properties" in refused_update.value.message_dict
    contact.refresh_from_db()
    assert contact.properties == {"plan": "pro"}


def test_properties_of_any_json_values_are_kept() -> None:
    properties = {"plan": "pro", "seats": 3, "vip": True, "tags": ["a", "b"], "address": {"city": "Lyon"}}

    contact = services.contact_create(
        organization=OrganizationFactory(), email="ada@example.com", properties=properties
    )

    contact.refresh_from_db()
    assert contact.properties == properties


def test_an_unknown_time_zone_is_refused_and_a_known_one_kept() -> None:
    organization = OrganizationFactory()

    with pytest.raises(ValidationError) as refused:
        services.contact_create(organization=organization, email="ada@example.com", timezone_name="Europe/Atlantis")
    contact = services.contact_create(organization=organization, email="ada@example.com", timezone_name="Asia/Tokyo")

    assert "timezone" in refused.value.message_dict
    with pytest.raises(ValidationError):
        services.contact_update(contact=contact, timezone="Moon/Base")
    contact.refresh_from_db()
    assert contact.timezone == "Asia/Tokyo"


def test_an_update_normalizes_a_new_address() -> None:
    contact = services.contact_create(organization=OrganizationFactory(), email="ada@example.com")

    services.contact_update(contact=contact, email=" Ada.L@Example.ORG")

    contact.refresh_from_db()
    assert contact.email == "ada.l@example.org"


def test_an_update_cannot_touch_status_or_consent() -> None:
    contact = services.contact_create(organization=OrganizationFactory(), email="ada@example.com")

    with pytest.raises(TypeError, match="status"):
        services.contact_update(contact=contact, status=Contact.Status.ACTIVE)


def test_consent_given_with_a_source_is_dated() -> None:
    contact = services.contact_create(
        organization=OrganizationFactory(),
        email="ada@example.com",
        consent_source="signup form",
        consent_ip="203.0.113.9",
    )

    assert contact.consented_at is not None
    assert (contact.consent_source, contact.consent_ip) == ("signup form", "203.0.113.9")
    assert contact.status == Contact.Status.ACTIVE and contact.is_mailable
