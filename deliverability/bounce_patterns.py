"""What mail systems write when they refuse or return a message: the text patterns behind
`deliverability.bounces`.

Reason names follow Sisimai's vocabulary (https://libsisimai.org/en/reason/) so reports can be
compared with its test corpus; the phrases are the ones real MTAs put in their replies, matched
lower-cased.
"""

from __future__ import annotations

import re

# The reasons that mean the address itself is wrong: the mailbox or the domain does not exist,
# refuses all mail, or has moved. Only these suppress an address at once; every other failure
# (a full mailbox, a spam filter, a blocked IP, a policy) says nothing certain about the address.
ADDRESS_REASONS = frozenset({"userunknown", "hostunknown", "notaccept", "hasmoved"})

# Enhanced status code (RFC 3463) -> reason, for codes whose meaning is not in doubt.
STATUS_REASONS: dict[str, str] = {
    "4.1.6": "hasmoved",
    "4.1.7": "rejected",
    "4.1.8": "rejected",
    "4.1.9": "systemerror",
    "4.2.1": "blocked",
    "4.2.2": "mailboxfull",
    "4.2.3": "exceedlimit",
    "4.2.4": "filtered",
    "4.3.1": "systemfull",
    "4.3.2": "notaccept",
    "4.3.3": "systemerror",
    "4.3.5": "systemerror",
    "4.4.1": "expired",
    "4.4.2": "networkerror",
    "4.4.3": "systemerror",
    "4.4.4": "networkerror",
    "4.4.5": "systemfull",
    "4.4.6": "networkerror",
    "4.4.7": "expired",
    "4.5.3": "systemerror",
    "4.6.0": "contenterror",
    "4.7.1": "blocked",
    "4.7.25": "requireptr",
    "4.7.26": "authfailure",
    "5.1.0": "userunknown",
    "5.1.1": "userunknown",
    "5.1.2": "hostunknown",
    "5.1.3": "userunknown",
    "5.1.4": "filtered",
    "5.1.6": "hasmoved",
    "5.1.7": "rejected",
    "5.1.8": "rejected",
    "5.1.9": "systemerror",
    "5.1.10": "notaccept",
    "5.2.0": "filtered",
    "5.2.1": "filtered",
    "5.2.2": "mailboxfull",
    "5.2.3": "exceedlimit",
    "5.2.4": "filtered",
    "5.3.0": "systemerror",
    "5.3.1": "systemfull",
    "5.3.2": "notaccept",
    "5.3.3": "systemerror",
    "5.3.4": "mesgtoobig",
    "5.3.5": "systemerror",
    "5.4.0": "networkerror",
    "5.4.3": "systemerror",
    "5.4.4": "hostunknown",
    "5.5.2": "syntaxerror",
    "5.5.3": "toomanyconn",
    "5.5.4": "systemerror",
    "5.5.5": "systemerror",
    "5.6.0": "contenterror",
    "5.6.1": "contenterror",
    "5.6.2": "contenterror",
    "5.6.3": "contenterror",
    "5.6.5": "contenterror",
    "5.6.9": "contenterror",
    "5.7.0": "securityerror",
    "5.7.1": "securityerror",
    "5.7.13": "suspend",
    "5.7.17": "hasmoved",
    "5.7.18": "hasmoved",
    "5.7.20": "authfailure",
    "5.7.21": "authfailure",
    "5.7.22": "authfailure",
    "5.7.23": "authfailure",
    "5.7.24": "authfailure",
    "5.7.25": "requireptr",
    "5.7.26": "authfailure",
    "5.7.27": "notaccept",
    "5.7.28": "spamdetected",
}

# Reasons a status code alone cannot settle: the text decides when it says something clearer.
VAGUE_REASONS = frozenset({"", "systemerror", "securityerror", "networkerror", "userunknown", "hostunknown"})


# When a 5.1.1 comes with one of these, the code was used loosely for another failure.
OVERRIDE_USER_UNKNOWN = frozenset(
    {"mailboxfull", "hasmoved", "notaccept", "rejected", "blocked", "suspend", "speeding", "mailererror"}
)


def _phrases(*phrases: str) -> re.Pattern[str]:
    """One regex matching any of the phrases; a phrase may use regex syntax."""
    return re.compile("|".join(f"(?:{phrase})" for phrase in phrases))


# Checked in this order; the first reason whose phrases occur in the lower-cased diagnostic wins.
# Specific reasons come first so that, say, "mailbox full" is not read as an unknown mailbox.
REASON_PHRASES: list[tuple[str, re.Pattern[str]]] = [
    (
        "mailboxfull",
        _phrases(
            r"mailbox (?:is )?full",
            r"mailbox.{0,20}(?:exceeded|over).{0,20}(?:quota|limit|size)",
            r"mail ?box size limit exceeded",
            r"full mailbox",
            r"over (?:the )?(?:disk )?quota",
            r"quota (?:exceeded|violation|full)",
            r"exceeded (?:the )?(?:storage|quota|mailbox)",
            r"disk quota",
            r"(?:insufficient|not enough|not sufficient) (?:disk |storage )?space",
            r"no space left",
            r"mailfolder is full",
            r"user has too many messages",
            r"(?:account|inbox|mailbox) is (?:currently )?(?:full|over)",
            r"too much mail data",
            r"recipient'?s? (?:mailbox|inbox) is full",
            r"boite du destinataire pleine",
            r"space has been used up",
        ),
    ),
    (
        "mesgtoobig",
        _phrases(
            r"message (?:is )?too (?:big|large)",
            r"message size exceeds",
            r"exceeds? (?:the )?(?:maximum|max)? ?(?:message )?size",
            r"size limit",
            r"message length exceeds",
            r"mail too large",
        ),
    ),
    (
        "exceedlimit",
        _phrases(r"message (?:header )?length exceeds administrative limit", r"exceeds? (?:the )?recipient limit"),
    ),
    (
        "suspend",
        _phrases(
            r"(?:account|mailbox|user|address)(?: has been| is)? (?:currently )?(?:suspended|disabled|inactive|deactivated)",
            r"has been (?:suspended|disabled)",
            r"inactive (?:account|user|mailbox)",
            r"mailbox (?:is )?frozen",
            r"(?:is|currently) suspended",
            r"email account that you tried to reach is (?:disabled|inactive)",
            r"account has been disabled or discontinued",
            r"temporarily inactive",
            r"user suspended",
            r"archived recipient",
        ),
    ),
    (
        "hasmoved",
        _phrases(
            r"address (?:has|was) moved",
            r"(?:mailbox|user) has moved",
            r"no longer (?:available|in use) at this address",
            r"has been moved",
        ),
    ),
    (
        "norelaying",
        _phrases(
            r"relay(?:ing)? (?:access )?(?:denied|not permitted|not allowed|prohibited)",
            r"not (?:permitted|allowed) to relay",
            r"we do not relay",
            r"unable to relay",
            r"relay not permitted",
            r"no relaying allowed",
            r"relaying denied",
        ),
    ),
    (
        "authfailure",
        _phrases(
            r"\bspf\b.{0,40}(?:fail|check|reject|invalid|not pass|none|record|settings)",
            r"(?:fails?|failed) (?:an? )?(?:spf|dkim|dmarc)",
            r"\bdmarc\b.{0,40}(?:fail|policy|reject)",
            r"\bdkim\b.{0,40}(?:fail|invalid|signature)",
            r"sender policy framework",
            r"authentication (?:check )?(?:failed|required)",
            r"access denied.{0,40}(?:authentication|not authenticated)",
        ),
    ),
    (
        "userunknown",
        _phrases(
            r"user(?:name)? (?:is )?unknown",
            r"unknown (?:user|recipient|mailbox|local ?part|address|e-?mail address)",
            r"no such (?:user|mailbox|recipient|address|person|account)",
            r"(?:user|mailbox|recipient|address|account|addressee)(?: [^\n.]{1,60})? (?:does not|doesn'?t|did not) exist",
            r"(?:user|mailbox|recipient|address) (?:not found|not exist|not known|not listed|unavailable|invalid)",
            r"(?:invalid|bad|non-?existent|unknown) (?:recipient|mailbox|address|user|destination)",
            r"(?:is )?not a (?:valid|known) (?:user|recipient|mailbox)",
            r"no (?:mailbox|account|user) (?:here )?by that name",
            r"no mailbox (?:here|found|available)",
            r"mailbox (?:is )?(?:unavailable|not available|not present|invalid)",
            r"requested action not taken: mailbox unavailable",
            r"recipient (?:address )?rejected: (?:user unknown|unknown user|invalid|undeliverable address|access denied)",
            r"(?:was|were) not found in",
            r"recipient not (?:found|ok|local)",
            r"(?:is|was) not (?:a )?(?:valid|local|known) (?:address|user|recipient)",
            r"email account that you tried to reach does not exist",
            r"there is no one at this address",
            r"address (?:does not exist|unknown|invalid|not present)",
            r"destination addresses? (?:was|were) unknown",
            r"badrcptto|validrcptto",
            r"not in (?:my|our) (?:list of )?(?:valid|allowed)",
            r"resolver\.adr\.recipnotfound|recipientnotfound",
            r"this address no longer accepts mail",
            r"utilisateur inconnu|no existe|nessun utente|unbekannt",
            r"not listed in (?:the )?(?:domino )?directory|ディレクトリのリストにありません|ディレクトリには見つかりません",
            r"(?:user|you) doesn'?t have an? .{0,40}account",
            r"can'?t accept user",
            r"recipient address rejected\.(?:\s|$)",
            r"recipient not exist|rcpt.{0,40}does not exist",
        ),
    ),
    (
        "filtered",
        _phrases(
            r"(?:user|recipient|account) (?:refuses|refused|rejects?|rejected) (?:to accept|your|mail|message)",
            r"(?:has been )?refused by (?:the )?recipient",
            r"mail filter",
            r"rejected by (?:the )?recipient",
            r"not accepted by (?:the )?recipient",
            r"recipient'?s? (?:mail )?(?:server|filter|settings)",
            r"due to (?:the )?recipient'?s? (?:settings|policy)",
        ),
    ),
    (
        "requireptr",
        _phrases(
            r"(?:no|missing|cannot find|can'?t find|unable to find|invalid|bad) (?:reverse dns|ptr|rdns)",
            r"reverse (?:dns|lookup|address).{0,40}(?:fail|not|missing|require|mismatch)",
            r"\bptr\b.{0,30}(?:record|lookup|fail|required|not found|mismatch)",
            r"(?:client|host|ip) (?:name|address).{0,30}(?:unresolvable|unknown|not resolve|cannot be resolved)",
            r"resolve your (?:address|hostname|ip)",
            r"not resolve (?:to )?your",
            r"generic (?:hostname|rdns|dns)",
            r"dynamic (?:ip|address|pool)|dialup|dial-up",
        ),
    ),
    (
        "notcompliantrfc",
        _phrases(
            r"rfc ?(?:2822|5322|5321|822)",
            r"(?:duplicate|multiple) (?:headers?|from|subject|date)",
            r"not (?:rfc )?compliant",
        ),
    ),
    (
        "badreputation",
        _phrases(r"reputation", r"temporarily (?:rate limited|deferred) due to", r"low (?:sender )?score"),
    ),
    (
        "contenterror",
        _phrases(r"header (?:error|syntax|format)", r"improper use of 8-bit", r"invalid (?:header|mime|message)"),
    ),
    (
        "rejected",
        _phrases(
            r"sender (?:address )?(?:rejected|denied|refused|invalid|unknown|blocked|verify failed|not (?:allowed|permitted))",
            r"(?:domain|address) of sender",
            r"sender domain (?:does not exist|must exist|must resolve|not found|unknown)",
            r"(?:unknown|invalid|bad) sender",
            r"mail from (?:address |domain )?(?:rejected|denied|refused)",
            r"envelope (?:sender|from) (?:rejected|denied|refused|blocked)",
            r"return path",
            r"after mail from",
            r"in reply to mail from",
            r"mail from.{0,20}(?:rejected|refused|denied)",
            r"your (?:address|domain) (?:is|has been) (?:blacklisted|blocked|rejected)",
        ),
    ),
    (
        "hostunknown",
        _phrases(
            r"host (?:or domain name )?(?:not found|unknown)",
            r"unknown (?:host|domain)",
            r"(?:domain|host) (?:does not exist|not exist|doesn'?t exist|not found|unknown|is not reachable|unreachable)",
            r"no such (?:domain|host)",
            r"domain must exist",
            r"unrout(?:e)?able (?:address|domain|mail domain)",
            r"name or service not known",
            r"mail domain mentioned in email address is unknown",
            r"nxdomain",
            r"the account or domain may not exist",
            r"no (?:valid )?(?:mx|a) records? (?:found )?for",
            r"no mx found for",
        ),
    ),
    (
        "spamdetected",
        _phrases(
            r"\bspam\b",
            r"\bspam[- ]",
            r"junk mail",
            r"unsolicited",
            r"content (?:filter|rejected|policy)",
            r"message (?:content )?(?:rejected|refused) (?:as|due to|because)",
            r"bulk mail",
            r"looks like (?:spam|phishing)",
        ),
    ),
    (
        "speeding",
        _phrases(
            r"rate limit",
            r"too many recipients (?:this|per) hour",
            r"too (?:many|fast) (?:messages|mails|emails)",
            r"sending (?:too )?fast",
            r"exceeded.{0,20}rate",
        ),
    ),
    (
        "toomanyconn",
        _phrases(
            r"too many (?:connections|concurrent|simultaneous|sessions|hops|recipients)",
            r"connection (?:limit|rate limit)",
        ),
    ),
    (
        "blocked",
        _phrases(
            r"\bblock(?:ed|ing|list)?\b",
            r"black ?list(?:ed)?",
            r"\bdenylist",
            r"\brbl\b|\bdnsbl\b|spamhaus|spamcop|sorbs|barracudacentral",
            r"access denied",
            r"(?:client|host|ip|connection) (?:address )?(?:rejected|refused|denied|not allowed)",
            r"(?:rejected|refused|denied) (?:your )?(?:ip|connection|host)",
            r"your (?:ip|host|server|network)",
            r"poor reputation",
            r"please use the smtp server of your isp",
            r"not (?:authorized|allowed|permitted) to (?:send|connect)",
            r"administrative prohibition",
            r"service (?:not available|unavailable), closing",
            r"after (?:initial connection|connect|helo|ehlo)",
        ),
    ),
    (
        "policyviolation",
        _phrases(r"polic(?:y|ies)", r"prohibited", r"not allowed", r"violat"),
    ),
    (
        "virusdetected",
        _phrases(r"\bvirus", r"malware", r"infected", r"\bworm\b", r"dangerous (?:attachment|content)"),
    ),
    (
        "systemfull",
        _phrases(r"(?:mail )?system (?:is )?full", r"insufficient system storage", r"out of (?:disk|storage)"),
    ),
    (
        "networkerror",
        _phrases(
            r"(?:mail|routing) loop",
            r"too many hops",
            r"hop count exceeded",
            r"network (?:error|unreachable)",
            r"connection (?:refused|reset|timed out|dropped|lost)",
            r"could not connect",
            r"unable to connect",
            r"temporary (?:dns|lookup) failure|dns (?:error|failure|timeout)",
            r"host (?:is )?down",
            r"name service error",
            r"malformed or unexpected name server reply",
            r"name server.{0,20}(?:timeout|failure|not respond)",
        ),
    ),
    (
        "systemerror",
        _phrases(
            r"system (?:error|config)",
            r"internal (?:server )?error",
            r"server (?:error|configuration)",
            r"local configuration error",
            r"misconfigur",
            r"too many (?:errors|bad commands)",
            r"temporary (?:local )?(?:problem|failure)",
        ),
    ),
    (
        "notaccept",
        _phrases(
            r"(?:host|domain)(?:/domain)? does not accept mail",
            r"does not accept mail",
            r"null ?mx",
            r"mail receiving disabled",
            r"no route for current request",
            r"indicated no smtp service",
        ),
    ),
    (
        "expired",
        _phrases(
            r"delivery (?:time )?expired",
            r"(?:message|mail) (?:has been )?(?:expired|timed out)",
            r"retry (?:time(?:out)?|period) (?:exceeded|expired)",
            r"(?:could not|couldn'?t|unable to) (?:be )?deliver(?:ed)? (?:for|within|in) (?:\d+|the last|more than)",
            r"(?:has been|was) (?:queued|undeliverable|delayed) for (?:\d+|more than|over)",
            r"(?:gave|giving) up",
            r"have been failing for a long time",
            r"did not accept our requests to connect",
            r"too old",
            r"delivery attempts? (?:will continue|exhausted|failed for)",
            r"message (?:timed out|expired|was not delivered for)",
            r"have not been able to deliver",
            r"has not yet been delivered",
            r"delayed",
            r"time(?:d)?[- ]?out",
        ),
    ),
    (
        "securityerror",
        _phrases(r"authentication (?:required|failed)", r"starttls", r"\btls\b", r"certificate", r"encryption"),
    ),
    (
        "mailererror",
        _phrases(
            r"mailer error",
            r"x-unix",
            r"command (?:died|failed|output)",
            r"exit (?:code|status)",
            r"pipe to",
            r"procmail|maildrop",
        ),
    ),
]

# The SMTP command that was refused, as MTAs report it ("after RCPT TO", "in reply to RCPT TO
# command", ">>> RCPT TO:<...>"). An unknown-user phrase only counts after RCPT or DATA.
SMTP_COMMAND = re.compile(
    r"(?:(?:after|in reply to|in response to|did not like our|smtp command:?)\s+(?:the\s+)?(?:final\s+)?"
    r"(rcpt\s*to|mail\s*from|data|end of data|helo|ehlo|connect|initial connection|auth|starttls)\b)|"
    r"(?:\b(rcpt(?:\s*to)?|mail(?:\s*from)?|data|end of data) (?:response|command))|\[(rcpt)_to\]|smtp:(rcpt)\b|"
    # Replies that can only answer RCPT TO, wherever the transcript shows them.
    r"no valid (recipient)s",
    re.IGNORECASE,
)

# Auto-replies: subjects in several languages.
AUTO_REPLY_SUBJECT = re.compile(
    r"out of (?:the )?office|auto(?:matic)?[- ]?(?:reply|response|respond|antwort)|autoreply|\bvacation\b|"
    r"\baway\b|abwesenheit|absence|r[ée]ponse automatique|fuera de la oficina|assente|\bauto:|"
    r"自動|不在",
    re.IGNORECASE,
)

# Subjects and senders of delivery failures that carry no machine-readable report.
BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status|failure|has failed|failed|notification|problem)|"
    r"failure notice|returned (?:mail|to sender)|mail delivery|could not be delivered|"
    r"non[- ]?delivery|delivery report|not delivered|nondeliverable|bounce|"
    r"mail system error|rejected|unzustellbar|unable to deliver|warning: could not send|"
    r"failed delivery|delivery notification|message you sent|error sending|"
    r"メールエラー|エラー通知|不達|未達|配送エラー|送信エラー",
    re.IGNORECASE,
)
BOUNCE_SENDER = re.compile(
    r"mailer-daemon|post_?master|mail delivery (?:system|subsystem)|mailerdaemon|bounce", re.IGNORECASE
)

# Lines that start the returned copy of the original message in a plain-text bounce.
ORIGINAL_MESSAGE_MARKERS = re.compile(
    r"^[ \t>|]*(?:"
    r"-+ ?this is a copy of (?:the|your) message|"
    r"-+ ?below this line is a copy of the message|"
    r"-+ ?(?:the )?original message|"
    r"-+ ?original message follows|"
    r"-+ ?(?:unsent|undelivered|returned|rejected) message follows|"
    r"-+ ?(?:the )?(?:header|headers) of (?:the )?original message|"
    r"-+ ?message headers? follows?|"
    r"message headers? follows?\.?\s*$|"
    r"-+ ?(?:the )?following is a copy of|"
    r"-+ ?received message|"
    r"-+ ?forwarded message|"
    r"-+ ?copy of (?:the )?(?:original )?message|"
    r"-+ ?original message headers|"
    r"-+ ?this is a copy of the headers|"
    r"original message:?\s*$|"
    r"bounced e-?mail:?\s*$|"
    r"-{3,} ?(?:orig(?:inal)?|returned) (?:mail|message|headers)"
    r")",
    re.IGNORECASE | re.MULTILINE,
)

EMAIL_ADDRESS = r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+"

USER_UNKNOWN = next(pattern for reason, pattern in REASON_PHRASES if reason == "userunknown")

# A recipient directory that answered "no such entry": about the mailbox whatever the SMTP stage.
RECIPIENT_LOOKUP_FAILED = _phrases(
    r"recipient name is not recognized",
    r"not listed in (?:the )?(?:domino )?directory|ディレクトリ",
    r"requested action not taken: mailbox unavailable",
    r"user not exist",
    r"no such user here",
    r"email account that you tried to reach does not exist",
    r"mail\.local: unknown user",
    r"^unknown user: ",
)

# Free-text warnings that a message is only delayed (Postfix's and Sendmail's "warning only",
# Exim's "delivery attempts will continue", Exchange's "will continue to try"): the MTA has not
# given up, so they say nothing final about the address.
DELAY_WARNING = _phrases(
    r"this is a warning (?:message )?only",
    r"you do not need to resend",
    r"delivery attempts will continue",
    r"will (?:continue to )?(?:try|retry|attempt) (?:to deliver|delivering|delivery)",
)

# Name-service trouble: the domain may well exist.
DNS_TROUBLE = _phrases(
    r"name service error",
    r"not found, try again",
    r"temporary (?:dns|lookup) failure",
    r"dns (?:error|timeout|failure)",
)

# Bounce categories PowerMTA writes into its DSNs (X-PowerMTA-BounceCategory).
VENDOR_CATEGORIES = {
    "bad-mailbox": "userunknown",
    "bad-domain": "hostunknown",
    "inactive-mailbox": "suspend",
    "quota-issues": "mailboxfull",
    "spam-related": "spamdetected",
    "policy-related": "policyviolation",
    "virus-related": "virusdetected",
    "content-related": "contenterror",
    "message-expired": "expired",
    "no-answer-from-host": "networkerror",
    "bad-connection": "networkerror",
    "routing-errors": "systemerror",
    "relaying-issues": "norelaying",
    "protocol-errors": "systemerror",
}


# --- codes, fields and recipients in report text ---

# An enhanced status code: class 2, 4 or 5, subject 0-7. The look-arounds keep it out of IP
# addresses and version numbers.
STATUS_CODE = re.compile(r"(?<![\d.])([245]\.[0-7]\.\d{1,3})(?![\d]|\.\d)")
REPLY_BEFORE_STATUS = re.compile(r"(?<![\d.])([245]\d\d)[ -]['\"]?#?([245]\.[0-7]\.\d{1,3})(?![\d]|\.\d)")
REPLY_CODE = re.compile(
    r"(?:^|said:?|replied:?|returned:?|response:?|reply:?|error:?|<<<|\(#?|:)[ \t]*([45][0-5]\d)(?=[ -]|$)(?!-\d)",
    re.IGNORECASE | re.MULTILINE,
)
DSN_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)$")
RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient")
HTML_TAG = re.compile(r"<(?:[^>\"']|\"[^\"]*\"|'[^']*')*>")

TRANSCRIPT_ERROR = re.compile(r"<<<\s*[45]\d\d")
# With pipelining the replies to RCPT TO arrive after ">>> DATA", so DATA proves nothing here.
TRANSCRIPT_COMMAND = re.compile(r">>>\s*(rcpt to|mail from|helo|ehlo)\b")

COMPLAINT_SUBJECT = re.compile(r"complaint about message|abuse report|spam report|fbl report", re.IGNORECASE)

_ADDR = EMAIL_ADDRESS
RECIPIENT_IN_TEXT = [
    re.compile(rf"^[ \t>]*<({_ADDR})>", re.MULTILINE),
    re.compile(rf"^[ \t>]*\"?({_ADDR})\"?:?[ \t]*$", re.MULTILINE),
    re.compile(
        rf"^[ \t>]*({_ADDR})[ \t]*(?::|\(|<|\[|on |SMTP|host|because|-|\.\.\.|error)", re.MULTILINE | re.IGNORECASE
    ),
    re.compile(rf"<({_ADDR})>\.\.\.", re.MULTILINE),
    # "Unknown user: someone@example.com": a failure phrase labelling the address.
    re.compile(
        rf"^[ \t>]*[^\n:]{{0,40}}(?:unknown|invalid|fail|error|undeliverable|not delivered|rejected|no such|full|"
        rf"exceed|denied|unable)[^\n:]{{0,40}}:[ \t]*<?({_ADDR})>?",
        re.IGNORECASE | re.MULTILINE,
    ),
    re.compile(rf"rcpt to: ?<?({_ADDR})", re.IGNORECASE),
    re.compile(rf"\baddress: ?<({_ADDR})>", re.IGNORECASE),
    re.compile(rf"^[ \t]*[*\u2022-][ \t]*<?({_ADDR})>?[ \t]*$", re.MULTILINE),
    re.compile(
        rf"(?:deliver(?:ing|ed|y)? (?:of )?(?:your |the )?(?:mail|message|e-?mail)? ?to|recipients?(?: address(?:es)?)?:|"
        rf"failed recipients?:?|following (?:recipients?|address(?:es)?)(?: failed)?:|could not be delivered to:?|"
        rf"original-recipient:|undeliverable to|unable to deliver (?:your message )?to)\s*(?:rfc822;)?\s*<?({_ADDR})>?",
        re.IGNORECASE,
    ),
]
MAIL_FROM_ADDRESS = re.compile(rf"(?:mail from|envelope-from|sender)[:=]?\s*<?({_ADDR})", re.IGNORECASE)
SENDMAIL_RECIPIENT_LINE = re.compile(r"^[ \t]*[45]\d\d <[^>\s]+>\.\.\. \S")
