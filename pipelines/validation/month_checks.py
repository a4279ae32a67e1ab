"""Checks on a delivery as the month's delivery, beyond its rows one by one.

Row checks say what is wrong with each row; these say what the delivery as a whole means
for its month, where a person would otherwise be told something untrue:
- a delivery from which nothing (or less than the agreed share) can be published is held
  back, with one sentence saying what most likely happened (`delivery.nothing_usable`);
- a file whose name, in the agreed pattern, names another period than its folder
  (`delivery.file_name`);
- a release in a wide layout that does not carry the periods agreed for it
  (`delivery.periods_carried`);
- a second file for a month agreed as one file, which replaces the first as a whole
  (`delivery.multiple_files` when both are awaiting publication, `delivery.restated` when
  the first was published): both files and both row counts are named.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from pipelines.lake.publishing import part_name
from pipelines.lake.register import Breach
from schemas.contract import Contract

if TYPE_CHECKING:
    # schemas.row_checks imports pandera and polars (~0.4 s): the idle `datashare run`
    # reaches this module (via delivery_schedule) only for the rule names, so the row
    # checks are imported inside the functions that use them, when there is a delivery.
    from schemas.row_checks import RowRule

NOTHING_USABLE = "delivery.nothing_usable"
FILE_NAME = "delivery.file_name"
PERIODS_CARRIED = "delivery.periods_carried"
MULTIPLE_FILES = "delivery.multiple_files"
RESTATED = "delivery.restated"

HELD = "delivery held"  # the action of a breach that held its delivery back
HELD_TOO = "delivery held: nothing published"  # any other breach of a held delivery
SUFFIXES = (".csv.gz", ".csv", ".parquet")
VALUES_KEPT = 5  # distinct failing values kept per rule, to say what the rows hold
# A restatement with this share or less of the rows of the month it replaces loses rows
# (the volume check's lower bound: half a month is out).
FAR_FEWER = 0.5


@dataclass
class RuleFailures:
    """How often one row rule failed in a delivery, and what the failing rows held.

    `values`: a few distinct failing values with their counts (public columns only);
    `months`: for a rule on a date inside the period, the month (YYYY-MM, London) of each
    failing date, counted.
    """

    rule: RowRule
    count: int = 0
    sample: list[int] = field(default_factory=list)
    values: dict[str, int] = field(default_factory=dict)
    months: dict[str, int] = field(default_factory=dict)


def shift_period(period: str, months: int) -> str:
    """The period `months` months after `period` (before, if negative), as YYYY-MM."""
    year, month = int(period[:4]), int(period[5:7])
    index = year * 12 + month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _months_apart(period: str, other: str) -> int:
    return (int(other[:4]) * 12 + int(other[5:7])) - (int(period[:4]) * 12 + int(period[5:7]))


def _relation(period: str, other: str) -> str:
    """`other` in words against the delivery's `period`: "the month before", "3 months later"."""
    apart = _months_apart(period, other)
    if apart == -1:
        return "the month before"
    if apart == 1:
        return "the month after"
    if apart < 0:
        return f"{-apart} months before"
    return f"{apart} months after"


def _common(contract: Contract, period: str, delivery_id: str, rows: int) -> dict:
    return dict(
        contract=contract.name,
        contract_version=contract.version,
        period=period,
        delivery_id=delivery_id,
        rows_checked=rows,
    )


# -- the file name ------------------------------------------------------------------------


def _name_regex(pattern: str) -> re.Pattern[str] | None:
    """The agreed file name pattern as a regex capturing the one period it names, or None
    when it names no period or more than one (a release's first and last month)."""
    stem = pattern
    for suffix in SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    parts = stem.split("YYYY-MM")
    if len(parts) != 2:
        return None
    body = r"(\d{4}-\d{2})".join(re.escape(p).replace(r"\*", ".*") for p in parts)
    ends = "|".join(re.escape(s) for s in SUFFIXES)
    return re.compile(f"^{body}(?:{ends})?$", re.IGNORECASE)


def named_period(contract: Contract, source_path: str | None) -> str | None:
    """The period the file's name gives, when the name follows the agreed pattern."""
    if not contract.file_name or not source_path:
        return None
    regex = _name_regex(contract.file_name)
    match = regex.match(PurePosixPath(source_path).name) if regex else None
    return match.group(1) if match else None


def file_name_breach(
    contract: Contract, period: str, delivery_id: str, source_path: str | None, rows: int
) -> Breach | None:
    """A major breach when the file's name names another period than its folder."""
    named = named_period(contract, source_path)
    if named is None or named == period:
        return None
    name = PurePosixPath(source_path or "").name
    return Breach(
        **_common(contract, period, delivery_id, rows),
        rule=FILE_NAME,
        clause=f"{contract.path.name}: schema[{contract.name}].physicalName",
        severity="major",
        action="delivery published",
        failing_rows=0,
        detail=f"The file {name} names {named}, {_relation(period, named)} the {period} "
        f"folder it was filed under (the agreed name is {contract.file_name}). It was "
        f"checked as the {period} delivery; if it is the {named} delivery, send it again "
        f"in the {named} folder.",
    )


# -- the periods a release carries -------------------------------------------------------


def agreed_periods(contract: Contract, period: str) -> list[str]:
    """The periods (YYYY-MM) a release for `period` must carry, oldest first."""
    layout = contract.layout
    if layout is None or not layout.agreed_periods:
        return []
    from schemas.row_checks import PERIOD_MONTHS  # lazy: see the imports above

    step = PERIOD_MONTHS.get(contract.schedule.period, 1)
    newest = shift_period(period, -step * layout.periods_end_before)
    return [shift_period(newest, -step * k) for k in reversed(range(layout.agreed_periods))]


def carried_periods(contract: Contract, value_columns: Sequence[str]) -> list[str]:
    """The periods (YYYY-MM) of a wide delivery's value columns, in file order."""
    layout = contract.layout
    carried = []
    for header in value_columns:
        try:
            carried.append(datetime.strptime(header + "|01", layout.period_format + "|%d"))
        except ValueError:
            continue  # a header that is not a period: the value rule reports it
    return [f"{d.year:04d}-{d.month:02d}" for d in carried]


def _many(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _span(periods: Sequence[str]) -> str:
    ordered = sorted(periods)
    if not ordered:
        return "none"
    if len(ordered) == 1:
        return ordered[0]
    return f"{ordered[0]} to {ordered[-1]}"


def periods_carried_breach(
    contract: Contract, period: str, delivery_id: str, value_columns: Sequence[str], rows: int
) -> Breach | None:
    """Critical (held back) when a release carries none of its agreed periods; major when
    some are missing or others are there beside them; None when it carries exactly them."""
    agreed = agreed_periods(contract, period)
    if not agreed:
        return None
    carried = carried_periods(contract, value_columns)
    present = [p for p in agreed if p in carried]
    missing = [p for p in agreed if p not in carried]
    extra = sorted(p for p in set(carried) if p not in agreed)
    if not missing and not extra:
        return None
    layout = contract.layout
    what = (
        f"The agreement asks a {period} release for the {len(agreed)} "
        f"{layout.period_name}s {_span(agreed)}; this file carries {len(set(carried))}, "
        f"{_span(carried)}"
    )
    common = dict(
        **_common(contract, period, delivery_id, rows),
        rule=PERIODS_CARRIED,
        clause=f"{contract.path.name}: schema[{contract.name}].customProperties.layout"
        ".agreedPeriods",
        failing_rows=rows if not present else 0,
    )
    if not present:
        newest = max(carried) if carried else None
        release = (
            f" It looks like the release of {shift_period(newest, layout.periods_end_before)}"
            " sent again, or a file filed under the wrong month."
            if newest
            else ""
        )
        return Breach(
            **common,
            severity="critical",
            action=HELD,
            detail=f"{what}: none of the agreed ones.{release} It was held back: nothing "
            "from it was published, and the figures already published stay as they were.",
        )
    parts = []
    if missing:
        parts.append(
            f"{_many(len(missing), f'agreed {layout.period_name}')} missing ({_span(missing)})"
        )
    if extra:
        parts.append(f"{len(extra)} not agreed ({_span(extra)})")
    return Breach(
        **common,
        severity="major",
        action="delivery published",
        detail=f"{what}: {' and '.join(parts)}. Its figures are published, but for a "
        f"{layout.period_name} also carried by a release that reaches a later "
        f"{layout.period_name}, that release's figures are the ones shown.",
    )


# -- a delivery with nothing usable --------------------------------------------------------


def _quoted(values: dict[str, int]) -> str:
    ordered = sorted(values, key=lambda v: -values[v])
    return ", ".join(repr(v) for v in ordered[:3])


def _cause(
    contract: Contract,
    period: str,
    failures: RuleFailures,
    rows: int,
    named: str | None,
) -> str:
    """What most likely happened, from the rule that failed on the most rows."""
    rule = failures.rule
    every = "every row" if failures.count >= rows else f"{failures.count:,} of {rows:,} rows"
    column = contract.column(rule.column) if rule.column in _names(contract) else None
    in_period = column is not None and column.in_period_rule is not None
    if in_period and column.in_period_rule.name == rule.id and failures.months:
        month, count = max(failures.months.items(), key=lambda kv: kv[1])
        column_name = rule.source_name
        if count >= rows:
            where = f"every date in {column_name} lies"
        elif count >= failures.count:
            where = f"every date in {column_name} outside {period} ({count:,} of {rows:,}) lies"
        else:
            where = (
                f"most dates in {column_name} outside {period} ({count:,} of "
                f"{failures.count:,}) lie"
            )
        filed = (
            f", and the file name says {named}"
            if named and named != period and named == month
            else ""
        )
        return (
            f"{where} in {month}, {_relation(period, month)} {period}{filed}: filed under "
            "the wrong month?"
        )
    if column is not None and rule.id == f"{column.name}.type" and failures.values:
        found = _quoted(failures.values)
        if column.logical_type == "boolean":
            from schemas.row_checks import BOOLEAN_TEXT  # lazy: see the imports above

            agreed = " or ".join(BOOLEAN_TEXT)
            upper = all(v.upper() in ("TRUE", "FALSE") for v in failures.values)
            hint = " (booleans spelled as a spreadsheet writes them)" if upper else ""
            return (
                f"{every} fails {rule.source_name}: it holds {found} where the agreement "
                f"says {agreed}{hint}"
            )
        form = f" (agreed form: {column.example})" if column.example else ""
        return (
            f"{every} fails {rule.source_name}: it holds {found}, not a {column.logical_type}{form}"
        )
    if failures.values and column is not None and column.value_rules:
        found = _quoted(failures.values)
        return f"{every} fails {rule.id}: {rule.source_name} holds {found}, none of them agreed"
    return f"{every} fails {rule.id}: {rule.reason}"


def _names(contract: Contract) -> set[str]:
    return {c.name for c in contract.columns}


def nothing_usable_breach(
    contract: Contract,
    period: str,
    delivery_id: str,
    rows: int,
    publishable: int,
    failures: Sequence[RuleFailures],
    broken_rows: int = 0,
    named: str | None = None,
    standing: str | None = None,
) -> Breach | None:
    """A critical breach, holding the delivery back, when too few of its rows can be
    published: none at all, or under the contract's `minPublishableShare`.

    Its detail says in one sentence what most likely happened, from the failures, and what
    the month is left with: `standing` names the file it is published from (published, or
    validated and published next; for a month in parts, of the same part), else the month
    still counts as not delivered.
    """
    least = contract.min_publishable_share
    if rows <= 0:
        return None
    share = publishable / rows
    if publishable > 0 and (least is None or share >= least):
        return None
    quarantining = [f for f in failures if f.count and f.rule.on_failure == "quarantine"]
    worst = max(quarantining, key=lambda f: f.count, default=None)
    if broken_rows and (worst is None or broken_rows >= worst.count):
        cause = (
            f"{broken_rows:,} of {rows:,} rows do not have the header's fields: another "
            "export, or a wrong delimiter?"
        )
    elif worst is not None:
        cause = _cause(contract, period, worst, rows, named)
        others = len(quarantining) - 1
        if others:
            cause += f" ({others} other rule(s) failed too; see their breaches)"
    else:
        cause = "no rule explains it"
    cause = cause[0].upper() + cause[1:]
    if publishable == 0:
        headline = f"None of the {rows:,} rows can be published."
    else:
        headline = (
            f"Only {publishable:,} of {rows:,} rows ({share:.1%}) can be published; the "
            f"agreement needs at least {least:.0%} before a delivery is published."
        )
    return Breach(
        **_common(contract, period, delivery_id, rows),
        rule=NOTHING_USABLE,
        clause=f"{contract.path.name}: customProperties.minPublishableShare"
        if least is not None
        else f"{contract.path.name}: schema[{contract.name}] (rows fit to publish)",
        severity="critical",
        action=HELD,
        failing_rows=rows - publishable,
        detail=f"{headline} {cause}{'' if cause.endswith('?') else '.'} The delivery was held "
        f"back: nothing from it was published{_left_standing(contract, period, standing)}",
    )


def _left_standing(contract: Contract, period: str, standing: str | None) -> str:
    """What a held delivery leaves the month with, ending its breach's sentence. A part
    of a month speaks for its part only: other parts may come in the same run."""
    if contract.schedule.files_per_period == "parts":
        if standing:
            return f"; the earlier {standing} stays published as its part of {period}."
        return f", and nothing is published for this part of {period}."
    if standing:
        return f"; {period} stays published from {standing}."
    return f" and {period} still counts as not delivered."


# -- a second file for a month agreed as one ------------------------------------------------


def _part_restated(contract: Contract, period: str, delivery: dict, rows: int, old: dict) -> Breach:
    """A part of a month re-sent under the same name: it replaces the earlier part."""
    before = old.get("rows_delivered") or 0
    fewer = before > 0 and rows <= FAR_FEWER * before
    state = "published" if old["event"] == "published" else "awaiting publication"
    return Breach(
        **_common(contract, period, delivery["delivery_id"], rows),
        rule=RESTATED,
        clause=f"{contract.path.name}: customProperties.deliverySchedule.filesPerPeriod",
        failing_rows=0,
        severity="major" if fewer else "minor",
        action="delivery published",
        detail=f"{_file(delivery)} ({rows:,} rows) replaces the part of {period} sent "
        f"earlier under the same name ({before:,} rows, {state}); the month's other parts "
        "stay published beside it."
        + (
            f" It carries far fewer rows ({rows / before:.0%} of the part it replaces): if "
            "it is incomplete, send the whole part again."
            if fewer
            else ""
        ),
    )


def _file(delivery: dict) -> str:
    """The file's name in its period's folder (the detail names the period)."""
    source = delivery.get("source_path")
    return PurePosixPath(source).name if source else f"delivery {delivery['delivery_id'][:12]}"


def _listed(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def replacement_breach(
    contract: Contract,
    period: str,
    delivery: dict,
    rows: int,
    others: Sequence[dict],
) -> Breach | None:
    """A breach naming both files and both row counts when this validated delivery will
    replace another readable one of the month.

    `others`: the month's other deliveries that are validated (awaiting publication) or
    published. For a contract agreeing one file per period, one sent together with this one
    (validated) is a major `delivery.multiple_files`; a published one is restated, a minor
    `delivery.restated`, or major when this one carries far fewer rows than the month it
    replaces. For a month in parts, only a part of the same file name is replaced.
    """
    if contract.schedule.files_per_period == "parts":
        same = [o for o in others if part_name(o) == part_name(delivery)]
        return _part_restated(contract, period, delivery, rows, same[-1]) if same else None
    waiting = [o for o in others if o["event"] == "validated"]
    shown = [o for o in others if o["event"] == "published"]
    if not waiting and not shown:
        return None
    mine = _file(delivery)
    common = dict(
        **_common(contract, period, delivery["delivery_id"], rows),
        clause=f"{contract.path.name}: customProperties.deliverySchedule.filesPerPeriod",
        failing_rows=0,
    )
    if waiting:
        files = [f"{_file(o)} ({o.get('rows_delivered') or 0:,} rows)" for o in waiting]
        lost = sum(o.get("rows_delivered") or 0 for o in waiting)
        earlier = _listed([_file(o) for o in waiting])
        # The month published before goes too: the lead must read that here, since the
        # restatement breach of an earlier file of this batch closes with its file.
        also = "".join(
            f" {mine} also replaces {_file(o)} ({o.get('rows_delivered') or 0:,} rows), "
            f"published before: its {o.get('rows_curated') or 0:,} published rows are no "
            "longer published."
            for o in shown
        )
        return Breach(
            **common,
            rule=MULTIPLE_FILES,
            severity="major",
            action="delivery published",
            detail=f"{len(waiting) + 1} files were sent for {period}: "
            f"{_listed([*files, f'{mine} ({rows:,} rows)'])}. The agreement expects one "
            f"file per period, so only the latest, {mine}, is published; the {lost:,} rows "
            f"of {earlier} are not (the file is kept).{also} If the files are parts of one "
            "month, send them again as one file.",
        )
    old = shown[0]
    before = old.get("rows_delivered") or 0
    fewer = before > 0 and rows <= FAR_FEWER * before
    return Breach(
        **common,
        rule=RESTATED,
        severity="major" if fewer else "minor",
        action="delivery published",
        detail=f"{mine} ({rows:,} rows) restates {period}, replacing {_file(old)} "
        f"({before:,} rows) as a whole: the {old.get('rows_curated') or 0:,} rows published "
        f"from {_file(old)} are no longer published (its file is kept). "
        + (
            f"The restatement carries far fewer rows ({rows / before:.0%} of the month it "
            "replaces): if it is only part of the month, send the whole month as one file."
            if fewer
            else "The agreement expects one file per period; a restatement replaces it."
        ),
    )
