"""Acceptance: every model change has its migration (`makemigrations --check` finds nothing)."""

from __future__ import annotations

from pathlib import Path

from emailseq.tests.startup import child_env, manage


def test_makemigrations_finds_no_missing_migration(tmp_path: Path) -> None:
    result = manage("makemigrations", "--check", "--dry-run", env=child_env(tmp_path / "var"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout
