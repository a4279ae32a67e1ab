"""Which months go in one Dagster run, for `datashare run` and the delivery sensor alike."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pipelines.intake.dropzone import open_dropzone
from pipelines.orchestration.delivery_sensor import dump_cursor, load_cursor, plan_run_requests
from pipelines.orchestration.month_runs import month_runs

PERIODS = [f"{2024 + i // 12}-{i % 12 + 1:02d}" for i in range(30)]


@given(st.sets(st.sampled_from(PERIODS + ["2031-01"])))
def test_pending_months_go_in_as_few_runs_as_there_are_stretches(pending: set[str]) -> None:
    runs = month_runs("stop_and_search", pending, PERIODS)
    covered = [p for run in runs for p in run.periods]
    # Every pending month of the schedule in exactly one run, in order; none other.
    assert covered == [p for p in PERIODS if p in pending]
    for run in runs:
        # Each run is a stretch of consecutive periods, so a partition range of its own ...
        first = PERIODS.index(run.first)
        assert list(run.periods) == PERIODS[first : first + len(run.periods)]
    for before, after in zip(runs, runs[1:], strict=False):
        # ... and two runs are two runs because a month between them has nothing new.
        assert PERIODS.index(after.first) > PERIODS.index(before.last) + 1


def _write(root: Path, relative: str, text: str = "Type,Date\n") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_sensor_asks_for_one_run_per_contract_over_its_new_months(tmp_path: Path) -> None:
    zone = tmp_path / "dropzone"
    for period in ("2025-01", "2025-02", "2025-03"):
        _write(zone, f"stop_and_search/{period}/{period}.csv")
    _write(zone, "stop_and_search/2025-02/resent.csv", "Type,Date\n\n")
    _write(zone, "use_of_force/2025-02/uof.csv")
    _write(zone, "misc/notes.csv")
    _write(zone, "misc/more.csv")
    files = open_dropzone(str(zone), 0).files({"stop_and_search", "use_of_force"})
    periods = {"stop_and_search": PERIODS, "use_of_force": PERIODS}

    plan = plan_run_requests(files, set(), set(), periods)
    by_job = {r.job_name: r for r in plan.run_requests}
    assert sorted(by_job) == [
        "stop_and_search_delivery",
        "unfiled_deliveries",
        "use_of_force_delivery",
    ]
    months = by_job["stop_and_search_delivery"]
    # Three months in one run: a partition range, limited to one run of the contract at once.
    assert months.partition_key is None
    assert months.tags["dagster/asset_partition_range_start"] == "2025-01"
    assert months.tags["dagster/asset_partition_range_end"] == "2025-03"
    assert months.tags["datashare/contract"] == "stop_and_search"
    assert months.tags["datashare/partition"] == "stop_and_search.2025-01...2025-03"
    one = by_job["use_of_force_delivery"]
    assert one.partition_key == "2025-02" and "dagster/asset_partition_range_start" not in one.tags
    assert one.tags["datashare/contract"] == "use_of_force"
    assert by_job["unfiled_deliveries"].tags["datashare/contract"] == "unfiled"
    # Every file asked for once; a tick racing this one asks with the same run keys.
    assert len(plan.cursor) == len(files)
    racing = plan_run_requests(files, set(), set(), periods)
    assert {r.run_key for r in racing.run_requests} == {r.run_key for r in plan.run_requests}
    # After a restart (the cursor kept), nothing is asked for twice; a new month of the
    # contract is a run of its own.
    again = plan_run_requests(files, set(), load_cursor(dump_cursor(plan.cursor)), periods)
    assert not again.run_requests
    _write(zone, "stop_and_search/2025-05/may.csv")
    files = open_dropzone(str(zone), 0).files({"stop_and_search", "use_of_force"})
    later = plan_run_requests(files, set(), plan.cursor, periods)
    (may,) = later.run_requests
    assert may.partition_key == "2025-05" and may.tags["datashare/contract"] == "stop_and_search"
