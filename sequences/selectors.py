"""Reads on templates, sequences, steps and enrollments, always within one organization."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from organizations.models import Organization
from sequences.models import EmailTemplate, Enrollment, Sequence, Step
from subscribers.addresses import normalize_email
from subscribers.models import Contact, ContactList, Tag

# What enrollments_create needs of a contact.
CONTACT_FIELDS_FOR_ENROLLING = ("id", "organization_id", "status", "email")


def template_list(*, organization: Organization) -> QuerySet[EmailTemplate]:
    return EmailTemplate.objects.for_org(organization)


def template_get(*, organization: Organization, template_id: int) -> EmailTemplate:
    return get_object_or_404(template_list(organization=organization), pk=template_id)


def templates_by_id(*, organization: Organization, ids: Iterable[int]) -> dict[int, EmailTemplate]:
    """The organization's templates among `ids`; ids of other organizations are simply absent."""
    return {template.pk: template for template in template_list(organization=organization).filter(pk__in=set(ids))}


def tag_ids_owned(*, organization: Organization, ids: Iterable[int]) -> set[int]:
    return set(Tag.objects.for_org(organization).filter(pk__in=set(ids)).values_list("id", flat=True))


def contact_get(*, organization: Organization, contact_id: int, field_name: str = "contact_id") -> Contact:
    contact = Contact.objects.for_org(organization).filter(pk=contact_id).first()
    if contact is None:
        raise Http404(f"{field_name}: there is no contact {contact_id}.")
    return contact


def sequence_list(*, organization: Organization, status: str | None = None) -> QuerySet[Sequence]:
    """The organization's sequences with their steps (in order) prefetched."""
    sequences = Sequence.objects.for_org(organization).prefetch_related(
        Prefetch("steps", queryset=Step.objects.order_by("position"))
    )
    return sequences.filter(status=status) if status else sequences


def sequence_get(*, organization: Organization, sequence_id: int) -> Sequence:
    return get_object_or_404(sequence_list(organization=organization), pk=sequence_id)


def sequence_for_reference(*, organization: Organization, sequence_id: int, field_name: str) -> Sequence:
    """A sequence named inside a request body: 404 naming the field when it is not the organization's."""
    sequence = Sequence.objects.for_org(organization).filter(pk=sequence_id).first()
    if sequence is None:
        raise Http404(f"{field_name}: there is no sequence {sequence_id}.")
    return sequence


def enrollment_list(*, sequence: Sequence, status: str | None = None) -> QuerySet[Enrollment]:
    enrollments = Enrollment.objects.for_org(sequence.organization_id).filter(sequence=sequence)
    enrollments = enrollments.select_related("contact").only(
        "id",
        "contact_id",
        "contact__email",
        "sequence_id",
        "current_step_id",
        "status",
        "exit_reason",
        "next_run_at",
        "enrolled_at",
        "finished_at",
    )
    return enrollments.filter(status=status) if status else enrollments


@dataclass
class EnrollmentCandidates:
    """The contacts an enrollment request names, and what in it named no contact."""

    contacts: QuerySet[Contact]
    unknown_emails: list[str] = field(default_factory=list)
    invalid_emails: list[str] = field(default_factory=list)
    duplicates: int = 0


def enrollment_candidates(
    *,
    organization: Organization,
    contact_ids: list[int] | None = None,
    emails: list[str] | None = None,
    list_id: int | None = None,
) -> EnrollmentCandidates:
    """The organization's contacts named by ids, by email or by list (one of them).

    An id of a contact or list that is not the organization's raises Http404 naming the field;
    an email that is no contact's is reported, not an error (integrators send what they have).
    """
    contacts = Contact.objects.for_org(organization).only(*CONTACT_FIELDS_FOR_ENROLLING)
    if list_id is not None:
        if not ContactList.objects.for_org(organization).filter(pk=list_id).exists():
            raise Http404(f"list_id: there is no list {list_id}.")
        return EnrollmentCandidates(contacts=contacts.filter(lists__id=list_id))
    if contact_ids is not None:
        wanted = set(contact_ids)
        found = set(contacts.filter(pk__in=wanted).values_list("id", flat=True))
        missing = sorted(wanted - found)
        if missing:
            raise Http404(f"contact_ids: there is no contact {missing[0]}.")
        return EnrollmentCandidates(contacts=contacts.filter(pk__in=found), duplicates=len(contact_ids) - len(wanted))
    candidates = EnrollmentCandidates(contacts=contacts.none())
    normalized: dict[str, str] = {}
    for email in emails or []:
        try:
            address = normalize_email(email)
        except ValidationError:
            candidates.invalid_emails.append(email)
            continue
        if address in normalized:
            candidates.duplicates += 1
        else:
            normalized[address] = email
    known = set(contacts.filter(email__in=list(normalized)).values_list("email", flat=True))
    candidates.unknown_emails = [email for address, email in normalized.items() if address not in known]
    candidates.contacts = contacts.filter(email__in=known)
    return candidates
