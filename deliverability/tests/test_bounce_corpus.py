"""Acceptance 9: bounce classification over real-world mail, labelled by the Sisimai project.

The corpus is `deliverability/tests/corpus/` (copied from the project's shared data; see its README). Its labels
give, per file, one entry per failed recipient in the order the message reports them, but no
addresses; so a file's parsed recipients are matched to its labels by position (the first
recipient the parser reports against the first label, and so on). A label with no parsed
recipient at its position counts as a miss; parsed recipients beyond the labels are not scored.

Each test parses every file, with its line endings as stored (LF), as CRLF and as CR.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deliverability.bounces import Classification, parse_report

CORPUS = Path(__file__).resolve().parent / "corpus"
# RFC 3463 codes only: Sisimai writes x.0.9xx when a message carries no code of its own.
STANDARD_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
SISIMAI_OWN_STATUS = re.compile(r"^[245]\.0\.9\d\d$")


def line_endings(raw: bytes, ending: str) -> bytes:
    lf = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return {"lf": lf, "crlf": lf.replace(b"\n", b"\r\n"), "cr": lf.replace(b"\n", b"\r")}[ending]


@dataclass
class Scores:
    files: int = 0
    status_labelled: int = 0
    status_equal: int = 0
    hard_labelled: int = 0
    hard_agrees: int = 0
    feedback_wrong: list[str] = field(default_factory=list)
    not_bounce_wrong: list[str] = field(default_factory=list)
    status_misses: list[str] = field(default_factory=list)
    hard_misses: list[str] = field(default_factory=list)

    @property
    def status_rate(self) -> float:
        return self.status_equal / self.status_labelled

    @property
    def hard_rate(self) -> float:
        return self.hard_agrees / self.hard_labelled


def corpus_files() -> tuple[dict[str, list[dict]], list[Path]]:
    if not (CORPUS / "labels.json").is_file() or not (CORPUS / "emails").is_dir():
        pytest.fail(
            f"The bounce corpus is missing: expected {CORPUS}/labels.json and {CORPUS}/emails/ "
            "(it ships with the repository)."
        )
    labels = json.loads((CORPUS / "labels.json").read_text())
    return labels, sorted((CORPUS / "emails").iterdir())


def score_corpus(ending: str) -> Scores:
    labels, files = corpus_files()
    scores = Scores()
    for path in files:
        scores.files += 1
        parsed = parse_report(line_endings(path.read_bytes(), ending))
        expected = labels[path.name]
        if not expected:
            if parsed.recipients or parsed.classification != Classification.NOT_BOUNCE:
                scores.not_bounce_wrong.append(path.name)
            continue
        for position, label in enumerate(expected):
            found = parsed.recipients[position] if position < len(parsed.recipients) else None
            if STANDARD_STATUS.match(label["status"]) and not SISIMAI_OWN_STATUS.match(label["status"]):
                scores.status_labelled += 1
                if found is not None and found.status == label["status"]:
                    scores.status_equal += 1
                else:
                    scores.status_misses.append(
                        f"{path.name}#{position}: {label['status']} != {found and found.status}"
                    )
            scores.hard_labelled += 1
            is_hard = found is not None and found.classification == Classification.HARD
            if is_hard == label["hard"]:
                scores.hard_agrees += 1
            else:
                scores.hard_misses.append(f"{path.name}#{position}: {label['reason']} read as {found and found.reason}")
            wanted = {"abuse": Classification.COMPLAINT, "opt-out": Classification.UNSUBSCRIBE}.get(label["feedback"])
            if wanted and (found is None or found.classification != wanted):
                scores.feedback_wrong.append(f"{path.name}#{position}: {found and found.classification}")
    return scores


@pytest.mark.parametrize("ending", ["lf", "crlf", "cr"])
def test_real_world_bounces_are_classified_like_the_labels(ending: str) -> None:
    scores = score_corpus(ending)
    print(
        f"\n[{ending}] {scores.files} files; status equal {scores.status_equal}/{scores.status_labelled} "
        f"= {scores.status_rate:.1%}; hard agrees {scores.hard_agrees}/{scores.hard_labelled} = {scores.hard_rate:.1%}"
    )
    assert scores.files == len(corpus_files()[0]) == 417
    assert scores.status_rate >= 0.90, scores.status_misses
    assert scores.hard_rate >= 0.97, scores.hard_misses
    assert scores.feedback_wrong == []
    assert scores.not_bounce_wrong == []
    # The three messages that are not bounces, and every labelled feedback report, were seen.
    labels = corpus_files()[0]
    assert sum(1 for entries in labels.values() if not entries) == 3
    assert sum(1 for entries in labels.values() for label in entries if label["feedback"] in ("abuse", "opt-out")) > 0


def test_line_endings_change_nothing() -> None:
    _, files = corpus_files()
    for path in files:
        raw = path.read_bytes()
        as_stored = parse_report(line_endings(raw, "lf"))
        for ending in ("crlf", "cr"):
            converted = parse_report(line_endings(raw, ending))
            assert converted.recipients == as_stored.recipients, (path.name, ending)
