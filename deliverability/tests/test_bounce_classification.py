"""What `parse_report` and `classify_status` make of the kinds of report the bounce receiver gets."""

from __future__ import annotations

import pytest

from deliverability.bounces import classify_status, parse_report

DSN = b"""\
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: bounce+abc@bounces.example.test
Subject: Undelivered Mail Returned to Sender
Message-ID: <report-1@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; Gone@Example.org
Original-Recipient: rfc822; gone@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected:
    User unknown in local recipient table

Final-Recipient: rfc822; full@example.org
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 Mailbox full

Final-Recipient: rfc822; slow@example.org
Action: delayed
Status: 4.4.1
Diagnostic-Code: smtp; 451 4.4.1 No answer from host

Final-Recipient: rfc822; fine@example.org
Action: delivered
Status: 2.0.0

--B
Content-Type: text/rfc822-headers

From: Sender <sender@example.com>
To: gone@example.org
Message-ID: <original-1@example.com>
X-Emailseq-ID: 42.abcdef

--B--
"""

ARF = b"""\
From: feedback@mailbox.example
To: fbl@bounces.example.test
Subject: Complaint
Message-ID: <arf-1@mailbox.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an email abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: %(type)s
User-Agent: SomeGenerator/1.0
Version: 1
Original-Rcpt-To: <Reader@Example.org>

--F
Content-Type: message/rfc822

From: Sender <sender@example.com>
To: reader@example.org
Message-ID: <original-2@example.com>
Subject: News

Hello
--F--
"""

QMAIL = b"""\
From: MAILER-DAEMON@mx4.example.jp
To: bounce+abc@bounces.example.test
Subject: failure notice

Hi. This is the qmail-send program at mx4.example.jp.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<nobody@example.ne.jp>:
192.0.2.32 does not like recipient.
Remote host said: 550 5.1.1 <nobody@example.ne.jp>: Recipient address rejected: User unknown
Giving up on 192.0.2.32.

--- Below this line is a copy of the message.

Message-ID: <original-3@example.com>
From: Sender <sender@example.com>
To: nobody@example.ne.jp
Subject: Hello

Hello
"""

VACATION = b"""\
From: Kiji <kiji@example.net>
To: sender@example.com
Subject: Out of office: Hello
Auto-Submitted: auto-replied

I am away until Monday.
"""

PERSONAL = b"""\
From: A Friend <friend@example.net>
To: sender@example.com
Subject: Lunch?

Shall we have lunch on Friday? Write to colleague@example.org too.
"""


def test_dsn_gives_one_report_per_recipient_with_its_own_class() -> None:
    parsed = parse_report(DSN)

    assert parsed.kind == "dsn"
    assert parsed.report_message_id == "<report-1@mx.example.net>"
    assert [(r.recipient, r.status, r.reply, r.classification, r.reason) for r in parsed.recipients] == [
        ("gone@example.org", "5.1.1", "550", "hard", "userunknown"),
        ("full@example.org", "5.2.2", "552", "soft", "mailboxfull"),
        ("slow@example.org", "4.4.1", "451", "soft", "expired"),
        ("fine@example.org", "2.0.0", "", "delivered", "delivered"),
    ]
    assert "User unknown in local recipient table" in parsed.recipients[0].diagnostic


EXIM_DELAY_WARNING = b"""\
From: Mail Delivery System <Mailer-Daemon@mx.example.org>
To: bounce+abc@bounces.example.test
Subject: Warning: message 1abCDe-000123-Ab delayed 24 hours
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.
A message that you sent has not yet been delivered to one or more of its
recipients after more than 24 hours on the queue on mx.example.org.

The address to which the message has not yet been delivered is:

  alice@example.net
    host example.net [192.0.2.1]
    Connection timed out

No action is required on your part. Delivery attempts will continue for
some time, and this warning may be repeated at intervals if the message
remains undelivered.
"""


def test_delay_warnings_are_told_from_final_failures() -> None:
    assert [r.delay_warning for r in parse_report(DSN).recipients] == [False, False, True, False]
    assert [r.delay_warning for r in parse_report(QMAIL).recipients] == [False]
    [warning] = parse_report(EXIM_DELAY_WARNING).recipients
    assert (warning.recipient, warning.classification, warning.delay_warning) == ("alice@example.net", "soft", True)


def test_returned_original_headers_are_available_for_matching() -> None:
    parsed = parse_report(DSN)

    assert parsed.original_headers["message-id"] == "<original-1@example.com>"
    assert parsed.original_headers["x-emailseq-id"] == "42.abcdef"
    assert parse_report(QMAIL).original_headers["message-id"] == "<original-3@example.com>"


@pytest.mark.parametrize(
    ("feedback_type", "classification"),
    [("abuse", "complaint"), ("opt-out", "unsubscribe"), ("fraud", "complaint"), ("auth-failure", "not_bounce")],
)
def test_arf_feedback_type_decides_the_class(feedback_type: str, classification: str) -> None:
    parsed = parse_report(ARF % {b"type": feedback_type.encode()})

    assert parsed.kind == "arf"
    [report] = parsed.recipients
    assert (report.recipient, report.feedback_type, report.classification) == (
        "reader@example.org",
        feedback_type,
        classification,
    )
    assert parsed.original_headers["message-id"] == "<original-2@example.com>"


def test_free_text_bounce_yields_its_recipient_and_reply() -> None:
    [report] = parse_report(QMAIL).recipients

    assert (report.recipient, report.status, report.reply, report.classification) == (
        "nobody@example.ne.jp",
        "5.1.1",
        "550",
        "hard",
    )


def test_out_of_office_reply_is_an_auto_reply() -> None:
    parsed = parse_report(VACATION)

    assert parsed.kind == "auto_reply"
    assert [(r.recipient, r.classification) for r in parsed.recipients] == [("kiji@example.net", "auto_reply")]


def test_ordinary_mail_is_not_a_bounce() -> None:
    parsed = parse_report(PERSONAL)

    assert parsed.recipients == []
    assert parsed.classification == "not_bounce"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/report; boundary=\n\n--\n--",
        b"Content-Type: message/delivery-status\n\nFinal-Recipient: \nStatus: 9.9.9.9\n",
        b"Subject: =?x-unknown?B?////?=\nFrom: MAILER-DAEMON\nContent-Type: text/plain; charset=nonsense\n\n\xff\xfe 550",
        DSN[: len(DSN) // 2],
    ],
)
def test_parse_report_never_raises(raw: bytes) -> None:
    parsed = parse_report(raw)

    assert parsed.kind in ("dsn", "arf", "auto_reply", "unknown")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"status": "5.1.1", "diagnostic": "550 5.1.1 No such user"}, ("hard", "userunknown")),
        ({"diagnostic": "550 5.1.1 <x@example.org>... User unknown"}, ("hard", "userunknown")),
        ({"status": "5.1.2", "diagnostic": "Host or domain name not found"}, ("hard", "hostunknown")),
        ({"status": "5.1.10", "diagnostic": "Recipient address has null MX"}, ("hard", "notaccept")),
        ({"diagnostic": "550 User unknown", "command": "rcpt"}, ("hard", "userunknown")),
        # The same words after DATA come from per-user filters: not proof the mailbox is gone.
        ({"diagnostic": "550 User unknown", "command": "data"}, ("soft", "filtered")),
        ({"diagnostic": "452 4.2.2 Mailbox full"}, ("soft", "mailboxfull")),
        ({"diagnostic": "552 5.2.2 Mailbox full"}, ("soft", "mailboxfull")),
        (
            {"diagnostic": "450 4.1.1 <x@example.org>: Recipient address rejected: User unknown"},
            ("soft", "userunknown"),
        ),
        ({"diagnostic": "554 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org"}, ("soft", "blocked")),
        (
            {"diagnostic": "550 5.7.26 Unauthenticated email is not accepted due to DMARC policy"},
            ("soft", "authfailure"),
        ),
        ({"status": "4.4.7", "diagnostic": "Delivery time expired"}, ("soft", "expired")),
        ({"status": "2.0.0", "diagnostic": "250 OK"}, ("delivered", "delivered")),
    ],
)
def test_classify_status_applies_the_parsers_rules(arguments: dict[str, str], expected: tuple[str, str]) -> None:
    assert classify_status(**arguments) == expected
