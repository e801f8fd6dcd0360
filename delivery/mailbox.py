"""The local mailbox: where outgoing mail is kept when no real route is configured.

One .eml file per message under MAILBOX_DIR/<organization id>/ (system mail such as password
resets under MAILBOX_DIR/system/), so staff see only their own organizations' mail.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage as DjangoEmailMessage

SYSTEM_FOLDER = "system"
KEY_PATTERN = re.compile(r"^(system|\d+)/(\d+-[0-9a-f]{8})$")


def _root() -> Path:
    return Path(settings.MAILBOX_DIR)


def store(raw: bytes, *, organization_id: int | None) -> str:
    """Write one message atomically; return its key ("<folder>/<name>")."""
    folder = SYSTEM_FOLDER if organization_id is None else str(int(organization_id))
    directory = _root() / folder
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{secrets.token_hex(4)}"
    temporary = directory / f".{name}.tmp"
    temporary.write_bytes(raw)
    os.replace(temporary, directory / f"{name}.eml")
    return f"{folder}/{name}"


@dataclass(frozen=True)
class MailboxEntry:
    key: str
    folder: str
    received_at: dt.datetime
    sender: str
    recipient: str
    subject: str


def _folders(organization_ids: Iterable[int] | None) -> list[str]:
    """Folders visible to a person: all for superusers (None), else their organizations'."""
    if organization_ids is None:
        root = _root()
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    return [str(int(organization_id)) for organization_id in organization_ids]


def entries(organization_ids: Iterable[int] | None, *, limit: int = 200) -> list[MailboxEntry]:
    files: list[tuple[str, Path]] = []
    for folder in _folders(organization_ids):
        directory = _root() / folder
        if directory.is_dir():
            files.extend((folder, path) for path in directory.glob("*.eml"))
    files.sort(key=lambda item: item[1].name, reverse=True)
    parser = BytesParser(policy=policy.default)
    result = []
    for folder, path in files[:limit]:
        with path.open("rb") as handle:
            headers = parser.parse(handle, headersonly=True)
        result.append(
            MailboxEntry(
                key=f"{folder}/{path.stem}",
                folder=folder,
                received_at=dt.datetime.fromtimestamp(int(path.stem.split("-")[0]) / 1e9, tz=dt.UTC),
                sender=str(headers.get("From", "")),
                recipient=str(headers.get("To", "")),
                subject=str(headers.get("Subject", "")),
            )
        )
    return result


def read(key: str, organization_ids: Iterable[int] | None) -> EmailMessage | None:
    """The parsed message, or None when the key is malformed, unknown or not visible."""
    match = KEY_PATTERN.match(key)
    if match is None or match.group(1) not in _folders(organization_ids):
        return None
    path = _root() / match.group(1) / f"{match.group(2)}.eml"
    if not path.is_file():
        return None
    return BytesParser(policy=policy.default).parsebytes(path.read_bytes())  # type: ignore[return-value]


def raw(key: str, organization_ids: Iterable[int] | None) -> bytes | None:
    match = KEY_PATTERN.match(key)
    if match is None or match.group(1) not in _folders(organization_ids):
        return None
    path = _root() / match.group(1) / f"{match.group(2)}.eml"
    return path.read_bytes() if path.is_file() else None


class CaptureEmailBackend(BaseEmailBackend):
    """Django email backend for system mail (password resets, error reports) on embedded defaults."""

    def send_messages(self, email_messages: list[DjangoEmailMessage]) -> int:
        for message in email_messages:
            store(message.message().as_bytes(linesep="\r\n"), organization_id=None)
        return len(email_messages)
