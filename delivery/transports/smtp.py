"""SMTP delivery over one connection per batch, speaking the envelope commands directly so
that each stage's reply can be classified (a 5xx to RCPT is a bounce, a 5xx to MAIL is ours),
pipelined (RFC 2920) when the server offers it."""

from __future__ import annotations

import ipaddress
import re
import smtplib
import socket
import ssl
from typing import TYPE_CHECKING

from delivery.transports.base import (
    Outcome,
    SendResult,
    Transport,
    TransportUnavailable,
    is_throttling_reply,
    summary,
)

if TYPE_CHECKING:
    from delivery.composer import ComposedMessage
    from emailseq.environment import EmailConfig


ENHANCED_STATUS = re.compile(r"^[245]\.(\d{1,3})\.(\d{1,3})\b")
# Enhanced status codes (RFC 3463) that say the address itself is bad or gone. Other 5.x.x
# classes are about the message, the sender or policy (5.7.1 relay denied, 5.3.4 too big); a
# full mailbox (5.2.2) is the recipient's passing state, not a dead address.
ADDRESS_FAILURES = {"1", "2"}
PASSING_STATES = {("2", "2")}


def classify_reply(code: int, text: str = "", *, after_data: bool = False) -> Outcome:
    """What an SMTP reply means for the message: a 5xx is a bounce only when it is about the
    address (5.1.x, 5.2.x, or a bare 5xx to RCPT); other refusals fail the message alone."""
    if 200 <= code < 300:
        return Outcome.ACCEPTED
    if not 500 <= code < 600:
        return Outcome.TRANSIENT
    enhanced = ENHANCED_STATUS.match(text.strip())
    if enhanced is None:
        return Outcome.REJECTED if after_data else Outcome.PERMANENT
    if enhanced.group(1) in ADDRESS_FAILURES and enhanced.groups() not in PASSING_STATES:
        return Outcome.PERMANENT
    return Outcome.REJECTED


def _reply_text(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


def _closing(code: int, text: bytes | str) -> TransportUnavailable:
    """A 421: the server closes the session; throttling when its wording says so."""
    reply = _reply_text(code, text)
    return TransportUnavailable(summary(reply), throttled=is_throttling_reply(code, reply[4:]))


# Addresses an organization's route may reach --------------------------------------------------


class PrivateAddressRefused(OSError):
    """The host resolves to an address that an organization's route may not reach."""


def is_public_address(address: str) -> bool:
    """Whether an address is on the public internet: not loopback, private, link-local,
    multicast, reserved, shared (100.64/10) or unspecified, also when written as IPv4 in IPv6."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # getaddrinfo adds a zone to link-local IPv6
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def public_addresses(host: str, port: int) -> list[str]:
    """The host's addresses as it resolves now. Refused when any of them is not public: the
    resolver may hand out any of them next time."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise OSError(f"cannot resolve {host}: {error}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    for address in addresses:
        if not is_public_address(address):
            raise PrivateAddressRefused(f"{host} resolves to {address}, which is not a public address")
    return addresses


class PublicSmtp(smtplib.SMTP):
    """Connects to the addresses just checked rather than to the name, so a second lookup
    cannot answer differently (DNS rebinding). smtplib keeps the name in `_host`, against
    which STARTTLS and SMTPS still verify the certificate."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        failure: OSError | None = None
        for address in public_addresses(host, port):
            try:
                return super()._get_socket(address, port, timeout)
            except OSError as error:
                failure = error
        raise failure or OSError(f"{host} has no address")


class PublicSmtpSsl(PublicSmtp, smtplib.SMTP_SSL):
    pass


# Postfix, Exim and most relays name their queue entry in the reply to DATA ("250 2.0.0 Ok:
# queued as 4BxYz12"): kept as the provider's id, which the relay's own logs and DSNs carry.
QUEUE_ID = re.compile(r"\bqueued as ([A-Za-z0-9._-]+)", re.IGNORECASE)
LEADING_REPLY = re.compile(r"\b(4\d\d) (.*)", re.DOTALL)


def _throttling(result: SendResult) -> SendResult:
    """A temporary refusal that asks us to slow down becomes THROTTLED: the route's matter."""
    if result.outcome is Outcome.TRANSIENT:
        found = LEADING_REPLY.search(result.response)
        if found and is_throttling_reply(int(found.group(1)), found.group(2)):
            return SendResult(Outcome.THROTTLED, result.response)
    return result


class SmtpTransport(Transport):
    def __init__(self, config: EmailConfig) -> None:
        self.config = config
        self.connection: smtplib.SMTP | None = None
        self.pipelining = False

    def __enter__(self) -> SmtpTransport:
        config = self.config
        plain, secure = (PublicSmtp, PublicSmtpSsl) if config.public_hosts_only else (smtplib.SMTP, smtplib.SMTP_SSL)
        try:
            if config.security == "tls":
                connection: smtplib.SMTP = secure(
                    config.host, config.port, timeout=config.timeout, context=ssl.create_default_context()
                )
            else:
                connection = plain(config.host, config.port, timeout=config.timeout)
            connection.ehlo_or_helo_if_needed()
            if config.security == "starttls":
                connection.starttls(context=ssl.create_default_context())
                connection.ehlo()
            if config.username:
                connection.login(config.username, config.password)
        except (OSError, smtplib.SMTPException) as error:
            throttled = isinstance(error, smtplib.SMTPResponseException) and is_throttling_reply(
                error.smtp_code, _reply_text(error.smtp_code, error.smtp_error)[4:]
            )
            raise TransportUnavailable(
                summary(f"cannot connect to {config.host}:{config.port}: {error}"), throttled=throttled
            ) from error
        self.connection = connection
        self.pipelining = connection.has_extn("pipelining")
        return self

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (OSError, smtplib.SMTPException):
                self.connection.close()
            self.connection = None

    def _command(self, line: str) -> tuple[int, bytes]:
        assert self.connection is not None
        self.connection.send(f"{line}\r\n")
        return self.connection.getreply()

    def send(self, message: ComposedMessage, *, organization_id: int) -> SendResult:
        result = _throttling(self._exchange(message))
        return SendResult(result.outcome, summary(result.response), result.provider_message_id)

    def _exchange(self, message: ComposedMessage) -> SendResult:
        connection = self.connection
        if connection is None:
            raise TransportUnavailable("the connection was closed")
        data_sent = False
        # Addresses are already normalized ASCII (validated on the way in), so the commands are
        # written directly rather than through smtplib's address parsing.
        mail_command = f"MAIL FROM:<{message.envelope_from}>"
        rcpt_command = f"RCPT TO:<{message.recipient}>"
        try:
            if self.pipelining:
                # RFC 2920: one write, one round trip for the whole envelope.
                connection.send(f"{mail_command}\r\n{rcpt_command}\r\nDATA\r\n")
                mail_reply, rcpt_reply, data_reply = connection.getreply(), connection.getreply(), connection.getreply()
            else:
                mail_reply = self._command(mail_command)
                rcpt_reply = self._command(rcpt_command) if mail_reply[0] == 250 else (503, b"not sent")
                data_reply = self._command("DATA") if rcpt_reply[0] in (250, 251) else (503, b"not sent")
            for code, text in (mail_reply, rcpt_reply, data_reply):
                if code == 421:
                    raise _closing(code, text)
            envelope_accepted = mail_reply[0] == 250 and rcpt_reply[0] in (250, 251)
            if data_reply[0] == 354:
                if envelope_accepted:
                    connection.send(message.smtp_data())
                    data_sent = True
                    code, text = connection.getreply()
                    data_sent = False  # answered: whatever the reply, we know what happened
                    if code == 421:
                        raise _closing(code, text)
                    reply = _reply_text(code, text)
                    queue_id = QUEUE_ID.search(reply) if code == 250 else None
                    return SendResult(
                        classify_reply(code, reply[4:], after_data=True),
                        reply,
                        provider_message_id=queue_id.group(1) if queue_id else "",
                    )
                # A server that opens DATA without a valid envelope gets an empty message,
                # which it must refuse for want of recipients.
                connection.send(b".\r\n")
                connection.getreply()
            connection.rset()
            if mail_reply[0] != 250:
                # The sender was refused: the recipient is not at fault, so never a bounce.
                return SendResult(Outcome.TRANSIENT, "MAIL FROM refused: " + _reply_text(*mail_reply))
            if not envelope_accepted:
                reply = _reply_text(*rcpt_reply)
                return SendResult(classify_reply(rcpt_reply[0], reply[4:]), reply)
            reply = _reply_text(*data_reply)
            return SendResult(classify_reply(data_reply[0], reply[4:], after_data=True), reply)
        except TransportUnavailable:
            self._drop()
            raise
        except (OSError, smtplib.SMTPException) as error:
            self._drop()
            raise TransportUnavailable(summary(f"connection failed: {error}"), maybe_delivered=data_sent) from error

    def _drop(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
