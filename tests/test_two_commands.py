"""What `make demo` leaves a new user reading: the demo's last lines say how long it took
and what to open next, once, and every file and command they name is there and works.

Reads the session's shared demo home (tests/conftest.py) and what its `datashare demo`
printed."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import duckdb


def test_the_demo_ends_with_its_time_and_what_to_open_next(shared_demo: Path) -> None:
    out = (shared_demo / "demo-stdout.txt").read_text(encoding="utf-8").rstrip().splitlines()
    home = (shared_demo / "home").resolve()
    # Once, at the end: not after each of the demo's two passes, before the pages it names
    # were written.
    assert sum("Next:" in line for line in out) == 1, "\n".join(out)
    end = out[-5:]
    assert re.fullmatch(r"Demo done in (\d+ min )?\d+ s\. Next:", end[0]), end
    assert end[0] == out[-5] and out[-6] == ""
    labels = [line.split(":")[0].strip() for line in end[1:]]
    assert labels == ["Dagster UI", "Oversight pack", "Breach review", "Query"], end
    ui, pack, review, query = (line.split(":", 1)[1].strip() for line in end[1:])
    assert f"--home {home} ui" in ui
    # The pages it names were written by the demo: open them, nothing to run first.
    assert Path(pack) == home / "reports" / "oversight-pack.html" and Path(pack).is_file()
    page, _, letters = review.partition("   (the letters to the force beside it, in ")
    assert Path(page) == home / "reports" / "breach-review.html" and Path(page).is_file()
    assert any(Path(letters.rstrip(")")).glob("*.html"))
    # The query, as a user pastes it, answers with the register's breaches.
    done = subprocess.run(shlex.split(query), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        (n,) = con.execute("SELECT count(*) FROM governance.breaches").fetchone()
    assert f"{n} rows" in done.stdout.replace(",", ""), done.stdout


def test_the_demo_as_a_new_user_starts_it_ends_whole(tmp_path: Path) -> None:
    # The shared demo home is built in the test process (tests/conftest.py); this is the
    # `datashare` script itself, as `make demo` starts it: its process ends once the demo
    # has said what it did (pipelines.cli.main.program), with the exit status, the last
    # lines and every Dagster database closed (no WAL left beside one).
    home = tmp_path / "home"
    script = Path(sys.executable).with_name("datashare")
    done = subprocess.run(
        [str(script), "--home", str(home), "demo", "--contracts", "complaints", "--months", "1",
         "--rows", "50"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # "Demo done in 12 s. Next:", or "1 min 11 s" on a loaded machine.
    done_line = done.stdout.splitlines()[-5]
    assert re.fullmatch(r"Demo done in (\d+ min )?\d+ s\. Next:", done_line), done.stdout
    assert sorted(p.name for p in (home / "dagster").rglob("*-wal")) == []
