from __future__ import annotations

import datetime as dt
import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils.text import slugify

from organizations.models import Membership, Organization
from organizations.services import membership_create, organization_create
from sequences import services as sequence_services
from sequences.models import EmailTemplate, Sequence, Step
from subscribers import services as subscriber_services
from subscribers.models import Contact

FIRST_NAMES = (
    "Ada", "Grace", "Alan", "Barbara", "Linus", "Margaret", "Dennis", "Radia", "Ken", "Frances",
    "Edsger", "Hedy", "Tim", "Katherine", "Guido", "Shafi", "Donald", "Sophie", "Niklaus", "Anita",
)  # fmt: skip

WELCOME_HTML = """<html><body>
<p>Hi {{ contact.first_name | default: "there" }},</p>
<p>Welcome to {{ organization.name }}! Here is how to get the most out of your first week.</p>
<p><a href="https://example.com/getting-started">Read the getting-started guide</a></p>
<p>See you soon,<br>The {{ organization.name }} team</p>
</body></html>"""

TIPS_HTML = """<html><body>
<p>Hi {{ contact.first_name | default: "there" }},</p>
<p>Three things our happiest customers do in their first days:</p>
<ul>
  <li><a href="https://example.com/tips/import">Import their contacts</a></li>
  <li><a href="https://example.com/tips/sequences">Build a first sequence</a></li>
  <li><a href="https://example.com/tips/analytics">Watch the results live</a></li>
</ul>
</body></html>"""

NUDGE_HTML = """<html><body>
<p>Hi {{ contact.first_name | default: "there" }}, did you miss our tips?</p>
<p><a href="https://example.com/tips">They take two minutes to read.</a></p>
</body></html>"""


class Command(BaseCommand):
    help = "Create (or complete) a demo organization with contacts enrolled in an active sequence. Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", default="demo", help="Organization name (default: demo).")
        parser.add_argument("--contacts", type=int, default=25, help="Number of contacts (default: 25).")
        parser.add_argument("--delay-minutes", type=int, default=5, help="Delay before the second email.")

    @transaction.atomic
    def handle(self, *args: Any, org: str, contacts: int, delay_minutes: int, **options: Any) -> None:
        organization = Organization.objects.filter(slug=slugify(org)).first() or organization_create(
            name=org, postal_address="Demo Company Ltd\n1 Example Street\nSpringfield 12345"
        )
        username, password = self._staff_user(organization)
        newsletter = subscriber_services.list_get_or_create(organization=organization, name="Newsletter")
        templates = {
            name: self._template(organization, name, subject, html)
            for name, subject, html in (
                ("Welcome", "Welcome, {{ contact.first_name | default: 'friend' }}!", WELCOME_HTML),
                ("Tips", "3 tips for your first week", TIPS_HTML),
                ("Nudge", "Did you miss this, {{ contact.first_name | default: 'friend' }}?", NUDGE_HTML),
            )
        }
        sequence = self._sequence(organization, templates, delay_minutes)

        domain = slugify(org) or "demo"
        for index in range(contacts):
            email = f"{FIRST_NAMES[index % len(FIRST_NAMES)].lower()}.{index + 1}@{domain}.example.com"
            contact = Contact.objects.filter(organization=organization, email=email).first()
            if contact is None:
                contact = subscriber_services.contact_create(
                    organization=organization,
                    email=email,
                    first_name=FIRST_NAMES[index % len(FIRST_NAMES)],
                    last_name="Example",
                    consent_source="seed_demo",
                )
            subscriber_services.contact_list_add(contact=contact, contact_list=newsletter)
        report = sequence_services.enrollments_create(
            sequence=sequence, contacts=Contact.objects.filter(organization=organization)
        )

        self.stdout.write(f"Organization: {organization.name} (id {organization.pk})")
        self.stdout.write(f"Sequence: {sequence.name} ({sequence.status}), {report.enrolled_count} newly enrolled")
        self.stdout.write(f"Log in at {settings.BASE_URL}/admin/ as {username!r}, password: {password}")
        self.stdout.write(f"Captured mail: {settings.BASE_URL}/mailbox/ (files under {settings.MAILBOX_DIR})")

    def _staff_user(self, organization: Organization) -> tuple[str, str]:
        username = f"{organization.slug}-admin"
        user = get_user_model().objects.filter(username=username).first()
        credentials = settings.VAR_DIR / f"{username}.credentials"
        if user is None:
            password = secrets.token_urlsafe(12)
            user = get_user_model().objects.create_user(
                username=username, email=f"{username}@example.com", password=password, is_staff=True
            )
            credentials.unlink(missing_ok=True)
            with os.fdopen(os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
                handle.write(password + "\n")
        elif credentials.exists():
            password = credentials.read_text().strip()
        else:
            password = f"(unchanged; reset it with `manage.py changepassword {username}`)"
        if not Membership.objects.filter(user=user, organization=organization).exists():
            membership_create(organization=organization, user=user, role=Membership.Role.OWNER)
        return username, password

    def _template(self, organization: Organization, name: str, subject: str, html: str) -> EmailTemplate:
        existing = EmailTemplate.objects.filter(organization=organization, name=name).first()
        return existing or sequence_services.template_create(
            organization=organization, name=name, subject=subject, html_body=html
        )

    def _sequence(
        self, organization: Organization, templates: dict[str, EmailTemplate], delay_minutes: int
    ) -> Sequence:
        sequence = Sequence.objects.filter(organization=organization, name="Onboarding").first()
        if sequence is None:
            sequence = sequence_services.sequence_create(
                organization=organization,
                name="Onboarding",
                from_name=f"{organization.name} team",
                from_email=f"hello@{organization.slug}.example.com",
                description="Welcome now; tips after a delay; a nudge for those who clicked nothing.",
            )
            step = sequence_services.step_create
            step(sequence=sequence, kind=Step.Kind.EMAIL, template=templates["Welcome"], name="Welcome")
            step(sequence=sequence, kind=Step.Kind.DELAY, delay=dt.timedelta(minutes=delay_minutes), name="Wait")
            step(sequence=sequence, kind=Step.Kind.EMAIL, template=templates["Tips"], name="Tips")
            step(sequence=sequence, kind=Step.Kind.DELAY, delay=dt.timedelta(minutes=delay_minutes), name="Wait")
            condition = step(
                sequence=sequence,
                kind=Step.Kind.CONDITION,
                condition={"type": "clicked", "step": None},
                name="Clicked?",
            )
            done = step(sequence=sequence, kind=Step.Kind.EXIT, name="Engaged: done")
            nudge = step(sequence=sequence, kind=Step.Kind.EMAIL, template=templates["Nudge"], name="Nudge")
            sequence_services.step_update(step=condition, yes_step=done, no_step=nudge)
        if sequence.status == Sequence.Status.DRAFT:
            sequence = sequence_services.sequence_activate(sequence=sequence)
        return sequence
