"""Acceptance: the whole repository passes `ruff check` and `ruff format --check`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import REPO
from emailseq.tests.startup import run

RUFF = str(Path(sys.executable).with_name("ruff"))


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_finds_nothing_to_complain_about(command: list[str]) -> None:
    result = run([RUFF, *command, "--no-cache"], env={"PATH": os.environ.get("PATH", ""), "HOME": str(REPO)})

    assert result.returncode == 0, result.stdout + result.stderr
