"""Which months go in one Dagster run: a contract's pending months, as runs of consecutive
periods (each a partition range the delivery job runs at once, `assets.months`).

Consecutive, so that a run never re-runs a month in between that had nothing new; in the
usual case (a new month, a backfill, the demo) that is one run per contract. This module
imports no Dagster: `datashare run` plans before (and, with nothing new, without) loading it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MonthRun:
    """One run of a contract's delivery job over consecutive periods."""

    contract: str
    periods: tuple[str, ...]

    @property
    def first(self) -> str:
        return self.periods[0]

    @property
    def last(self) -> str:
        return self.periods[-1]

    def label(self) -> str:
        """The periods in words: `2024-03`, or `2024-01 to 2024-08`."""
        return self.first if len(self.periods) == 1 else f"{self.first} to {self.last}"


def month_runs(contract: str, pending: Iterable[str], periods: Sequence[str]) -> list[MonthRun]:
    """The runs for `pending` periods of `contract`, in the order of its `periods` (the
    partition keys): one per stretch of consecutive periods. Periods outside `periods`
    are left out."""
    wanted = set(pending)
    runs: list[MonthRun] = []
    stretch: list[str] = []
    for period in periods:
        if period in wanted:
            stretch.append(period)
        elif stretch:
            runs.append(MonthRun(contract, tuple(stretch)))
            stretch = []
    if stretch:
        runs.append(MonthRun(contract, tuple(stretch)))
    return runs
