"""Reads on sending domains, always within one organization, and the compliance checks a
sequence must pass before it starts."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from deliverability.dkim import domain_and_parents
from deliverability.models import SendingDomain

if TYPE_CHECKING:
    from organizations.models import Organization
    from sequences.models import EmailTemplate


def sending_domain_list(*, organization: Organization) -> QuerySet[SendingDomain]:
    return SendingDomain.objects.for_org(organization)


def sending_domain_get(*, organization: Organization, domain_id: int) -> SendingDomain:
    return get_object_or_404(sending_domain_list(organization=organization), pk=domain_id)


def sending_domain_for_address(*, organization: Organization, email: str) -> SendingDomain | None:
    """The organization's sending domain that covers `email`: its domain or the nearest parent."""
    domain = email.rpartition("@")[2].strip().lower().rstrip(".")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    found = list(sending_domain_list(organization=organization).filter(domain__in=domain_and_parents(domain)))
    return max(found, key=lambda row: len(row.domain), default=None)


# Compliance before activation -----------------------------------------------------------------


def activation_problems(
    *, organization: Organization, from_email: str, email_templates: list[tuple[int, EmailTemplate]]
) -> list[str]:
    """What keeps a sequence from starting, for the law and the mailbox providers: a sender on
    a sending domain not verified (when REQUIRE_VERIFIED_SENDING_DOMAIN), an email without a
    usable unsubscribe link, an organization without a postal address. `email_templates` is
    (step position, template) for each email step."""
    problems = []
    if not organization.postal_address.strip():
        problems.append(
            "The organization has no postal address, which every email must show (CAN-SPAM, CASL): add it in "
            "the organization's settings."
        )
    if settings.REQUIRE_VERIFIED_SENDING_DOMAIN:
        problem = _sender_problem(organization, from_email)
        if problem:
            problems.append(problem)
    for position, template in email_templates:
        problem = _unsubscribe_problem(organization, template)
        if problem:
            problems.append(f"Step {position}: template {template}: {problem}")
    return problems


def _sender_problem(organization: Organization, from_email: str) -> str:
    sending_domain = sending_domain_for_address(organization=organization, email=from_email)
    domain = from_email.rpartition("@")[2]
    if sending_domain is None:
        return (
            f"The sender {from_email} is not on a sending domain of the organization: register {domain} under "
            "sending domains, publish its DNS records and verify it."
        )
    if not sending_domain.is_verified:
        return (
            f"The sender's domain {sending_domain.domain} is not verified: publish its DNS records and run the DNS "
            "check until it passes."
        )
    return ""


# What a mail client does not show: comments, and the text of raw-text elements. An opening
# without its end hides everything after it (HTML's parsing rules), footer included.
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
RAW_TEXT = re.compile(r"<(script|style|title|textarea|template|noscript)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
UNCLOSED = re.compile(r"<!--|<(?:script|style|title|textarea|template|noscript)\b", re.IGNORECASE)
LINK_TARGET = re.compile(r"""<a\b[^>]*?\bhref\s*=\s*(["'])(.*?)\1""", re.DOTALL | re.IGNORECASE)


def _visible_link_targets(body_html: str) -> set[str]:
    visible = RAW_TEXT.sub("", COMMENT.sub("", body_html))
    unclosed = UNCLOSED.search(visible)
    if unclosed is not None:
        visible = visible[: unclosed.start()]
    return {html.unescape(match.group(2)).strip() for match in LINK_TARGET.finditer(visible)}


def _unsubscribe_problem(organization: Organization, template: EmailTemplate) -> str:
    """Empty when the email composed from `template` (as real sends compose it, for an empty
    contact) has a visible unsubscribe link in its HTML, the link in its text part, and the
    List-Unsubscribe headers. The footer adds all three, so a template lacks the link only
    when it hides the footer: an unclosed comment or <style>, or HTML after which the footer
    ends up inside a raw-text element."""
    from delivery import selectors as delivery_selectors  # delivery depends on this app, not the reverse
    from sequences.personalization import RenderError

    try:
        composed = delivery_selectors.template_compose(
            template=template,
            organization=organization,
            contact=delivery_selectors.SampleContact(email="sample@example.com"),
            sender=delivery_selectors.Sender(email=settings.DEFAULT_FROM_EMAIL),
        )
    except RenderError as error:
        return f"it cannot be rendered, so its unsubscribe link cannot be checked: {error}"
    headers = dict(composed.extra_headers)
    unsubscribe = headers.get("List-Unsubscribe", "").partition(">")[0].lstrip("<")
    if not unsubscribe or "List-Unsubscribe-Post" not in headers:
        return "the email has no List-Unsubscribe headers."
    if unsubscribe not in _visible_link_targets(composed.html):
        return (
            "its HTML hides the unsubscribe link of the footer (an unclosed comment, <style> or <script> before "
            "the end of the body?): close it so that the link shows."
        )
    if unsubscribe not in composed.text:
        return "its text part has no unsubscribe link."
    return ""
