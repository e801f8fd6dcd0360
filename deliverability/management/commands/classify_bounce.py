from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from deliverability.bounces import Classification, parse_report


class Command(BaseCommand):
    help = (
        "Classify delivery reports (bounces, complaints, auto-replies) saved as files, one whole message "
        'per file. Prints one JSON line per failed recipient: {"file", "recipient", "status", "reply", '
        '"class", "reason"}; a message that names no recipient gets one line with recipient "". '
        "A directory means every file in it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", help="A message file, or a directory of them.")

    def handle(self, *args: Any, paths: list[str], **options: Any) -> None:
        unreadable = 0
        for path in _message_files(paths):
            try:
                raw = path.read_bytes()
            except OSError as error:
                unreadable += 1
                self.stderr.write(f"classify_bounce: cannot read {path}: {error.strerror or error}")
                continue
            for line in _report_lines(str(path), raw):
                self.stdout.write(json.dumps(line, ensure_ascii=False))
        if unreadable:
            raise CommandError(f"{unreadable} path(s) could not be read")


def _message_files(paths: list[str]) -> list[Path]:
    """The files named, with each directory replaced by the files in it (sorted, not recursive).
    A path that does not exist stays in the list so that reading it reports the error."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            try:
                files.extend(sorted(child for child in path.iterdir() if child.is_file()))
            except OSError:
                files.append(path)
        else:
            files.append(path)
    return files


def _report_lines(file: str, raw: bytes) -> list[dict[str, str]]:
    parsed = parse_report(raw)
    if not parsed.recipients:
        return [
            {
                "file": file,
                "recipient": "",
                "status": "",
                "reply": "",
                "class": str(Classification.NOT_BOUNCE),
                "reason": "",
            }
        ]
    return [
        {
            "file": file,
            "recipient": recipient.recipient,
            "status": recipient.status,
            "reply": recipient.reply,
            "class": str(recipient.classification),
            "reason": recipient.reason,
        }
        for recipient in parsed.recipients
    ]
