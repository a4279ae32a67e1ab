"""great-expectations loaded in a second process while the run does intake and row checks
(`pipelines.validation.ge_process`): the same breaches and Data Docs as in process, and a
helper that dies or cannot load never skips a delivery's dataset checks."""

from __future__ import annotations

import functools
import gc
import importlib
import json
import logging
import re
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pipelines.lake.store import FolderLake
from pipelines.validation import ge_process
from pipelines.validation.dataset_expectations import check_dataset, warm_session
from tests.test_dataset_expectations import HISTORY, _file, _profile, _visible_text

REPO = Path(__file__).resolve().parents[1]


# A helper's start that fails as a broken install does (the import raises), and one with
# nothing to load: made of the standard library's callables, which a spawned helper
# unpickles without importing this module (with the modules it imports, half a second of
# CPU in each helper that needed neither).
_CANNOT_LOAD = functools.partial(importlib.import_module, "great_expectations_is_broken_here")
_NO_OP = object  # called with nothing: an object made, nothing loaded


def _half_volume(contract, lake):
    """A delivery of half the usual rows: one volume breach, one GE page."""
    return check_dataset(contract, "2024-01", "d-half", _profile(contract, 500), HISTORY, lake)


def test_checks_run_in_the_helper_give_what_checks_in_process_give(stop_and_search, tmp_path: Path):
    # A process of its own, as `datashare run` is: great-expectations is never imported in
    # it, yet its delivery gets the same breach and the same great-expectations page.
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from pipelines.lake.store import FolderLake
        from pipelines.validation import ge_process
        from pipelines.validation.dataset_expectations import check_dataset, warm_session
        from schemas.contract import load_contracts
        from tests.test_dataset_expectations import HISTORY, _profile
        contract = load_contracts()["stop_and_search"]
        lake = FolderLake({str(tmp_path / "helper")!r})
        with ge_process.loading_early(warm_session):
            breaches, page = check_dataset(
                contract, "2024-01", "d-half", _profile(contract, 500), HISTORY, lake
            )
        print(json.dumps({{
            "breaches": [[b.rule, b.detail] for b in breaches],
            "page": page,
            "ge_here": any(m.startswith("great_expectations") for m in sys.modules),
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    helper = json.loads(done.stdout.strip().splitlines()[-1])
    assert helper["ge_here"] is False  # the import was paid in the helper only

    here_breaches, here_page = _half_volume(stop_and_search, FolderLake(tmp_path / "here"))
    assert helper["breaches"] == [[b.rule, b.detail] for b in here_breaches]
    assert [rule for rule, _ in helper["breaches"]] == ["dataset.volume"]
    helper_text, here_text = _visible_text(_file(helper["page"])), _visible_text(_file(here_page))
    for text in (helper_text, here_text):
        assert "Unsuccessful Expectations 1" in text  # great-expectations' page, not a fallback
        assert "Rows delivered between 532 and 1,598" in text
    assert "great-expectations could not run" not in helper_text


def test_a_killed_helper_means_the_checks_run_here_and_the_log_says_so(
    no_shared_helper, stop_and_search, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    with ge_process.loading_early(warm_session):
        ge_process._HELPER.process.kill()
        ge_process._HELPER.process.join()
        with caplog.at_level(logging.ERROR):
            breaches, page = _half_volume(stop_and_search, FolderLake(tmp_path / "lake"))
    assert [b.rule for b in breaches] == ["dataset.volume"]
    assert "Unsuccessful Expectations 1" in _visible_text(_file(page))
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("great-expectations process" in r.getMessage() for r in failures)
    assert not ge_process.running()


def test_a_helper_that_cannot_load_fails_loudly_and_the_checks_still_run(
    no_shared_helper, stop_and_search, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    with ge_process.loading_early(_CANNOT_LOAD):
        broken = "No module named 'great_expectations_is_broken_here'"
        with pytest.raises(ge_process.HelperFailed, match=broken):
            ge_process.call(len, "x")
        with caplog.at_level(logging.ERROR):
            breaches, page = _half_volume(stop_and_search, FolderLake(tmp_path / "lake"))
    assert [b.rule for b in breaches] == ["dataset.volume"]
    assert _file(page).exists()
    assert any("could not start" in r.getMessage() for r in caplog.records)


def test_an_unused_helper_does_not_hold_up_the_run_and_a_done_one_is_ended_at_once(
    no_shared_helper,
):
    # A run whose files were all duplicates never validates: leaving it must not wait for
    # the import to finish. Against the import as measured here, on a helper let finish it,
    # not a fixed figure: both grow with the machine's load (a fixed 2 s failed at load 5).
    # Started from a process that ignores SIGTERM, as a pytest-xdist worker does once Dagster
    # has run in it (the helper inherited that, and the run waited for the whole import).
    kept = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        started = time.perf_counter()
        with ge_process.loading_early(warm_session):
            helper = ge_process._HELPER
        left = time.perf_counter() - started
    finally:
        signal.signal(signal.SIGTERM, kept)
    assert not helper.process.is_alive()
    assert not ge_process.running()
    # The helper let finish its import (one for both tests: the import is the cost here).
    started = time.perf_counter()
    with ge_process.loading_early(warm_session):
        assert ge_process.call(len, [1]) == 1  # answered once great-expectations is loaded
        # Loading it made no more than one pass over every object (five did, 0.33 s of CPU).
        assert ge_process.call(gc.get_stats)[2]["collections"] <= 1
        loaded_helper = ge_process._HELPER
        loaded = time.perf_counter() - started
        leaving = time.perf_counter()
    assert left < loaded / 2, f"left in {left:.2f} s; the import takes {loaded:.2f} s"
    _a_helper_whose_work_is_done_is_ended_without_holding_up_the_run(loaded_helper, leaving)


def _a_helper_whose_work_is_done_is_ended_without_holding_up_the_run(
    helper: ge_process._Helper, leaving: float
) -> None:
    # Its own way out (great-expectations' modules torn down) takes over a second; the run
    # has had every answer by then and must not wait for it (it waited 0.5 s before).
    assert time.perf_counter() - leaving < 0.45
    assert not helper.process.is_alive()
    assert helper.process.exitcode == 0  # it left when asked; not killed for being slow
    assert not ge_process.running()


@pytest.fixture(scope="module")
def helper(ge_helper_process):
    """One helper for the module's examples (its start is the 5 s import): the worker's
    (tests/conftest.py), the same kind of helper a run starts, usually up already in the
    suite. The tests above start helpers of their own: how one starts and ends is theirs."""
    with ge_helper_process.installed():
        yield ge_process._HELPER


@contextmanager
def _in_this_process():
    """The same checks with the run's helper set aside, as a run without one makes them."""
    kept, ge_process._HELPER = ge_process._HELPER, None
    try:
        yield
    finally:
        ge_process._HELPER = kept


@pytest.fixture
def no_shared_helper():
    """For the tests that start and end helpers of their own: the module's shared one
    (`helper`), if a test before them installed it, set aside meanwhile. Nested
    `loading_early` keeps an installed helper, so they would be given the shared one (and
    kill it): they failed whenever xdist ran one of them after the shared helper's tests."""
    with _in_this_process():
        yield


@hypothesis_settings(max_examples=12, deadline=None)
@given(
    rows=st.integers(0, 3000),
    history=st.lists(st.integers(0, 3000), max_size=14),
    vehicle=st.integers(0, 3000),
    before=st.floats(0.0, 1.0),
)
def test_the_helper_judges_every_delivery_as_this_process_does(
    helper, stop_and_search, tmp_path_factory, rows, history, vehicle, before
):
    past = [
        {"period": f"20{10 + i // 12:02d}-{i % 12 + 1:02d}", "rows_delivered": n}
        for i, n in enumerate(history)
    ]
    profile = _profile(
        stop_and_search, rows, type_counts={"Person search": rows, "Vehicle search": vehicle}
    )
    mix = {"type": {"Person search": 1.0 - before, "Vehicle search": before}}
    found = []
    for where in ("helper", "here"):
        lake = FolderLake(tmp_path_factory.mktemp(where))
        with _in_this_process() if where == "here" else nullcontext():
            breaches, page = check_dataset(
                stop_and_search, "2024-01", "d-any", profile, past, lake, history_mix=mix
            )
        text = _visible_text(_file(page))
        assert "great-expectations could not run" not in text
        summary = re.search(r"Unsuccessful Expectations \d+", text)
        found.append(([(b.rule, b.detail) for b in breaches], summary and summary.group(0)))
    assert helper.process.is_alive() and helper.broken is None
    assert found[0] == found[1]


def test_tasks_sent_ahead_are_worked_on_while_this_process_goes_on(no_shared_helper):
    # A backfill sends a month's dataset checks and goes on to the next month's rows: the
    # send must not wait for the work, and each answer must reach its own task, whatever
    # order they are taken in.
    with ge_process.loading_early(_NO_OP):
        sent = time.perf_counter()
        slow = ge_process.submit(time.sleep, 1.0)
        short, longer = ge_process.submit(len, "ab"), ge_process.submit(len, "abcd")
        assert time.perf_counter() - sent < 0.5  # none of the second's sleep waited for
        assert longer.result() == 4
        assert short.result() == 2
        assert slow.result() is None
        failing = ge_process.submit(int, "not a number")
        assert ge_process.call(len, [1]) == 1  # an answer after a failed one is its own
        with pytest.raises(ge_process.TaskFailed, match="invalid literal"):
            failing.result()


def test_a_task_says_whether_its_answer_has_come_without_waiting_for_it(no_shared_helper):
    # A backfill finishes a month as soon as great-expectations has judged it, and checks
    # the next months' rows meanwhile: asking must not wait, and must not lose answers.
    # Helpers of its own: the module's shared one (`helper`) must not be killed here.
    own = ge_process._Helper(_NO_OP)
    try:
        slow = own.submit(time.sleep, 1.0)
        after = own.submit(len, "abc")
        asked = time.perf_counter()
        assert not slow.ready() and not after.ready()
        assert time.perf_counter() - asked < 0.5  # the sleep not waited for
        assert after.result() == 3  # waited for: the one before it came on the way
        assert slow.ready() and slow.result() is None
    finally:
        own.stop()
    dying = ge_process._Helper(_NO_OP)
    try:
        gone = dying.submit(time.sleep, 30)
        dying.process.kill()
        dying.process.join()
        assert gone.ready()  # nothing to wait for: its result says why
        with pytest.raises(ge_process.HelperFailed):
            gone.result()
    finally:
        dying.stop()


def test_dataset_checks_sent_ahead_give_each_delivery_its_own_breaches_and_page(
    helper, stop_and_search, tmp_path: Path
):
    from pipelines.validation.dataset_expectations import start_dataset_checks

    lake = FolderLake(tmp_path / "lake")
    # Both sent before either is taken, as a backfill's months overlap.
    half = start_dataset_checks(
        stop_and_search, "2024-01", "d-half", _profile(stop_and_search, 500), HISTORY, lake
    )
    usual = start_dataset_checks(
        stop_and_search, "2024-02", "d-usual", _profile(stop_and_search, 1065), HISTORY, lake
    )
    (usual_breaches, usual_page), (half_breaches, half_page) = usual.result(), half.result()
    assert [b.rule for b in half_breaches] == ["dataset.volume"] and usual_breaches == []
    assert "Unsuccessful Expectations 1" in _visible_text(_file(half_page))
    assert "Unsuccessful Expectations 0" in _visible_text(_file(usual_page))
    assert "period=2024-01/d-half/" in str(_file(half_page))
    assert "period=2024-02/d-usual/" in str(_file(usual_page))
    with _in_this_process():
        here = _half_volume(stop_and_search, FolderLake(tmp_path / "here"))[0]
    assert [(b.rule, b.detail) for b in half_breaches] == [(b.rule, b.detail) for b in here]


def test_dataset_checks_of_a_month_left_pending_leave_no_pages(
    helper, stop_and_search, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # A run that stops after a month was begun leaves it to the next run: no page of it is
    # kept (the next run writes its own), nor any half-written folder.
    from pipelines.validation import dataset_expectations
    from pipelines.validation.dataset_expectations import start_dataset_checks

    root = tmp_path / "lake"
    lake = FolderLake(root)
    begun = start_dataset_checks(
        stop_and_search, "2024-01", "d-left", _profile(stop_and_search, 500), HISTORY, lake
    )
    begun.cancel()
    # Without the helper, nothing is run here only to be dropped: no GX context is made.
    monkeypatch.setattr(dataset_expectations, "_SESSION", None)
    with _in_this_process():
        start_dataset_checks(
            stop_and_search, "2024-02", "d-left", _profile(stop_and_search, 500), HISTORY, lake
        ).cancel()
    assert dataset_expectations._SESSION is None
    docs = root / "docs" / "contract=stop_and_search"
    assert not docs.exists() or not any(p.is_file() for p in docs.rglob("*"))
    assert helper.broken is None and ge_process.call(len, "ok") == 2  # still serving
