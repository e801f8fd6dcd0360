"""Reading delivery reports: what failed, for whom, and what it means for the address.

`parse_report` takes a whole message as received by the bounce receiver and returns one
`RecipientReport` per failed recipient. It reads, in this order of trust:

1. ARF complaint reports (RFC 5965) and the few providers that complain without the format
   (Hotmail's "complaint about message", Apple Mail's one-click unsubscribe);
2. delivery status notifications (RFC 3464): per-recipient Final-Recipient, Action, Status and
   Diagnostic-Code fields, wherever the MTA put them;
3. auto-replies (RFC 3834 and the older vacation headers);
4. free-text bounces (qmail, Exim, old Sendmail, Exchange, Gmail, Yahoo, ...): the failed
   recipients and their SMTP replies picked out of the prose.

`classify_status` is the one rule that turns a status code, reply code and diagnostic text into a
classification; the parser, the SMTP sender and the provider webhooks all use it. Only a failure
about the address itself (unknown user or domain, a domain that takes no mail, a mailbox that has
moved) is `hard`; every other failure is `soft`, even a permanent one, because a spam filter or a
blocked IP says nothing about whether the address is worth keeping.
"""

from __future__ import annotations

import email
import json
import logging
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parseaddr

from deliverability import bounce_patterns as patterns
from deliverability.models import BounceReport

logger = logging.getLogger(__name__)

Classification = BounceReport.Classification

DIAGNOSTIC_LIMIT = 1000
ADDRESS = re.compile(patterns.EMAIL_ADDRESS)


@dataclass(frozen=True)
class RecipientReport:
    recipient: str  # failed address as reported, lower-cased, "" if unknown
    status: str  # enhanced status code "5.1.1", "" if none
    reply: str  # SMTP reply code "550", "" if none
    classification: str  # a BounceReport.Classification value
    reason: str  # short reason name, Sisimai-like: userunknown, mailboxfull, feedback, vacation, ...
    diagnostic: str  # the diagnostic text (trimmed, <= 1000 chars)
    feedback_type: str = ""  # ARF feedback type (abuse, opt-out, auth-failure, ...)
    # A warning that the message is delayed (a DSN's "Action: delayed"): the reporting MTA is still
    # trying, so nothing about the address is known yet.
    delay_warning: bool = False


@dataclass(frozen=True)
class ParsedReport:
    kind: str  # "dsn", "arf", "auto_reply", "unknown"
    recipients: list[RecipientReport]  # empty when the message is not a bounce
    original_headers: dict[str, str]  # headers of the returned original message, lower-case names
    report_message_id: str  # Message-ID of the report itself, "" if none
    subject: str = ""

    @property
    def classification(self) -> str:
        """The message's class when it has no recipient: not a bounce."""
        return self.recipients[0].classification if self.recipients else Classification.NOT_BOUNCE


def parse_report(raw: bytes) -> ParsedReport:
    """Parse a whole RFC 5322 message. Never raises: a message nobody can read is `unknown`."""
    try:
        return _parse(raw)
    except Exception:  # one malformed report must not stop the receiver
        logger.exception("Could not parse a delivery report of %d bytes", len(raw))
        return ParsedReport(kind="unknown", recipients=[], original_headers={}, report_message_id="")


def classify_status(*, status: str = "", reply: str = "", diagnostic: str = "", command: str = "") -> tuple[str, str]:
    """(classification, reason) for one failure: the rule the parser applies to each recipient,
    also used for refusals during sending and for provider webhooks. Codes missing from the
    arguments are read from `diagnostic` (a server's reply such as "550 5.1.1 No such user");
    `command` is the SMTP command refused ("rcpt", "data", ...) when the caller knows it."""
    text_status, text_reply = _codes_in(diagnostic)
    return _classify(
        status=status or text_status,
        reply=reply or text_reply,
        diagnostic=diagnostic,
        action="",
        transcript=_COMMAND_WORDS.get(command.lower().strip(), ""),
    )


# How a caller's command reads to the transcript reader.
_COMMAND_WORDS = {
    "rcpt": "in reply to rcpt to command",
    "rcpt to": "in reply to rcpt to command",
    "mail": "in reply to mail from command",
    "mail from": "in reply to mail from command",
    "data": "in reply to end of data command",
    "helo": "in reply to helo command",
    "ehlo": "in reply to ehlo command",
}


# --- classification ---------------------------------------------------------------------------


def reason_for(
    *,
    status: str,
    reply: str,
    diagnostic: str,
    action: str = "",
    context: str = "",
    transcript: str = "",
    hint: str = "",
) -> str:
    """The Sisimai-like reason name of one failure. `context` is the human-readable report about
    this recipient, `transcript` the whole report, read only for the SMTP command the reply
    answered; `hint` is a reason the reporting MTA stated in a field of its own (PowerMTA's
    bounce category)."""
    text = " ".join(diagnostic.lower().split())
    if status.startswith("2.") or action in ("delivered", "relayed", "expanded"):
        return "delivered"
    if hint:
        return hint
    command = next((found for found in map(_smtp_command, (text, _folded(context), _folded(transcript))) if found), "")
    by_status = _status_reason(status)
    by_text = _reason_from_text(text)
    if by_text == "hostunknown" and patterns.DNS_TROUBLE.search(text):
        by_text = "networkerror"
    if by_status == "userunknown":
        # 5.1.1 stands unless the report shows the code was used loosely.
        loosely = " ".join(f"{text} {context}".lower().split())
        return _reason_from_text(loosely, among=patterns.OVERRIDE_USER_UNKNOWN) or "userunknown"
    if by_text == "userunknown" and command in ("mail", "helo", "ehlo", "connect", "initial connection"):
        # "Unknown user" answered to MAIL FROM or HELO is about our sender, not the recipient.
        by_text = _reason_from_text(text, skip="userunknown") or "rejected"
    elif by_text == "userunknown" and command != "rcpt" and not patterns.RECIPIENT_LOOKUP_FAILED.search(text):
        # The same words come back from per-user content filters after DATA; unless the refusal
        # answered RCPT TO, or the text is a directory lookup that can only be about the mailbox,
        # it does not prove the address is gone.
        by_text = "filtered"
    if by_status and by_status not in patterns.VAGUE_REASONS:
        return "userunknown" if by_status == "filtered" and by_text == "userunknown" else by_status
    if by_status == "hostunknown":
        return "networkerror" if by_text == "networkerror" else "hostunknown"
    if by_text:
        return by_text
    if by_status:
        return by_status
    if reply in ("521", "556"):
        return "notaccept"
    if reply == "525":
        return "suspend"
    if action in ("delayed", "expired"):
        return "expired"
    if status.startswith(("5.7", "4.7")):
        return "securityerror"
    if status.startswith(("5.6", "4.6")):
        return "contenterror"
    if status or reply or text:
        return "onhold"
    return "undefined"


def _folded(text: str) -> str:
    return " ".join(text.lower().split())


def _status_reason(status: str) -> str:
    if status in patterns.STATUS_REASONS:
        return patterns.STATUS_REASONS[status]
    # Other codes of subject 1 (4.1.1, Exchange's 5.1.351) are still about the address (RFC 3463).
    return "userunknown" if status.startswith(("5.1.", "4.1.")) else ""


def _classify(
    *, status: str, reply: str, diagnostic: str, action: str, context: str = "", transcript: str = "", hint: str = ""
) -> tuple[str, str]:
    reason = reason_for(
        status=status,
        reply=reply,
        diagnostic=diagnostic,
        action=action,
        context=context,
        transcript=transcript,
        hint=hint,
    )
    if reason == "delivered":
        return str(Classification.DELIVERED), reason
    if reason in patterns.ADDRESS_REASONS:
        # A temporary failure is never a reason to drop an address, whatever the text says.
        temporary = status.startswith("4.") or (not status and reply.startswith("4")) or action == "delayed"
        return str(Classification.SOFT if temporary else Classification.HARD), reason
    return str(Classification.SOFT), reason


def _reason_from_text(text: str, *, skip: str = "", among: frozenset[str] | None = None) -> str:
    for reason, pattern in patterns.REASON_PHRASES:
        if reason == skip or (among is not None and reason not in among):
            continue
        if pattern.search(text):
            return reason
    return ""


def _smtp_command(text: str) -> str:
    """The SMTP command a refusal answered, from a lower-cased diagnostic or session transcript."""
    command = ""
    error = patterns.TRANSCRIPT_ERROR.search(text)
    sent = list(patterns.TRANSCRIPT_COMMAND.finditer(text[: error.start()])) if error else []
    if sent:
        command = sent[-1].group(1)
    else:
        found = patterns.SMTP_COMMAND.search(text)
        if found:
            command = next(group for group in found.groups() if group)
    command = " ".join(command.split())
    return {
        "rcpt to": "rcpt",
        "rcptto": "rcpt",
        "address": "rcpt",
        "recipient": "rcpt",
        "mail from": "mail",
        "mailfrom": "mail",
    }.get(command, command)


# --- status and reply codes -------------------------------------------------------------------


def _codes_in(text: str) -> tuple[str, str]:
    """The first (status, reply) an SMTP reply in `text` carries."""
    replies = list(patterns.REPLY_BEFORE_STATUS.finditer(text))
    if replies:
        # "4.4.7 message expired" often quotes the reply that made it expire: that one is the cause.
        cause = next((later for later in replies[1:] if replies[0].group(2)[1:] == ".4.7"), replies[0])
        return cause.group(2), cause.group(1)
    status_match = patterns.STATUS_CODE.search(text)
    status = status_match.group(1) if status_match else ""
    reply_match = patterns.REPLY_CODE.search(text)
    return status, reply_match.group(1) if reply_match else ""


def _preferred_status(field_status: str, text_status: str, reply: str) -> str:
    """Between the DSN's Status field and the code in its diagnostic, the more specific one."""
    if not field_status:
        return text_status
    if not text_status or text_status == field_status:
        return field_status
    if reply and field_status[0] != text_status[0]:
        return text_status if reply[0] == text_status[0] else field_status
    if field_status[0] != text_status[0]:
        return field_status
    if field_status.endswith(".0.0"):
        return text_status
    if field_status == "5.1.1":
        return field_status if ".0" in text_status or text_status.startswith("5.5.") else text_status
    if field_status.split(".")[2] == "0" and text_status.split(".")[2] != "0":
        return text_status
    if (
        field_status in ("4.4.7", "4.7.0")
        or field_status.startswith("5.3.")
        or field_status[1:4] in (".5.1", ".5.2", ".5.4")
    ):
        return text_status
    return field_status


# --- MIME ---------------------------------------------------------------------------------------


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    if value is None:
        return ""
    if isinstance(value, str) and not value.isascii():
        # Raw 8-bit header bytes (compat32 keeps them as surrogates): most are UTF-8.
        value = value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    try:
        return " ".join(str(make_header(decode_header(str(value)))).split())
    except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
        return " ".join(str(value).split())


def _decoded_payload(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        inner = part.get_payload()
        return inner if isinstance(inner, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except (LookupError, UnicodeError):
        return payload.decode("utf-8", errors="replace")


def _fields_text(part: Message) -> str:
    """The text of a part the parser split into header-only sub-messages (delivery-status)."""
    inner = part.get_payload()
    if isinstance(inner, str):
        return _decoded_payload(part)
    blocks = []
    for block in inner:
        lines = [f"{name}: {value}" for name, value in block.items()]
        rest = block.get_payload()
        if isinstance(rest, str) and rest.strip():
            lines.append(rest)
        blocks.append("\n".join(lines))
    return _iso2022_decoded("\n\n".join(blocks))


def _iso2022_decoded(text: str) -> str:
    """Japanese MTAs write ISO-2022-JP into parts that declare no charset."""
    if "\x1b$" not in text:
        return text
    try:
        return text.encode("ascii", errors="surrogateescape").decode("iso-2022-jp", errors="replace")
    except (UnicodeError, LookupError):
        return text


def _headers_dict(message: Message) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name in message:
        key = name.lower()
        if key not in headers:
            headers[key] = _header(message, name)
    return headers


def _headers_from_text(text: str) -> dict[str, str]:
    text = text.lstrip("\n")
    head = text.split("\n\n", 1)[0]
    if not patterns.DSN_FIELD.match(head.split("\n", 1)[0]):
        return {}
    return _headers_dict(email.message_from_string(head + "\n\n", policy=compat32))


def _children(part: Message) -> list[Message]:
    """The parts of a multipart, also when the declared boundary is not the one the body uses."""
    if part.is_multipart():
        return list(part.get_payload())
    body = part.get_payload()
    if not isinstance(body, str):
        return []
    found = re.search(r"^--([^\s]{6,70}?)[ \t]*$", body, re.MULTILINE)
    if not found:
        return [email.message_from_string("Content-Type: text/plain\n\n" + body, policy=compat32)]
    rebuilt = email.message_from_string(
        f'Content-Type: multipart/mixed; boundary="{found.group(1)}"\n\n{body}', policy=compat32
    )
    return list(rebuilt.get_payload()) if rebuilt.is_multipart() else []


@dataclass
class _Parts:
    texts: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    delivery_status: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    original: dict[str, str] = field(default_factory=dict)
    attached: Message | None = None

    def visit(self, part: Message) -> None:
        content_type = part.get_content_type()
        if content_type.startswith("multipart/"):
            for child in _children(part):
                self.visit(child)
        elif content_type in ("message/delivery-status", "message/global-delivery-status"):
            self.delivery_status.append(_fields_text(part))
        elif content_type == "message/feedback-report":
            self.feedback.append(_fields_text(part))
        elif content_type in ("message/rfc822", "message/global", "message/partial"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and not self.original:
                self.original = _headers_dict(inner[0])
                self.attached = inner[0]
            elif isinstance(inner, str) and not self.original:
                self.original = _headers_from_text(inner)
        elif content_type in ("text/rfc822-headers", "text/rfc822-header", "message/rfc822-headers"):
            if not self.original:
                self.original = _headers_from_text(_decoded_payload(part))
        elif content_type == "text/html":
            self.html.append(patterns.HTML_TAG.sub(" ", _decoded_payload(part)))
        elif content_type.startswith("text/") or content_type == "message/disposition-notification":
            self.texts.append(_decoded_payload(part))

    def report_text(self) -> str:
        """The human-readable report, without any copy of the original message."""
        text = "\n".join(self.texts) if self.texts else "\n".join(self.html)
        marker = patterns.ORIGINAL_MESSAGE_MARKERS.search(text)
        if marker:
            copy = text[marker.end() :].split("\n", 1)[-1]
            if not self.original:
                self.original = _headers_from_text(copy)
            text = text[: marker.start()]
        return text


# --- the parser ---------------------------------------------------------------------------------


def _parse(raw: bytes) -> ParsedReport:
    raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return _parse_message(email.message_from_bytes(raw, policy=compat32), depth=0)


def _parse_message(message: Message, *, depth: int) -> ParsedReport:
    parts = _Parts()
    parts.visit(message)
    report_text = parts.report_text()
    report_message_id = _header(message, "Message-ID").strip()
    subject = _header(message, "Subject")

    def result(kind: str, recipients: list[RecipientReport]) -> ParsedReport:
        return ParsedReport(
            kind=kind,
            recipients=recipients,
            original_headers=parts.original,
            report_message_id=report_message_id,
            subject=subject,
        )

    notification = _provider_notification(report_text)
    if notification:
        return result(*notification)
    complaint = _feedback_recipients(message, parts, subject)
    if complaint:
        return result("arf", complaint)
    dsn_text = "\n\n".join(parts.delivery_status)
    if not dsn_text and re.search(r"^(?:final|original)-recipient:", report_text, re.IGNORECASE | re.MULTILINE):
        dsn_text = report_text
    if dsn_text:
        recipients = _dsn_recipients(dsn_text, report_text)
        if recipients:
            return result("dsn", recipients)
    sender = _header(message, "From")
    if _is_auto_reply(message, subject, sender) and not parts.delivery_status:
        address = parseaddr(sender)[1].lower()
        return result(
            "auto_reply",
            [
                RecipientReport(
                    recipient=address,
                    status="",
                    reply="",
                    classification=Classification.AUTO_REPLY,
                    reason="vacation",
                    diagnostic=_trim(subject),
                )
            ],
        )
    if _looks_like_bounce(message, subject, sender) or parts.delivery_status:
        recipients = _text_recipients(message, report_text)
        if recipients:
            return result("dsn", recipients)
    if (
        depth == 0
        and parts.attached is not None
        and _looks_like_bounce(parts.attached, _header(parts.attached, "Subject"), _header(parts.attached, "From"))
    ):
        # A bounce forwarded as an attachment, or a bounce of a bounce: the report is inside.
        inner = _parse_message(parts.attached, depth=1)
        if inner.recipients:
            return ParsedReport(
                kind=inner.kind,
                recipients=inner.recipients,
                original_headers=inner.original_headers or parts.original,
                report_message_id=report_message_id,
                subject=subject,
            )
    return result("unknown", [])


def _trim(text: str) -> str:
    return " ".join(text.split())[:DIAGNOSTIC_LIMIT]


# --- complaints -------------------------------------------------------------------------------


def _feedback_recipients(message: Message, parts: _Parts, subject: str) -> list[RecipientReport]:
    fields: list[tuple[str, str]] = []
    for text in parts.feedback:
        fields.extend(_field_lines(text))
    if not fields and re.search(r"^feedback-type:", "\n".join(parts.texts), re.IGNORECASE | re.MULTILINE):
        fields = _field_lines("\n".join(parts.texts))
    feedback_type = next((value.lower().split()[0] for name, value in fields if name == "feedback-type" and value), "")
    if not feedback_type:
        if _header(message, "X-Apple-Unsubscribe").lower() == "true":
            feedback_type = "opt-out"
            addresses = [parseaddr(_header(message, "From"))[1]]
        elif patterns.COMPLAINT_SUBJECT.search(subject) and parts.original:
            feedback_type = "abuse"
            addresses = [parts.original.get("x-hmxmroriginalrecipient", "")]
        else:
            return []
    else:
        addresses = [value for name, value in fields if name == "original-rcpt-to"]
        addresses = addresses or [value for name, value in fields if name == "removal-recipient"]
    if not any(addresses):
        addresses = [address for _, address in getaddresses([parts.original.get("to", "")]) if "@" in address]
    classification = {"abuse": Classification.COMPLAINT, "opt-out": Classification.UNSUBSCRIBE}.get(
        feedback_type, Classification.COMPLAINT if feedback_type in ("fraud", "virus") else Classification.NOT_BOUNCE
    )
    if feedback_type == "opt-out" or feedback_type.startswith("opt-out"):
        classification = Classification.UNSUBSCRIBE
    diagnostic = _trim(" ".join(f"{name}: {value}" for name, value in fields) or subject)
    return [
        RecipientReport(
            recipient=_address(address),
            status="",
            reply="",
            classification=classification,
            reason="feedback",
            diagnostic=diagnostic,
            feedback_type=feedback_type,
        )
        for address in (addresses or [""])
    ]


def _field_lines(text: str) -> list[tuple[str, str]]:
    """`Name: value` lines with folded continuations joined, names lower-cased."""
    fields: list[tuple[str, str]] = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        found = patterns.DSN_FIELD.match(line)
        if found:
            fields.append((found.group(1).lower(), found.group(2).strip()))
    return fields


def _address(value: str) -> str:
    """The address in a field value such as `rfc822; <User@Example.com>`, lower-cased."""
    value = value.split(";", 1)[-1] if ";" in value else value
    found = ADDRESS.search(value)
    if found:
        return found.group(0).lower()
    return value.strip().strip("<>").lower()


# --- delivery status notifications --------------------------------------------------------------


def _dsn_recipients(dsn_text: str, report_text: str) -> list[RecipientReport]:
    groups: list[dict[str, str]] = []
    for block in re.split(r"\n[ \t]*\n", dsn_text):
        fields = _field_lines(block)
        if not any(name in patterns.RECIPIENT_FIELDS for name, _ in fields):
            # A per-message block, or the rest of the previous recipient's fields.
            if groups:
                for name, value in fields:
                    groups[-1].setdefault(name, value)
            continue
        current: dict[str, str] = {}
        groups.append(current)
        for name, value in fields:
            if name in current and name in patterns.RECIPIENT_FIELDS:
                current = {}
                groups.append(current)
            current.setdefault(name, value)
    recipients = []
    seen: set[tuple[str, str]] = set()
    for group in groups:
        address = _address(
            group.get("final-recipient") or group.get("original-recipient") or group.get("x-actual-recipient", "")
        )
        action = group.get("action", "").lower().split(" ")[0] if group.get("action") else ""
        diagnostic = group.get("diagnostic-code", "")
        diagnostic = diagnostic.split(";", 1)[1].strip() if ";" in diagnostic[:20] else diagnostic.strip()
        context = diagnostic or _context_of(address, report_text)
        field_status = (patterns.STATUS_CODE.search(group.get("status", "")) or [""])[0]
        text_status, reply = _codes_in(context)
        status = _preferred_status(field_status, text_status, reply)
        if (address, status) in seen:
            continue
        seen.add((address, status))
        hint = patterns.VENDOR_CATEGORIES.get(group.get("x-powermta-bouncecategory", "").lower(), "")
        classification, reason = _classify(
            status=status,
            reply=reply,
            diagnostic=context,
            action=action,
            context=f"{group.get('status', '')}\n{_context_of(address, report_text)}",
            hint=hint,
        )
        recipients.append(
            RecipientReport(
                recipient=address,
                status=status,
                reply=reply,
                classification=classification,
                reason=reason,
                diagnostic=_trim(context),
                delay_warning=action == "delayed",
            )
        )
    return recipients


def _context_of(address: str, report_text: str) -> str:
    """The lines of the human-readable part about one recipient, when its DSN fields say little."""
    if not report_text.strip():
        return ""
    at = report_text.lower().find(address) if address else -1
    if at < 0:
        return report_text[-DIAGNOSTIC_LIMIT:]
    return report_text[at : at + DIAGNOSTIC_LIMIT]


# --- provider notifications ---------------------------------------------------------------------


def _provider_notification(report_text: str) -> tuple[str, list[RecipientReport]] | None:
    """Amazon SES notifications mailed through SNS: a JSON document, wrapped at 76 columns."""
    if "notificationType" not in report_text:
        return None
    body = report_text[report_text.find("{") : report_text.rfind("}") + 1]
    for candidate in (body.replace("\n ", ""), body.replace("\n", "")):
        try:
            document = json.loads(candidate)
            break
        except ValueError:
            continue
    else:
        return None
    if isinstance(document, dict) and isinstance(document.get("Message"), str):
        try:
            document = json.loads(document["Message"])
        except ValueError:
            return None
    if not isinstance(document, dict):
        return None
    kind = str(document.get("notificationType") or document.get("eventType") or "").lower()
    if kind == "complaint":
        complaint = document.get("complaint") or {}
        feedback_type = str(complaint.get("complaintFeedbackType") or "abuse").lower()
        return "arf", [
            RecipientReport(
                recipient=str(entry.get("emailAddress", "")).lower(),
                status="",
                reply="",
                classification=Classification.UNSUBSCRIBE if feedback_type == "opt-out" else Classification.COMPLAINT,
                reason="feedback",
                diagnostic=_trim(str(complaint.get("userAgent", ""))),
                feedback_type=feedback_type,
            )
            for entry in complaint.get("complainedRecipients") or [{}]
        ]
    if kind == "bounce":
        bounce = document.get("bounce") or {}
        recipients = []
        for entry in bounce.get("bouncedRecipients") or [{}]:
            diagnostic = str(entry.get("diagnosticCode") or "")
            diagnostic = diagnostic.split(";", 1)[1].strip() if ";" in diagnostic[:20] else diagnostic
            text_status, reply = _codes_in(diagnostic)
            status = _preferred_status(str(entry.get("status") or ""), text_status, reply)
            reported_action = str(entry.get("action") or "failed").lower()
            action = reported_action
            if str(bounce.get("bounceType")) == "Transient" and not status:
                # Classified as temporary; SES reports a transient bounce only once it stopped
                # trying, so it is no delay warning.
                action = "delayed"
            classification, reason = _classify(status=status, reply=reply, diagnostic=diagnostic, action=action)
            recipients.append(
                RecipientReport(
                    recipient=str(entry.get("emailAddress", "")).lower(),
                    status=status,
                    reply=reply,
                    classification=classification,
                    reason=reason,
                    diagnostic=_trim(diagnostic),
                    delay_warning=reported_action == "delayed",
                )
            )
        return "dsn", recipients
    if kind == "delivery":
        delivery = document.get("delivery") or {}
        return "dsn", [
            RecipientReport(
                recipient=str(address).lower(),
                status="2.0.0",
                reply="250",
                classification=Classification.DELIVERED,
                reason="delivered",
                diagnostic=_trim(str(delivery.get("smtpResponse", ""))),
            )
            for address in delivery.get("recipients") or [""]
        ]
    return None


# --- auto-replies -------------------------------------------------------------------------------


def _is_auto_reply(message: Message, subject: str, sender: str) -> bool:
    if patterns.BOUNCE_SENDER.search(sender) or patterns.BOUNCE_SUBJECT.search(subject):
        return False
    if any(message.get(name) for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress-Vacation")):
        return True
    if _header(message, "Precedence").lower() == "auto_reply":
        return True
    auto_submitted = _header(message, "Auto-Submitted").lower()
    if auto_submitted.startswith("auto-replied"):
        return True
    return bool(patterns.AUTO_REPLY_SUBJECT.search(subject))


# --- free-text bounces --------------------------------------------------------------------------


def _looks_like_bounce(message: Message, subject: str, sender: str) -> bool:
    if message.get("X-Failed-Recipients"):
        return True
    if patterns.BOUNCE_SENDER.search(sender) or patterns.BOUNCE_SUBJECT.search(subject):
        return True
    return _header(message, "Return-Path").strip() == "<>"


def _text_recipients(message: Message, report_text: str) -> list[RecipientReport]:
    own = {
        address.lower()
        for _, address in getaddresses(
            [_header(message, name) for name in ("From", "To", "Return-Path", "Sender", "Reply-To")]
        )
    }
    own |= {found.group(1).lower() for found in patterns.MAIL_FROM_ADDRESS.finditer(report_text)}
    # Where each recipient is named, as offsets of the start of the naming line.
    mentions: dict[str, list[int]] = {}
    for pattern in patterns.RECIPIENT_IN_TEXT:
        for found in pattern.finditer(report_text):
            address = found.group(1).lower().strip(".")
            if address in own or address.split("@")[0] == "mailer-daemon":
                continue
            mentions.setdefault(address, []).append(report_text.rfind("\n", 0, found.start(1)) + 1)
    # Exim names the failed recipients in a header: when present it is the list.
    failed = [
        address.lower() for _, address in getaddresses([_header(message, "X-Failed-Recipients")]) if "@" in address
    ]
    if failed:
        mentions = {address: mentions.get(address, [0]) for address in dict.fromkeys(failed)}
    ordered = sorted(mentions, key=lambda address: min(mentions[address]))
    recipients = []
    for address in ordered:
        start = min(mentions[address])
        # The recipient's lines run until another recipient is named.
        others = [at for other in ordered if other != address for at in mentions[other] if at > start]
        segment = report_text[start : min(others, default=len(report_text))]
        own_line = segment.split("\n", 1)[0]
        if patterns.SENDMAIL_RECIPIENT_LINE.match(own_line):
            # "554 <someone@example.org>... reason": Sendmail's verdict on this recipient alone.
            segment = own_line
        status, reply = _codes_in(segment)
        if not status and not reply and len(ordered) == 1:
            segment = report_text
            status, reply = _codes_in(segment)
        recipients.append(_text_recipient(address, segment, status, reply, report_text))
    if not recipients:
        status, reply = _codes_in(report_text)
        if status or reply:
            recipients.append(_text_recipient("", report_text, status, reply, report_text))
    return recipients


def _text_recipient(address: str, segment: str, status: str, reply: str, report_text: str) -> RecipientReport:
    classification, reason = _classify(
        status=status, reply=reply, diagnostic=segment, action="", transcript=report_text
    )
    return RecipientReport(
        recipient=address,
        status=status,
        reply=reply,
        classification=classification,
        reason=reason,
        diagnostic=_trim(segment),
        delay_warning=bool(patterns.DELAY_WARNING.search(_folded(report_text))),
    )
