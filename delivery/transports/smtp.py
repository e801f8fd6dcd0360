"""SMTP delivery over one connection per batch, speaking the envelope commands directly so
that each stage's reply can be classified (a 5xx to RCPT is a bounce, a 5xx to MAIL is ours)."""

from __future__ import annotations

import smtplib
import ssl
from typing import TYPE_CHECKING

from delivery.transports.base import Outcome, SendResult, Transport, TransportUnavailable

if TYPE_CHECKING:
    from delivery.composer import ComposedMessage
    from emailseq.environment import EmailConfig


def classify_reply(code: int) -> Outcome:
    if 200 <= code < 300:
        return Outcome.ACCEPTED
    if 500 <= code < 600:
        return Outcome.PERMANENT
    return Outcome.TRANSIENT


def _reply_text(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


class SmtpTransport(Transport):
    def __init__(self, config: EmailConfig) -> None:
        self.config = config
        self.connection: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpTransport:
        config = self.config
        try:
            if config.security == "tls":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(
                    config.host, config.port, timeout=config.timeout, context=ssl.create_default_context()
                )
            else:
                connection = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            connection.ehlo_or_helo_if_needed()
            if config.security == "starttls":
                connection.starttls(context=ssl.create_default_context())
                connection.ehlo()
            if config.username:
                connection.login(config.username, config.password)
        except (OSError, smtplib.SMTPException) as error:
            raise TransportUnavailable(f"cannot connect to {config.host}:{config.port}: {error}") from error
        self.connection = connection
        return self

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (OSError, smtplib.SMTPException):
                self.connection.close()
            self.connection = None

    def send(self, message: ComposedMessage, *, organization_id: int) -> SendResult:
        connection = self.connection
        if connection is None:
            raise TransportUnavailable("the connection was closed")
        try:
            code, text = connection.mail(message.envelope_from)
            if code != 250:
                connection.rset()
                # The sender was refused: the recipient is not at fault, so never a bounce.
                return SendResult(Outcome.TRANSIENT, "MAIL FROM refused: " + _reply_text(code, text))
            code, text = connection.rcpt(message.recipient)
            if code not in (250, 251):
                connection.rset()
                return SendResult(classify_reply(code), _reply_text(code, text))
            code, text = connection.data(message.as_bytes())
            return SendResult(classify_reply(code), _reply_text(code, text))
        except smtplib.SMTPDataError as error:
            connection.rset()
            return SendResult(classify_reply(error.smtp_code), _reply_text(error.smtp_code, error.smtp_error))
        except smtplib.SMTPServerDisconnected as error:
            self.connection = None
            raise TransportUnavailable(f"connection lost: {error}") from error
        except smtplib.SMTPResponseException as error:
            if error.smtp_code == 421:
                self.connection = None
                raise TransportUnavailable(_reply_text(error.smtp_code, error.smtp_error)) from error
            return SendResult(Outcome.TRANSIENT, _reply_text(error.smtp_code, error.smtp_error))
        except (OSError, smtplib.SMTPException) as error:
            self.connection = None
            raise TransportUnavailable(f"connection failed: {error}") from error
