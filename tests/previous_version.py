"""A previous version's code, for the tests that build a home with it and check that this
version keeps that home working."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def previous_version_code(commit: str, dest: Path) -> Path:
    """`commit`'s pipelines, schemas and contracts extracted into `dest` (`git archive`);
    the test is skipped where there is no git history to take them from."""
    try:
        archive = subprocess.run(
            ["git", "archive", commit, "pipelines", "schemas", "data_contracts"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs the git history (the previous version's code)")
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest
