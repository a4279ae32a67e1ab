"""Many months in one Dagster run: each month worked on, and recorded, on its own.

A contract's delivery job runs every pending month in one run (`BackfillPolicy.single_run`),
so the run's fixed costs (Dagster's run overhead, the great-expectations import) are paid
once per contract rather than once per month. Dagster still records one materialization,
and one result of each check, per month, exactly as a run per month did:

- each month's metadata goes to its own materialization (`context.add_asset_metadata` with
  the month's `partition_key`), and the step's one output materializes every month of the
  run with it;
- each month's check results are `AssetCheckEvaluation`s naming the month (`partition`) and
  the materialization they judged, so the UI shows them per month and current.

A month's work may come in two parts (`StartedMonth`): begun, then finished once its slow
tail (great-expectations judging its profile, in the run's second process) is done, so that
this process checks the next months' rows meanwhile rather than waiting for it. Up to
`AHEAD` months may be begun and not yet finished; the months are still recorded one by one,
in order.

Months are independent: a held-back delivery is an outcome a month records, never an
error. What does raise is the machine (a full disk, S3 out of reach): the months done
before it are recorded, each as its own `AssetMaterialization`, with their checks; the
step then fails with the error, and the months not reached stay pending for the next run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import dagster as dg

# The type of `AssetCheckEvaluation.target_materialization_data`, a field of that public
# class which Dagster does not export by itself. Without it a month's check would not count
# as judging the month's newest materialization, and the UI would clear its status.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)


@dataclass
class MonthRecord:
    """What one month of a run recorded: its materialization's metadata and its checks."""

    partition_key: str
    metadata: dict
    checks: list[dg.AssetCheckResult] = field(default_factory=list)


class StartedMonth(Protocol):
    """A month begun: `finish()` completes and records its work; `cancel()` drops what is
    left of it, leaving the month as it was (pending for the next run); `ready()` says
    whether `finish()` would not wait (for great-expectations, in its own process)."""

    def finish(self) -> MonthRecord: ...

    def cancel(self) -> None: ...

    def ready(self) -> bool: ...


# Months begun and not yet finished, at most. A month is finished as soon as its slow tail is
# done; one whose tail is not is waited for only once this many months after it are begun.
# What it is for: great-expectations loads in its own process (2-3 s) while this one checks
# rows, and judges each month after (73 ms of CPU a month); with one month ahead, this
# process stood still whenever the helper fell behind. Quiet (load 2), the 37-month backfill
# of benchmarks/end_to_end.py, three pairs back to back: 8.75 / 8.40 / 8.22 s with 24 ahead
# against 8.78 / 8.59 / 8.40 s with one: a small gain, bigger when the helper is slow to
# load. Each month begun holds only its counts, its staged files and its Data Docs folder
# being written; the bound caps what a run killed midway leaves to do again (the months
# begun, not recorded, stay pending).
AHEAD = 24


class _Finished:
    """A month whose work was done at once (`MonthRecord`), queued behind months begun
    before it so that the months are still recorded in order."""

    def __init__(self, record: MonthRecord) -> None:
        self.record = record

    def finish(self) -> MonthRecord:
        return self.record

    def cancel(self) -> None:
        pass

    def ready(self) -> bool:
        return True


def run_months(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    work: Callable[[str], MonthRecord | StartedMonth],
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """Run `work` for each month of the run, in order, and record each month's outcome.

    `work` returns the month's record, or the month begun (`StartedMonth`), finished, in
    order, once it is `ready()` or `AHEAD` months after it are begun. If a month raises, the
    months before it are recorded and the error is raised again, so the run fails; the
    months after it are not recorded (those begun are cancelled)."""
    done: list[MonthRecord] = []
    failure: Exception | None = None
    failed: str | None = None
    started: deque[tuple[str, StartedMonth]] = deque()  # begun, not yet finished, in order
    for month in [*context.partition_keys, None]:
        try:
            begun = work(month) if month is not None else None
        except Exception as exc:  # the machine's fault: record the others, then fail
            failure, failed, begun = exc, month, None
        if begun is not None:
            started.append((month, _Finished(begun) if isinstance(begun, MonthRecord) else begun))
        # Every month begun is finished at the end (or when one failed: the months before
        # it are recorded); before then, the oldest whose tail is done or is AHEAD behind.
        last = month is None or failure is not None
        while started and (last or len(started) > AHEAD or started[0][1].ready()):
            earlier, finishing = started.popleft()
            try:
                done.append(finishing.finish())
            except Exception as exc:
                for _, later in started:
                    later.cancel()  # recorded after a month that was not: left pending
                started.clear()
                failure, failed = exc, earlier
        if failure is not None:
            break
    if failure is not None:
        left = context.partition_keys[len(done) + 1 :]
        context.log.error(
            f"{asset_key.to_user_string()} {failed} failed: {failure}. "
            f"{len(done)} month(s) before it are recorded"
            + (f"; {len(left)} after it are left for the next run" if left else "")
        )
        for record in done:
            yield dg.AssetMaterialization(
                asset_key=asset_key, partition=record.partition_key, metadata=record.metadata
            )
    else:
        for record in done:
            context.add_asset_metadata(record.metadata, partition_key=record.partition_key)
        # One output for the run; Dagster materializes each month with its own metadata.
        yield dg.MaterializeResult(asset_key=asset_key)
    yield from check_evaluations(context, asset_key, done)
    if failure is not None:
        raise failure


def check_evaluations(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, months: Sequence[MonthRecord]
) -> Iterator[dg.AssetCheckEvaluation]:
    """Each month's check results, naming the month and the materialization they judged
    (just recorded, in this run)."""
    judged = [record for record in months if record.checks]
    if not judged:
        return
    # Each month was materialized once by this run, just now: the newest records of these
    # months are this run's, one per month (one query for the run, not one per month).
    latest = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=asset_key, asset_partitions=[r.partition_key for r in judged]
        ),
        limit=len(judged),
    ).records
    targets = {
        r.partition_key: AssetCheckEvaluationTargetMaterializationData(
            storage_id=r.storage_id, run_id=r.event_log_entry.run_id, timestamp=r.timestamp
        )
        for r in latest
        if r.event_log_entry.run_id == context.run_id
    }
    for record in judged:
        target = targets.get(record.partition_key)
        for result in record.checks:
            yield dg.AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=result.check_name,
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                description=result.description,
                partition=record.partition_key,
                target_materialization_data=target,
            )
