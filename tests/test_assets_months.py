"""Many months in one Dagster run (`assets.months.run_months`): a month begun is finished after
the next one is begun, in order; one that cannot be finished leaves the months after it
pending, the one already begun among them."""

import dagster as dg

from assets.months import MonthRecord, run_months

MONTHS = ["2024-01", "2024-02", "2024-03", "2024-04"]


def _run(tmp_path, fail: str | None = None) -> tuple[list[str], dg.DagsterInstance, bool]:
    """A run of the four months whose work is begun and finished in two steps."""
    said: list[str] = []

    class Begun:
        def __init__(self, month: str) -> None:
            self.month = month
            said.append(f"begin {month}")

        def finish(self) -> MonthRecord:
            said.append(f"finish {self.month}")
            if self.month == fail:
                raise OSError("No space left on device")
            return MonthRecord(self.month, {"month": self.month})

        def cancel(self) -> None:
            said.append(f"cancel {self.month}")

        def ready(self) -> bool:
            # Its tail done once the next month is begun (great-expectations' answer comes
            # while the next month's rows are checked); tests/test_backfill_months.py has
            # tails that take longer.
            after = said[said.index(f"begin {self.month}") + 1 :]
            return any(step.startswith("begin") for step in after)

    @dg.asset(
        partitions_def=dg.StaticPartitionsDefinition(MONTHS),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def months(context: dg.AssetExecutionContext):
        yield from run_months(context, context.asset_key, Begun)

    instance = dg.DagsterInstance.local_temp(str(tmp_path))
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


def test_each_month_is_finished_after_the_next_is_begun_and_recorded_with_its_own_metadata(
    tmp_path,
):
    said, instance, success = _run(tmp_path)
    assert success
    assert said == [
        "begin 2024-01",
        "begin 2024-02", "finish 2024-01",
        "begin 2024-03", "finish 2024-02",
        "begin 2024-04", "finish 2024-03",
        "finish 2024-04",
    ]  # fmt: skip
    assert _materialized(instance) == {m: {"month": m} for m in MONTHS}


def test_a_month_that_cannot_be_finished_leaves_the_months_after_it_pending(tmp_path):
    said, instance, success = _run(tmp_path, fail="2024-02")
    assert not success  # the run fails with the machine's error
    # The month begun after it is dropped, not recorded; none after that is begun.
    assert said == [
        "begin 2024-01",
        "begin 2024-02", "finish 2024-01",
        "begin 2024-03", "finish 2024-02", "cancel 2024-03",
    ]  # fmt: skip
    assert _materialized(instance) == {"2024-01": {"month": "2024-01"}}
