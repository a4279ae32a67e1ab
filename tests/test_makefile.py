"""The README's two commands, as the Makefile provides them: `make demo` installs what the
pipeline needs to run and nothing of the tests' `dev` extras; `make test` adds those extras
to whichever venv is there; neither installs again what is already up to date.

The Makefile runs for real, with GNU make, in a temporary copy of it beside the project's
own pyproject.toml and constraints.txt and a real venv; only pip itself is left out (no
network here): `PIP_INSTALL` (the Makefile's own variable) is set to `echo pip install`,
so what make would install is printed instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")

RUNTIME = ".venv/.installed-runtime"
DEV = ".venv/.installed"
INSTALL_RUNTIME = "pip install -e ."
INSTALL_DEV = "pip install -e .[dev]"  # the shell has taken the quotes off by then


def _project(tmp: Path) -> Path:
    """A copy of what the Makefile's install reads: the Makefile, pyproject.toml and
    constraints.txt."""
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy2(ROOT / name, tmp / name)
    return tmp


def _make(project: Path, *args: str) -> list[str]:
    """Run make in `project`, pip printed rather than run; the pip commands it ran."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", *args, "PIP_INSTALL=echo pip install"],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.startswith("pip install")]


def _dry_run(project: Path, target: str) -> list[str]:
    """What `make -n TARGET` would run, as it prints it."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _venv(project: Path) -> None:
    """A real venv where the Makefile makes one (without pip: pip is not run here)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(project / ".venv")],
                   check=True, timeout=60)  # fmt: skip


def _edit(path: Path) -> None:
    """Change a file as an edit would, after anything make stamped (file times are coarse)."""
    time.sleep(0.02)
    path.write_text(path.read_text() + "\n")
    time.sleep(0.02)


def test_a_new_users_make_demo_installs_the_runtime_only(tmp_path: Path) -> None:
    project = _project(tmp_path)
    demo = _dry_run(project, "demo")
    installs = [line for line in demo if re.search(r"pip install .*-e ", line)]
    assert len(installs) == 1, demo
    assert re.search(r"pip install .*-e \.(;|$)", installs[0].rstrip()), installs
    assert "[dev]" not in "\n".join(demo)
    assert f"{'python3'} -m venv .venv" in demo
    assert demo[-1] == ".venv/bin/datashare demo"


def test_ci_make_test_on_a_clean_clone_installs_everything_at_once(tmp_path: Path) -> None:
    test = _dry_run(_project(tmp_path), "test")
    installs = [line for line in test if re.search(r"pip install .*-e ", line)]
    assert len(installs) == 1 and installs[0].rstrip().endswith('-e ".[dev]"'), installs
    assert "python3 -m venv .venv" in test


def test_make_test_after_make_demo_upgrades_the_demos_venv_in_place(tmp_path: Path) -> None:
    project = _project(tmp_path)
    _venv(project)
    assert _make(project, RUNTIME) == [INSTALL_RUNTIME]
    assert _make(project, RUNTIME) == []  # the second `make demo` installs nothing
    test = _dry_run(project, "test")
    assert "python3 -m venv .venv" not in test  # the same venv
    assert _make(project, DEV) == [INSTALL_DEV]
    assert _make(project, RUNTIME) == [] and _make(project, DEV) == []  # demo after test


def test_a_venv_of_the_previous_makefile_is_not_installed_again(tmp_path: Path) -> None:
    """The previous Makefile left only .venv/.installed (a dev install, runtime included)."""
    project = _project(tmp_path)
    _venv(project)
    time.sleep(0.02)
    (project / DEV).touch()
    assert _make(project, RUNTIME) == []
    assert (project / RUNTIME).exists()
    _edit(project / "pyproject.toml")  # an edit after it: the demo installs its part again
    assert _make(project, RUNTIME) == [INSTALL_RUNTIME]


def test_the_demos_extras_leave_out_the_tests_and_spark() -> None:
    """The runtime dependencies hold nothing only the tests or an optional feature use."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    dev = {
        re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0].lower()
        for d in project["optional-dependencies"]["dev"]
    }  # noqa: E501
    assert runtime.isdisjoint(dev - {"datashare"}), runtime & dev
    assert "pyspark" not in runtime


def test_the_readmes_two_commands_are_the_makefiles() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for command in commands:
        target = command.split()[1]
        assert re.search(rf"^{target}:", makefile, re.M), target
        assert re.search(rf"^\.PHONY:.*\b{target}\b", makefile, re.M), target


# Any order of `make demo`, `make test` and edits of the install's two inputs.
STEPS = st.lists(
    st.sampled_from(["demo", "test", "edit pyproject.toml", "edit constraints.txt"]),
    min_size=1, max_size=8,
)  # fmt: skip


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_any_order_of_demo_test_and_edits_installs_exactly_what_is_stale(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str]
) -> None:
    """The demo never installs the dev extras; each command installs exactly when what it
    needs is older than an edit (or missing), and then once."""
    project = _project(tmp_path_factory.mktemp("make"))
    _venv(project)
    runtime_ok = dev_ok = False  # installed since the last edit
    for step in steps:
        if step.startswith("edit"):
            _edit(project / step.split()[1])
            runtime_ok = dev_ok = False
        elif step == "demo":
            expected = [] if runtime_ok or dev_ok else [INSTALL_RUNTIME]
            assert _make(project, RUNTIME) == expected, steps
            runtime_ok = True
        else:
            assert _make(project, DEV) == ([] if dev_ok else [INSTALL_DEV]), steps
            runtime_ok = dev_ok = True
        time.sleep(0.02)
