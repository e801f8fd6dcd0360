"""Delivery through an email service provider's HTTP API, by way of django-anymail."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.core.mail import EmailMultiAlternatives, get_connection

from delivery.transports.base import Outcome, SendResult, Transport, TransportUnavailable, summary

if TYPE_CHECKING:
    from delivery.composer import ComposedMessage
    from emailseq.environment import EmailConfig

ACCEPTED_STATUSES = {"sent", "queued"}
PERMANENT_STATUSES = {"rejected", "invalid"}


# Amazon SES takes its account and region as boto3 session parameters, not as options of its own.
AMAZON_SES_SESSION_OPTIONS = {
    "access_key_id": "aws_access_key_id",
    "secret_access_key": "aws_secret_access_key",
    "region_name": "region_name",
}


def backend_options(config: EmailConfig) -> dict[str, object]:
    """The route's own provider settings as the backend's keyword arguments (anymail reads
    `api_key=` before settings.ANYMAIL's `POSTMARK_API_KEY`), so routes of one provider with
    different accounts live side by side."""
    module = config.anymail_backend.split(".")[-2] if config.anymail_backend.count(".") >= 2 else ""
    prefix = f"{module.upper()}_"
    options: dict[str, object] = {
        (name[len(prefix) :] if name.startswith(prefix) else name).lower(): value
        for name, value in config.anymail_settings.items()
    }
    if module == "amazon_ses":
        session = {key: options.pop(name) for name, key in AMAZON_SES_SESSION_OPTIONS.items() if name in options}
        if session:
            options["session_params"] = session
    return options


def error_summary(error: AnymailError) -> str:
    """One short line for an API error: the HTTP status and the start of the answer. Anymail's
    own text carries the whole answer, which an endpoint could fill with anything."""
    status = getattr(error, "status_code", None)
    response = getattr(error, "response", None)
    if status is None or response is None:
        return summary(str(error))
    try:
        answer = json.dumps(response.json(), separators=(",", ":"))
    except ValueError:
        answer = next((line for line in response.text.splitlines() if line.strip()), "")
    return summary(f"{error.esp_name or 'provider'} answered {status} {response.reason or ''}: {answer}")


def _maybe_delivered(error: BaseException) -> bool:
    """A request that timed out waiting for the answer may have been accepted."""
    cause = error.__cause__ or error.__context__
    return cause is not None and "ReadTimeout" in type(cause).__name__


class AnymailTransport(Transport):
    def __init__(self, config: EmailConfig) -> None:
        self.connection = get_connection(config.anymail_backend, fail_silently=False, **backend_options(config))

    def send(self, message: ComposedMessage, *, organization_id: int) -> SendResult:
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=message.from_header,
            to=[message.recipient],
            headers=dict(message.extra_headers),
            connection=self.connection,
        )
        email.attach_alternative(message.html, "text/html")
        try:
            email.send()
        except AnymailRecipientsRefused as error:
            return SendResult(Outcome.PERMANENT, error_summary(error))
        except AnymailAPIError as error:
            status = getattr(error, "status_code", None)
            # Throttling, outages and account problems (bad key, suspended) are the route's.
            if status is None or status in (401, 403, 429) or status >= 500:
                raise TransportUnavailable(
                    error_summary(error),
                    throttled=status == 429,
                    maybe_delivered=status is None and _maybe_delivered(error),
                ) from error
            # Other 4xx API errors are about this request, not the recipient.
            return SendResult(Outcome.TRANSIENT, error_summary(error))
        except AnymailError as error:
            raise TransportUnavailable(error_summary(error), maybe_delivered=_maybe_delivered(error)) from error
        status = email.anymail_status
        recipient_status = status.recipients.get(message.recipient)
        state = recipient_status.status if recipient_status else next(iter(status.status or {"queued"}))
        provider_id = str(recipient_status.message_id if recipient_status else status.message_id or "")
        if state in ACCEPTED_STATUSES:
            return SendResult(Outcome.ACCEPTED, f"{state} by provider", provider_message_id=provider_id)
        if state in PERMANENT_STATUSES:
            return SendResult(Outcome.PERMANENT, f"{state} by provider", provider_message_id=provider_id)
        return SendResult(Outcome.TRANSIENT, f"{state} by provider", provider_message_id=provider_id)
