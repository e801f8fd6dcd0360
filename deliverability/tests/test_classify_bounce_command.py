"""`manage.py classify_bounce PATH...`: one JSON line per failed recipient of each message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from deliverability.tests.test_bounce_classification import DSN, PERSONAL, QMAIL

CORPUS_EMAILS = Path(__file__).resolve().parent / "corpus" / "emails"
KEYS = {"file", "recipient", "status", "reply", "class", "reason"}


def run(*paths: str) -> tuple[list[dict[str, str]], str]:
    out, err = StringIO(), StringIO()
    call_command("classify_bounce", *paths, stdout=out, stderr=err)
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_prints_one_line_per_failed_recipient(tmp_path: Path) -> None:
    (tmp_path / "dsn.eml").write_bytes(DSN)

    lines, err = run(str(tmp_path / "dsn.eml"))

    assert err == ""
    assert all(set(line) == KEYS for line in lines)
    assert [(line["recipient"], line["status"], line["reply"], line["class"], line["reason"]) for line in lines] == [
        ("gone@example.org", "5.1.1", "550", "hard", "userunknown"),
        ("full@example.org", "5.2.2", "552", "soft", "mailboxfull"),
        ("slow@example.org", "4.4.1", "451", "soft", "expired"),
        ("fine@example.org", "2.0.0", "", "delivered", "delivered"),
    ]
    assert {line["file"] for line in lines} == {str(tmp_path / "dsn.eml")}


def test_a_message_without_recipients_gets_one_line_saying_so(tmp_path: Path) -> None:
    (tmp_path / "letter.eml").write_bytes(PERSONAL)

    lines, _ = run(str(tmp_path / "letter.eml"))

    assert lines == [
        {
            "file": str(tmp_path / "letter.eml"),
            "recipient": "",
            "status": "",
            "reply": "",
            "class": "not_bounce",
            "reason": "",
        }
    ]


def test_a_directory_means_every_file_in_it(tmp_path: Path) -> None:
    (tmp_path / "a.eml").write_bytes(QMAIL)
    (tmp_path / "b.eml").write_bytes(PERSONAL)

    lines, _ = run(str(tmp_path))

    assert [(Path(line["file"]).name, line["class"]) for line in lines] == [("a.eml", "hard"), ("b.eml", "not_bounce")]


def test_unreadable_paths_are_reported_and_fail_the_run_without_stopping_it(tmp_path: Path) -> None:
    (tmp_path / "a.eml").write_bytes(QMAIL)
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError, match="1 path"):
        call_command("classify_bounce", str(tmp_path / "missing.eml"), str(tmp_path / "a.eml"), stdout=out, stderr=err)

    assert "missing.eml" in err.getvalue()
    assert [json.loads(line)["recipient"] for line in out.getvalue().splitlines()] == ["nobody@example.ne.jp"]


def test_classifies_the_corpus_in_a_real_process(tmp_path: Path) -> None:
    if not CORPUS_EMAILS.is_dir():
        pytest.fail(f"The bounce corpus is missing: expected {CORPUS_EMAILS}")
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "emailseq.settings"}

    finished = subprocess.run(
        [sys.executable, "manage.py", "classify_bounce", str(CORPUS_EMAILS), str(tmp_path / "missing.eml")],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode == 1
    assert "cannot read" in finished.stderr and "missing.eml" in finished.stderr
    lines = [json.loads(line) for line in finished.stdout.splitlines()]
    assert {Path(line["file"]).name for line in lines} == {path.name for path in CORPUS_EMAILS.iterdir()}
    by_file = {}
    for line in lines:
        by_file.setdefault(Path(line["file"]).name, []).append(line)
    assert [line["class"] for line in by_file["not-is-not-bounce-01.eml"]] == ["not_bounce"]
    assert {line["class"] for line in by_file["arf-01.eml"]} == {"complaint"}
    assert [(line["status"], line["class"]) for line in by_file["lhost-activehunter-01.eml"]] == [("5.1.1", "hard")]
    assert all(
        line["class"] in {"hard", "soft", "complaint", "unsubscribe", "auto_reply", "delivered", "not_bounce"}
        for line in lines
    )
