"""Many months in one Dagster run (`assets.months.run_months`), each begun and then finished
once its dataset checks (great-expectations, in its own process) are done: this process goes
on checking the next months' rows while earlier months wait for theirs, up to `AHEAD` months,
and still records every month in order, each with its own metadata; a month that cannot be
finished leaves every month begun after it pending."""

import dagster as dg
import pytest

from assets import months as months_module
from assets.months import MonthRecord, run_months

MONTHS = ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05"]


def _run(
    tmp_path, ready_after: int, fail_finish: str | None = None, fail_begin: str | None = None
) -> tuple[list[str], dg.DagsterInstance, bool]:
    """A run of the five months, each month's tail done once `ready_after` months after it
    are begun (its dataset checks slower than that many months' rows)."""
    said: list[str] = []

    class Begun:
        def __init__(self, month: str) -> None:
            if month == fail_begin:
                raise OSError("No space left on device")
            self.month = month
            said.append(f"begin {month}")

        def ready(self) -> bool:
            after = said[said.index(f"begin {self.month}") + 1 :]
            return sum(step.startswith("begin") for step in after) >= ready_after

        def finish(self) -> MonthRecord:
            said.append(f"finish {self.month}")
            if self.month == fail_finish:
                raise OSError("No space left on device")
            return MonthRecord(self.month, {"month": self.month})

        def cancel(self) -> None:
            said.append(f"cancel {self.month}")

    @dg.asset(
        partitions_def=dg.StaticPartitionsDefinition(MONTHS),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def months(context: dg.AssetExecutionContext):
        yield from run_months(context, context.asset_key, Begun)

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [months],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": MONTHS[0],
            "dagster/asset_partition_range_end": MONTHS[-1],
        },
        raise_on_error=False,
    )
    return said, instance, result.success


def _materialized(instance: dg.DagsterInstance) -> dict[str, dict]:
    records = instance.fetch_materializations(dg.AssetKey("months"), limit=10).records
    return {
        r.partition_key: {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in records
    }


@pytest.fixture
def two_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(months_module, "AHEAD", 2)


def test_the_next_months_rows_are_checked_while_great_expectations_is_behind(tmp_path, two_ahead):
    # Each month's checks take three months' rows: no month is waited for until two are
    # begun after it, and each is finished, in order, as soon as it is ready.
    said, instance, success = _run(tmp_path, ready_after=3)
    assert success
    assert said == [
        "begin 2024-01",
        "begin 2024-02",
        "begin 2024-03",
        "finish 2024-01",  # waited for: two months begun after it
        "begin 2024-04",
        "finish 2024-02",
        "begin 2024-05",
        "finish 2024-03",
        "finish 2024-04",
        "finish 2024-05",
    ]
    assert _materialized(instance) == {m: {"month": m} for m in MONTHS}


def test_a_month_whose_checks_are_done_is_finished_at_once(tmp_path, two_ahead):
    said, _, success = _run(tmp_path, ready_after=0)
    assert success
    assert said == [step for m in MONTHS for step in (f"begin {m}", f"finish {m}")]


def test_a_month_that_cannot_be_finished_leaves_every_month_begun_after_it_pending(
    tmp_path, two_ahead
):
    said, instance, success = _run(tmp_path, ready_after=3, fail_finish="2024-02")
    assert not success  # the run fails with the machine's error
    assert said == [
        "begin 2024-01",
        "begin 2024-02",
        "begin 2024-03",
        "finish 2024-01",
        "begin 2024-04",
        "finish 2024-02",
        "cancel 2024-03",
        "cancel 2024-04",
    ]
    assert _materialized(instance) == {"2024-01": {"month": "2024-01"}}


def test_months_begun_before_one_that_fails_are_all_recorded(tmp_path, two_ahead):
    said, instance, success = _run(tmp_path, ready_after=3, fail_begin="2024-03")
    assert not success
    assert said == ["begin 2024-01", "begin 2024-02", "finish 2024-01", "finish 2024-02"]
    assert set(_materialized(instance)) == {"2024-01", "2024-02"}


def test_each_month_is_finished_once_its_checks_are_done_with_its_own_metadata(tmp_path):
    # Each month's checks done by the time the next month is begun (great-expectations'
    # answer comes while the next month's rows are checked).
    said, instance, success = _run(tmp_path, ready_after=1)
    assert success
    assert said == [
        "begin 2024-01",
        "begin 2024-02", "finish 2024-01",
        "begin 2024-03", "finish 2024-02",
        "begin 2024-04", "finish 2024-03",
        "begin 2024-05", "finish 2024-04",
        "finish 2024-05",
    ]  # fmt: skip
    assert _materialized(instance) == {m: {"month": m} for m in MONTHS}


def test_a_month_that_cannot_be_finished_leaves_the_months_after_it_pending(tmp_path):
    said, instance, success = _run(tmp_path, ready_after=1, fail_finish="2024-02")
    assert not success  # the run fails with the machine's error
    # The month begun after it is dropped, not recorded; none after that is begun.
    assert said == [
        "begin 2024-01",
        "begin 2024-02", "finish 2024-01",
        "begin 2024-03", "finish 2024-02", "cancel 2024-03",
    ]  # fmt: skip
    assert _materialized(instance) == {"2024-01": {"month": "2024-01"}}
