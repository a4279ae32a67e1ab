"""Realistic synthetic deliveries, driven by a data contract and an optional measured profile.

`write_delivery` writes one period's CSV exactly as the force publishes it: the contract's
delivered headers in contract order (then, for a wide layout, one value column per month),
UTF-8 without BOM, LF line endings, minimal quoting. Dates and times are written in each
column's agreed format: a timestamp with an offset in UTC (`+00:00`), a timestamp without
one as wall-clock time in its time zone (London unless the contract says otherwise), a date
as a London date. Values come from the contract alone (valid values uniformly, numbers
within their bounds, values in the form of the column's example, times inside the period)
unless `synthetic_profiles/<contract>.yaml` describes the column: value weights and blank
shares measured from a real delivery, dependencies between columns, references, groups of
rows, duplicate rows and the defects a delivery realistically carries.

A file without defects keeps every row rule of the contract: times inside the period in
London time (a quarter is named by its first month and covers three), a `notBefore`
column a delay after its reference (blank when the delay runs past the delivery's due
date), pattern columns in their agreed form, and unique keys unique: a key with a
reference column is unique by construction, and a key over a finite set of values is drawn
as distinct combinations. When such a key has fewer combinations than the rows asked for,
the delivery holds every combination once (the census: 48 rows).

Rows are generated in chunks of `CHUNK_ROWS` with vectorised numpy draws and written chunk
by chunk, so memory stays bounded whatever the row count. Every random draw comes from a
generator seeded by (seed, contract, period, chunk, purpose), so the same arguments always
give the same bytes, and the defects use their own stream: a file with defects is the
clean file with some cells changed.
"""

from __future__ import annotations

import argparse
import calendar
import os
import re
import string
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from schemas.contract import Column, Contract, load_contracts

PROFILES_DIR = Path(__file__).resolve().parent / "synthetic_profiles"
CHUNK_ROWS = 100_000  # measured: faster and ~200 MB lighter than 250k at 5M rows
WORKERS = 2  # chunks built at once while writing a delivery
LONDON = ZoneInfo("Europe/London")
DEFAULT_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%:z"
DEFAULT_FORMATS = {"date": "%Y-%m-%d", "time": "%H:%M", "timestamp": DEFAULT_TIMESTAMP_FORMAT}
PERIOD_MONTHS = {"monthly": 1, "quarterly": 3, "annual": 12, "once": 1}
DEFECT_KINDS = (
    "blank_required",
    "invalid_value",
    "malformed_timestamp",
    "out_of_period",
    "out_of_range",
    "trailing_space",
    "before_reference",
    "duplicate_key",
)
KEY_SPACE_LIMIT = 1_000_000  # combinations of a finite unique key enumerated at most
POOL_SIZE = 1_000  # values made up in the form of a column's example
DAY = 86_400
SLOTS_PER_DAY = 24 * 60
UNITS = {"seconds": 1, "minutes": 60, "hours": 3_600, "days": DAY}
_NEEDS_QUOTES = r'[",\r\n]'
_WHOLE_ROW = "(whole row)"  # the "column" a duplicate_key defect changes

# Purposes of the random streams; part of every seed, so never renumber them.
_STREAM_SETUP, _STREAM_VALUES, _STREAM_DUPLICATES, _STREAM_DEFECTS = range(4)
_STREAM_KEYS, _STREAM_POOLS, _STREAM_GROUPS, _STREAM_ORDER = range(4, 8)


class ProfileError(ValueError):
    """A synthetic profile that does not fit its contract."""


# --- periods and time slots -------------------------------------------------------------


def _year_month(period: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{4})-(\d{2})", period)
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"period must look like YYYY-MM, not {period!r}")
    return int(match[1]), int(match[2])


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    y, m = divmod(year * 12 + month - 1 + months, 12)
    return y, m + 1


def period_bounds(period: str, months: int = 1) -> tuple[datetime, datetime]:
    """UTC start (inclusive) and end (exclusive) of a period of `months` months from "YYYY-MM",
    in London time."""
    year, month = _year_month(period)
    start = datetime(year, month, 1, tzinfo=LONDON)
    end = datetime(*_add_months(year, month, months), 1, tzinfo=LONDON)
    return start.astimezone(UTC), end.astimezone(UTC)


def period_months(contract: Contract) -> int:
    """How many months a delivery period covers (a delivery `once` is for its named month)."""
    return PERIOD_MONTHS.get(contract.schedule.period, 1)


@dataclass(frozen=True)
class _Slots:
    """Every minute of the period in London time, as UTC epoch seconds with a weight each."""

    utc: np.ndarray  # int64, ascending
    local: np.ndarray  # int64 epoch seconds of the London wall-clock time, read as if UTC
    cdf: np.ndarray
    p: np.ndarray


def _month_slots(
    year: int, month: int, weekday_w: np.ndarray, hour_w: np.ndarray, minute_w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    days = calendar.monthrange(year, month)[1]
    offsets = np.zeros((days, 24), dtype=np.int64)
    exists = np.ones((days, 24), dtype=bool)
    for d in range(days):
        for h in range(24):
            local = datetime(year, month, d + 1, h, tzinfo=LONDON)
            offsets[d, h] = int(local.utcoffset().total_seconds())
            # The hour the clocks skip in March does not exist: never generate it.
            exists[d, h] = local.astimezone(UTC).astimezone(LONDON).hour == h
    weekday = np.array([calendar.weekday(year, month, d + 1) for d in range(days)])
    w = (
        weekday_w[weekday][:, None, None]
        * (hour_w[None, :] * exists)[:, :, None]
        * minute_w[None, None, :]
    ).ravel()
    base = calendar.timegm((year, month, 1, 0, 0, 0))
    local = (
        base
        + np.arange(days)[:, None, None] * 86400
        + np.arange(24)[None, :, None] * 3600
        + np.arange(60)[None, None, :] * 60
    )
    utc = (local - offsets[:, :, None]).ravel()
    return utc, local.ravel(), w


def _slots(period: str, spec: dict[str, Any], months: int = 1) -> _Slots:
    year, month = _year_month(period)
    weekday_w = _weights(spec.get("weekday_weights"), 7, "weekday_weights")
    hour_w = _weights(spec.get("hour_weights"), 24, "hour_weights")
    minute_w = _weights(spec.get("minute_weights"), 60, "minute_weights")
    parts = [
        _month_slots(*_add_months(year, month, i), weekday_w, hour_w, minute_w)
        for i in range(months)
    ]
    utc, local, w = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    day = spec.get("day")
    if day is not None:
        # Every value on one day of the period (e.g. the last day of a quarter).
        days = len(w) // SLOTS_PER_DAY
        which = {"first": 0, "last": days - 1}[day]
        keep = np.zeros(len(w), dtype=bool)
        keep[which * SLOTS_PER_DAY : (which + 1) * SLOTS_PER_DAY] = True
        w = w * keep
        if w.sum() <= 0:
            raise ProfileError(f"no hour of the {day} day of {period} has any weight")
    p = w / w.sum()
    return _Slots(utc=utc, local=local, cdf=_cdf(p), p=p)


def _weights(raw: Any, size: int, what: str) -> np.ndarray:
    if raw is None:
        return np.ones(size)
    values = np.asarray(raw, dtype=float)
    if values.shape != (size,) or (values < 0).any() or values.sum() <= 0:
        raise ProfileError(f"{what} must be {size} non-negative numbers, not all zero")
    return values


def _cdf(p: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(p, dtype=float)
    cdf /= cdf[-1]
    cdf[-1] = 1.0  # so that a draw of 0.999... never falls past the last value
    return cdf


def _draw(cdf: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    return np.searchsorted(cdf, rng.random(n), side="right")


# --- dates and times in the agreed formats ----------------------------------------------


def _time_kind(column: Column) -> str | None:
    """How a column's times are written: "utc" (with an offset), "local", "date" or "time"."""
    match column.logical_type:
        case "date" | "time":
            return column.logical_type
        case "timestamp":
            fmt = _time_format(column)
            return "utc" if "%z" in fmt or "%:z" in fmt else "local"
    return None


def _time_format(column: Column) -> str:
    return column.timestamp_format or DEFAULT_FORMATS.get(column.logical_type, "%Y-%m-%d")


def _strftime(when: datetime, fmt: str) -> str:
    """Format one aware UTC datetime like the vectorised writer does (offset as +00:00)."""
    return when.astimezone(UTC).strftime(_utc_format(fmt))


def _utc_format(fmt: str) -> str:
    # Deliveries are in UTC, so the offset is a constant; `%:z` is not portable to strftime.
    return fmt.replace("%:z", "+00:00").replace("%z", "+0000")


def _format_times(kind: str, fmt: str, utc: np.ndarray, local: np.ndarray) -> pa.Array:
    """Times as text: UTC with a constant offset, or the local wall clock."""
    if kind == "utc":
        return pc.strftime(pa.array(utc).cast(pa.timestamp("s")), format=_utc_format(fmt))
    return pc.strftime(pa.array(local).cast(pa.timestamp("s")), format=fmt)


def _wall_clock(utc: np.ndarray, tz: str) -> np.ndarray:
    """UTC epoch seconds as the wall-clock time in `tz`, read as if UTC."""
    stamps = pa.array(utc, pa.int64()).cast(pa.timestamp("s", tz="UTC"))
    local = pc.local_timestamp(stamps.cast(pa.timestamp("s", tz=tz)))
    return local.cast(pa.int64()).to_numpy()


def _gaps(tz: str, start: datetime, end: datetime) -> list[tuple[int, int]]:
    """Wall-clock intervals (as epoch seconds read as UTC) that do not exist in `tz`."""
    zone = ZoneInfo(tz)
    found = []
    t = start.replace(minute=0, second=0, microsecond=0)
    before = t.astimezone(zone).utcoffset()
    while t < end:
        t += timedelta(hours=1)
        after = t.astimezone(zone).utcoffset()
        if after > before:
            at = int(t.timestamp())
            found.append((at + int(before.total_seconds()), at + int(after.total_seconds())))
        before = after
    return found


def _shape(fmt: str) -> str:
    """A regular expression for exactly the text a strptime format produces."""
    shapes = {"%Y": r"\d{4}", "%:z": r"[+-]\d{2}:\d{2}", "%z": r"[+-]\d{4}"}
    parts = re.split(r"(%:?[A-Za-z])", fmt)
    return "".join(shapes.get(p, r"\d{2}" if p.startswith("%") else re.escape(p)) for p in parts)


def _parses(fmt: str, value: str) -> bool:
    """True when `value` is a valid date or time in the format (as validation reads it)."""
    if not re.fullmatch(_shape(fmt), value):
        return False
    try:
        datetime.strptime(value, fmt.replace("%:z", "%z"))
    except ValueError:
        return False
    return True


def _example_has_seconds(column: Column) -> bool:
    fmt = _time_format(column)
    if "%S" not in fmt or not column.example:
        return False
    try:
        return datetime.strptime(column.example, fmt.replace("%:z", "%z")).second != 0
    except ValueError:
        return False


def _decimals(column: Column, default: int) -> int:
    """Decimals of the column's example (`35.60`: 2), else the default."""
    match = re.fullmatch(r"-?\d+\.(\d+)", column.example or "")
    return len(match[1]) if match else default


# --- column generators ------------------------------------------------------------------


@dataclass
class _Chunk:
    """What the generators share while one chunk is being built."""

    n: int
    start: int  # row number of the chunk's first row in the whole delivery
    rng: np.random.Generator
    columns: dict[str, pa.Array] = field(default_factory=dict)
    epochs: dict[str, np.ndarray] = field(default_factory=dict)  # UTC epoch seconds
    local: dict[str, np.ndarray] = field(default_factory=dict)  # wall clock, read as UTC
    day_rank: dict[str, np.ndarray] = field(default_factory=dict)  # row's place in its day
    owner: np.ndarray | None = None  # first row of each row's group
    group_number: np.ndarray | None = None  # 1, 2, ... within a group
    key_weight: np.ndarray | None = None  # probability of each row's key combination


class _Spec:
    """Generates one or more columns of a chunk."""

    makes: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()

    def generate(self, chunk: _Chunk) -> None:
        raise NotImplementedError

    def domain(self) -> Any:
        """The finite values the column can take, for drawing distinct key combinations."""
        return None


@dataclass(frozen=True)
class _Values:
    """A finite set of values with probabilities (and, for times, a slot per value)."""

    values: list[str]
    p: np.ndarray
    slots: list[int] | None = None


@dataclass(frozen=True)
class _GivenValues:
    """Values whose probabilities depend on the value of another column."""

    parent: str
    tables: dict[str, _Values]
    fallback: _Values


class _Choice(_Spec):
    def __init__(self, name: str, values: Sequence[str], weights: Sequence[float]) -> None:
        self.makes = (name,)
        self.values = pa.array(list(values), pa.string())
        self.cdf = _cdf(np.asarray(weights, dtype=float))
        self.options = _Values(list(values), np.asarray(weights, dtype=float))

    def generate(self, chunk: _Chunk) -> None:
        index = _draw(self.cdf, chunk.rng, chunk.n)
        chunk.columns[self.makes[0]] = self.values.take(pa.array(index))

    def domain(self) -> _Values:
        return self.options


class _Conditional(_Spec):
    """A column whose weights depend on the value of another column."""

    def __init__(self, name: str, parent: str, tables: dict[str, dict[str, float]]) -> None:
        self.makes, self.needs = (name,), (parent,)
        self.keys = pa.array(list(tables), pa.string())
        values: list[str] = []
        self.tables: list[tuple[int, np.ndarray]] = []
        overall: dict[str, float] = defaultdict(float)
        for table in tables.values():
            self.tables.append((len(values), _cdf(np.array(list(table.values()), dtype=float))))
            values.extend(table)
            for value, weight in table.items():
                overall[value] += weight
        # A parent value the table does not know (e.g. from another profile) gets the mix
        # over all parents.
        self.fallback = (len(values), _cdf(np.array(list(overall.values()), dtype=float)))
        values.extend(overall)
        self.values = pa.array(values, pa.string())
        self.given = _GivenValues(
            parent,
            {
                k: _Values(list(t), np.array(list(t.values()), dtype=float))
                for k, t in tables.items()
            },
            _Values(list(overall), np.array(list(overall.values()), dtype=float)),
        )

    def generate(self, chunk: _Chunk) -> None:
        parent = pc.index_in(chunk.columns[self.needs[0]], value_set=self.keys)
        codes = parent.fill_null(-1).to_numpy(zero_copy_only=False)
        u = chunk.rng.random(chunk.n)
        index = np.empty(chunk.n, dtype=np.int64)
        for code, (offset, cdf) in [(-1, self.fallback), *enumerate(self.tables)]:
            rows = codes == code
            index[rows] = offset + np.searchsorted(cdf, u[rows], side="right")
        chunk.columns[self.makes[0]] = self.values.take(pa.array(index))

    def domain(self) -> _GivenValues:
        return self.given


class _Constant(_Spec):
    def __init__(self, name: str, value: str) -> None:
        self.makes, self.value = (name,), value

    def generate(self, chunk: _Chunk) -> None:
        chunk.columns[self.makes[0]] = pa.repeat(pa.scalar(self.value, pa.string()), chunk.n)

    def domain(self) -> _Values:
        return _Values([self.value], np.ones(1))


class _BlankWith(_Spec):
    """Blanks the wrapped column, with a given share, on rows where another column is blank."""

    def __init__(self, inner: _Spec, column: str, share: float) -> None:
        self.inner, self.column, self.share = inner, column, share
        self.makes, self.needs = inner.makes, (*inner.needs, column)

    def generate(self, chunk: _Chunk) -> None:
        self.inner.generate(chunk)
        other = pc.equal(chunk.columns[self.column], "").to_numpy(zero_copy_only=False)
        blank = other & (chunk.rng.random(chunk.n) < self.share)
        name = self.makes[0]
        chunk.columns[name] = pc.if_else(pa.array(blank), "", chunk.columns[name])

    def domain(self) -> Any:
        return self.inner.domain()


class _Timestamp(_Spec):
    """Minutes of the period, in time order for the main timestamp column, else at random.

    Written in the column's format: UTC for a format with an offset, else the wall clock.
    With `seconds` (by default when the column's example has them) each time gets random
    seconds; otherwise they are :00.
    """

    def __init__(
        self,
        column: Column,
        slots: _Slots,
        ordered_counts: np.ndarray | None,
        spec: dict[str, Any],
    ) -> None:
        self.makes = (column.source_name,)
        self.slots = slots
        self.kind, self.fmt = _time_kind(column), _time_format(column)
        self.local = slots.local
        zone = column.default_timezone
        if self.kind == "local" and zone and zone != "Europe/London":
            self.local = _wall_clock(slots.utc, zone)
        self.seconds = self.kind in ("utc", "local") and bool(
            spec.get("seconds", _example_has_seconds(column))
        )
        self.strings = (
            None if self.seconds else _format_times(self.kind, self.fmt, slots.utc, self.local)
        )
        self.blank = 0.0 if column.required else float(spec.get("blank", 0.0))
        self.order(ordered_counts)

    def order(self, counts: np.ndarray | None) -> None:
        """Rows in time order, `counts[i]` of them in slot i (None: drawn at random)."""
        self.cumulative = None if counts is None else np.cumsum(counts)
        if counts is not None:
            # The first row of every day, so that a row knows its place in its day.
            self.day_first_row = np.concatenate(
                [[0], self.cumulative[SLOTS_PER_DAY - 1 :: SLOTS_PER_DAY]]
            )

    def generate(self, chunk: _Chunk) -> None:
        name = self.makes[0]
        if self.cumulative is not None:
            rows = np.arange(chunk.start, chunk.start + chunk.n)
            index = np.searchsorted(self.cumulative, rows, side="right")
            chunk.day_rank[name] = rows - self.day_first_row[index // SLOTS_PER_DAY]
        else:
            index = _draw(self.slots.cdf, chunk.rng, chunk.n)
        utc, local = self.slots.utc[index], self.local[index]
        if self.seconds:
            extra = chunk.rng.integers(0, 60, chunk.n)
            utc, local = utc + extra, local + extra
            chunk.columns[name] = _format_times(self.kind, self.fmt, utc, local)
        else:
            chunk.columns[name] = self.strings.take(pa.array(index))
        if self.blank > 0:
            empty = pa.array(chunk.rng.random(chunk.n) < self.blank)
            chunk.columns[name] = pc.if_else(empty, "", chunk.columns[name])
        chunk.epochs[name] = utc
        chunk.local[name] = local

    def domain(self) -> _Values | None:
        if self.strings is None or self.blank > 0:
            return None
        encoded = self.strings.dictionary_encode()
        if len(encoded.dictionary) > KEY_SPACE_LIMIT // 10:
            return None
        codes = encoded.indices.to_numpy()
        p = np.bincount(codes, weights=self.slots.p, minlength=len(encoded.dictionary))
        _, first = np.unique(codes, return_index=True)
        return _Values(encoded.dictionary.to_pylist(), p, first.tolist())


class _After(_Spec):
    """A date or time a random delay after another column's, so it is never earlier.

    The delay is lognormal (median and sigma, in `unit`), optionally by the value of a
    `given` column. The cell is blank with the share `blank`, when the reference is blank,
    and when the time falls after the delivery's due date (not known yet when extracted).
    """

    def __init__(
        self,
        column: Column,
        reference: str,
        spec: dict[str, Any],
        cutoff: int,
        gaps: list[tuple[int, int]],
        default_blank: float,
    ) -> None:
        self.makes = (column.source_name,)
        self.reference = reference
        self.given = spec.get("given")
        self.needs = (reference, self.given) if self.given else (reference,)
        self.kind, self.fmt = _time_kind(column), _time_format(column)
        self.unit = UNITS[spec.get("unit", "days" if self.kind == "date" else "minutes")]
        self.required = column.required
        base = (
            float(spec.get("median", 30 if self.kind == "date" else 15)),
            float(spec.get("sigma", 1.0)),
            0.0 if column.required else float(spec.get("blank", default_blank)),
        )
        tables = spec.get("by") or {}
        self.keys = pa.array([str(k) for k in tables], pa.string())
        rows = [base]
        for table in tables.values():
            blank = 0.0 if column.required else float(table.get("blank", base[2]))
            rows.append(
                (float(table.get("median", base[0])), float(table.get("sigma", base[1])), blank)
            )
        self.params = np.array(rows)
        self.cutoff = cutoff
        self.gaps = gaps
        self.seconds = self.kind in ("utc", "local") and bool(
            spec.get("seconds", _example_has_seconds(column))
        )

    def generate(self, chunk: _Chunk) -> None:
        n, rng = chunk.n, chunk.rng
        code = _codes(chunk, self.given, self.keys) if self.given else np.zeros(n, dtype=np.int64)
        median, sigma, blank = self.params[code].T
        delay = np.exp(np.log(median) + sigma * rng.standard_normal(n)) * self.unit
        if self.kind == "date":
            delay = np.floor(delay / DAY) * DAY
        elif not self.seconds:
            delay = np.ceil(delay / 60) * 60
        step = np.round(delay).astype(np.int64)
        local = chunk.local[self.reference] + step
        utc = chunk.epochs[self.reference] + step
        if self.kind == "date":
            local = local // DAY * DAY
        for start, end in self.gaps:  # a wall-clock time that does not exist moves on
            inside = (local >= start) & (local < end)
            local[inside] += end - start
        empty = rng.random(n) < blank
        late = local > self.cutoff
        if self.required:
            local = np.where(late, self.cutoff, local)
            empty[:] = False
        else:
            empty |= late
        empty |= pc.equal(chunk.columns[self.reference], "").to_numpy(zero_copy_only=False)
        name = self.makes[0]
        text = _format_times(self.kind, self.fmt, utc, local)
        chunk.columns[name] = pc.if_else(pa.array(empty), "", text)
        chunk.epochs[name] = utc
        chunk.local[name] = local


class _Reference(_Spec):
    """References made from a template: `CO/{number:05d}/{date:%y}`, `CAD{day_number}/...`.

    `number` counts the rows of the delivery (from `start`, plus `per_month` for each month
    of the year before the period's); `day_number` counts the rows of each day of the
    `date` column (the delivery's main timestamp), spread over 1 to `per_day`; `date` is the
    `date` column's wall-clock time in any strftime format (`upper` capitalises it).
    """

    def __init__(self, name: str, spec: dict[str, Any], period: str) -> None:
        self.makes = (name,)
        self.date = spec.get("date")
        self.needs = (self.date,) if self.date else ()
        self.upper = bool(spec.get("upper", False))
        self.fields = list(string.Formatter().parse(str(spec["template"])))
        month = _year_month(period)[1]
        self.start = int(spec.get("start", 0)) + int(spec.get("per_month", 0)) * (month - 1)
        self.per_day = int(spec.get("per_day", 0))
        self.stride = 1
        used = {f for _, f, _, _ in self.fields if f is not None}
        self.unique = bool(used & {"number", "day_number"})
        unknown = used - {"number", "day_number", "date"}
        if unknown or (used - {"number"} and not self.date):
            raise ProfileError(
                f"{name}: a reference template may use number, day_number and date (with "
                f"a date column), not {', '.join(sorted(unknown or used))}"
            )

    def spread(self, most_in_a_day: int) -> None:
        """Spread the day numbers over 1..per_day, as a day's references are not all sent."""
        if self.per_day and most_in_a_day:
            self.stride = max(1, self.per_day // most_in_a_day)

    def generate(self, chunk: _Chunk) -> None:
        parts: list[Any] = []
        for literal, name, fmt, _ in self.fields:
            if literal:
                parts.append(literal)
            if name == "number":
                parts.append(_padded(self.start + chunk.start + np.arange(chunk.n) + 1, fmt))
            elif name == "day_number":
                rank = chunk.day_rank[self.date]
                offset = chunk.rng.integers(0, self.stride, chunk.n)
                parts.append(_padded(rank * self.stride + offset + 1, fmt))
            elif name == "date":
                text = pc.strftime(
                    pa.array(chunk.local[self.date]).cast(pa.timestamp("s")), format=fmt
                )
                parts.append(pc.utf8_upper(text) if self.upper else text)
        arrays = [p if isinstance(p, pa.Array) else pa.scalar(p, pa.string()) for p in parts]
        if not any(isinstance(p, pa.Array) for p in arrays):
            arrays.append(pa.repeat(pa.scalar("", pa.string()), chunk.n))
        chunk.columns[self.makes[0]] = pc.binary_join_element_wise(*arrays, "")


def _padded(numbers: np.ndarray, fmt: str) -> pa.Array:
    """Whole numbers as text, zero-padded to the width of a `05d`-style format."""
    text = pc.cast(pa.array(numbers.astype(np.int64)), pa.string())
    match = re.fullmatch(r"0?(\d*)d?", fmt or "")
    width = int(match[1]) if match and match[1] else 0
    return pc.utf8_lpad(text, width, "0") if width else text


class _GroupNumber(_Spec):
    """The number of each row within its group (1, 2, ...), e.g. allegations of a case."""

    def __init__(self, name: str) -> None:
        self.makes = (name,)

    def generate(self, chunk: _Chunk) -> None:
        chunk.columns[self.makes[0]] = pc.cast(pa.array(chunk.group_number), pa.string())


class _KeyCombos(_Spec):
    """Distinct combinations of a unique key's columns, chosen when the delivery is set up."""

    def __init__(
        self,
        values: dict[str, pa.Array],
        times: dict[str, tuple[np.ndarray, np.ndarray]],
        weights: np.ndarray,
    ) -> None:
        self.makes = tuple(values)
        self.values, self.times, self.weights = values, times, weights

    def generate(self, chunk: _Chunk) -> None:
        rows = slice(chunk.start, chunk.start + chunk.n)
        for name, values in self.values.items():
            chunk.columns[name] = values.slice(chunk.start, chunk.n)
        for name, (utc, local) in self.times.items():
            chunk.epochs[name], chunk.local[name] = utc[rows], local[rows]
        chunk.key_weight = self.weights[rows]


class _Uniform(_Spec):
    """A number uniformly within the column's bounds."""

    def __init__(self, column: Column, decimals: int) -> None:
        self.makes = (column.source_name,)
        self.low, self.high = _bounds(column)
        self.integer = column.logical_type == "integer"
        self.decimals = decimals

    def generate(self, chunk: _Chunk) -> None:
        if self.integer:
            values = chunk.rng.integers(int(self.low), int(self.high), endpoint=True, size=chunk.n)
            text = pc.cast(pa.array(values), pa.string())
        else:
            values = chunk.rng.uniform(self.low, self.high, chunk.n)
            text = _format_fixed(np.clip(values, self.low, self.high), self.decimals)
        chunk.columns[self.makes[0]] = text

    def domain(self) -> _Values | None:
        size = int(self.high) - int(self.low) + 1
        if not self.integer or size > 10_000:
            return None
        return _Values([str(v) for v in range(int(self.low), int(self.high) + 1)], np.ones(size))


class _Normal(_Spec):
    """A number around a mean (by the value of a `given` column), within the column's bounds."""

    def __init__(self, column: Column, spec: dict[str, Any]) -> None:
        self.makes = (column.source_name,)
        self.given = spec.get("given")
        self.needs = (self.given,) if self.given else ()
        means = spec["mean"] if isinstance(spec["mean"], dict) else {}
        default = spec.get("default", np.mean(list(means.values())) if means else spec["mean"])
        self.keys = pa.array(list(means), pa.string())
        self.means = np.array([float(default), *means.values()], dtype=float)
        self.sd = float(spec.get("sd", 1.0))
        self.decimals = int(spec.get("decimals", _decimals(column, 2)))
        self.low, self.high = column.minimum, column.maximum
        self.integer = column.logical_type == "integer"

    def generate(self, chunk: _Chunk) -> None:
        code = (
            _codes(chunk, self.given, self.keys)
            if self.given
            else np.zeros(chunk.n, dtype=np.int64)
        )
        values = self.means[code] + self.sd * chunk.rng.standard_normal(chunk.n)
        low = -np.inf if self.low is None else self.low
        high = np.inf if self.high is None else self.high
        values = np.clip(values, low, high)
        decimals = 0 if self.integer else self.decimals
        chunk.columns[self.makes[0]] = _format_fixed(values, decimals)


class _KeyCount(_Spec):
    """A count of people or things in the row's key combination: `total` shared out by the
    combination's probability, Poisson-distributed, at least 1 (the row would not exist)."""

    def __init__(self, column: Column, spec: dict[str, Any]) -> None:
        self.makes = (column.source_name,)
        self.total = float(spec["total"])
        self.low = int(column.minimum) if column.minimum is not None else 0

    def generate(self, chunk: _Chunk) -> None:
        counts = chunk.rng.poisson(self.total * chunk.key_weight)
        counts = np.maximum(counts, max(1, self.low))
        chunk.columns[self.makes[0]] = pc.cast(pa.array(counts), pa.string())


class _FractionOf(_Spec):
    """A number that is a random fraction (between `low` and `high`) of another column's."""

    def __init__(self, column: Column, spec: dict[str, Any]) -> None:
        self.makes = (column.source_name,)
        self.parent = spec["column"]
        self.needs = (self.parent,)
        self.low, self.high = float(spec.get("low", 0.0)), float(spec.get("high", 1.0))
        self.decimals = int(spec.get("decimals", _decimals(column, 2)))

    def generate(self, chunk: _Chunk) -> None:
        parent = chunk.columns[self.parent]
        blank = pc.equal(parent, "")
        numbers = pc.cast(pc.if_else(blank, "0", parent), pa.float64()).to_numpy()
        values = numbers * chunk.rng.uniform(self.low, self.high, chunk.n)
        # Rounded down, so that a fraction of at most 1 never exceeds the parent.
        scale = 10**self.decimals
        values = np.floor(values * scale + 1e-9) / scale
        chunk.columns[self.makes[0]] = pc.if_else(blank, "", _format_fixed(values, self.decimals))


class _WideCounts(_Spec):
    """One count column per month: each row a level (a mean by the value of a column, times
    a lognormal spread) and Poisson counts around it; a row has at least one crime."""

    def __init__(self, names: Sequence[str], spec: dict[str, Any], minimum: float | None) -> None:
        self.makes = tuple(names)
        means = spec.get("count_means") or {}
        self.column = means.get("column")
        self.needs = (self.column,) if self.column else ()
        table = means.get("means") or {}
        self.keys = pa.array(list(table), pa.string())
        self.means = np.array([float(spec.get("mean", 10.0)), *table.values()], dtype=float)
        self.spread = float(spec.get("spread", 1.0))
        self.minimum = int(minimum or 0)

    def generate(self, chunk: _Chunk) -> None:
        n, m, rng = chunk.n, len(self.makes), chunk.rng
        code = _codes(chunk, self.column, self.keys) if self.column else np.zeros(n, dtype=np.int64)
        level = self.means[code] * rng.lognormal(0.0, self.spread, n)
        counts = rng.poisson(level[:, None], size=(n, m)) + self.minimum
        empty = np.flatnonzero((counts == self.minimum).all(axis=1))
        counts[empty, rng.integers(0, m, empty.size)] += 1
        for j, name in enumerate(self.makes):
            chunk.columns[name] = pc.cast(pa.array(counts[:, j]), pa.string())


class _MapPoint(_Spec):
    """Latitude and longitude from a pool of map points, blank together when withheld."""

    def __init__(
        self, lat: Column, lon: Column, spec: dict[str, Any], rng: np.random.Generator
    ) -> None:
        self.makes = (lat.source_name, lon.source_name)
        blank, located = float(spec["blank"]), float(spec["located"])
        self.blank_share = blank / (blank + located)
        decimals = int(spec.get("decimals", 6))
        cells = np.asarray(spec["cells"], dtype=float)
        dlat, dlon = (float(x) for x in spec["cell_size"])
        size = int(spec.get("points", 10_000))
        cell = _draw(_cdf(cells[:, 2]), rng, size)
        lats = np.clip(cells[cell, 0] + rng.random(size) * dlat, *_bounds(lat))
        lons = np.clip(cells[cell, 1] + rng.random(size) * dlon, *_bounds(lon))
        popularity = rng.lognormal(0.0, float(spec.get("point_weight_sigma", 1.0)), size)
        self.cdf = _cdf(popularity)
        blank_text = pa.array([""], pa.string())
        self.lat = pa.concat_arrays([_format_fixed(lats, decimals), blank_text])
        self.lon = pa.concat_arrays([_format_fixed(lons, decimals), blank_text])

    def generate(self, chunk: _Chunk) -> None:
        index = _draw(self.cdf, chunk.rng, chunk.n)
        index[chunk.rng.random(chunk.n) < self.blank_share] = len(self.lat) - 1
        take = pa.array(index)
        chunk.columns[self.makes[0]] = self.lat.take(take)
        chunk.columns[self.makes[1]] = self.lon.take(take)


def _codes(chunk: _Chunk, name: str, keys: pa.Array) -> np.ndarray:
    """1 + the place of each row's value of a column among `keys`; 0 for any other value."""
    found = pc.index_in(chunk.columns[name], value_set=keys)
    return found.fill_null(-1).to_numpy(zero_copy_only=False) + 1


def _bounds(column: Column) -> tuple[float, float]:
    """The column's minimum and maximum, with a span of 1000 standing in for a missing bound."""
    low, high = column.minimum, column.maximum
    if low is None and high is None:
        low, high = 0.0, 1000.0
    elif low is None:
        low = high - 1000.0
    elif high is None:
        high = low + 1000.0
    return float(low), float(high)


def _format_fixed(values: np.ndarray, decimals: int) -> pa.Array:
    """Numbers as text with a fixed count of decimals (`51.508814`, `0.052320`), vectorised."""
    scale = 10**decimals
    scaled = np.rint(np.abs(values) * scale).astype(np.int64)
    whole = pc.cast(pa.array(scaled // scale), pa.string())
    sign = pa.array(np.where((values < 0) & (scaled > 0), "-", ""), pa.string())
    if decimals == 0:
        return pc.binary_join_element_wise(sign, whole, "")
    fraction = pc.utf8_lpad(pc.cast(pa.array(scaled % scale), pa.string()), decimals, "0")
    return pc.binary_join_element_wise(sign, whole, ".", fraction, "")


def _example_pool(column: Column, size: int, rng: np.random.Generator) -> list[str]:
    """Made-up values in the form of the column's example that match its pattern.

    From the first digit on (the whole value when it is hexadecimal, like a Crime ID),
    every digit, and every letter of a hexadecimal value, is drawn again, limited to what
    the pattern allows at that place: `E01000074` gives `E01` and six random digits.
    """
    example, pattern = column.example or "", column.pattern
    hexadecimal = re.fullmatch(r"[0-9a-f]{8,}|[0-9A-F]{8,}", example)
    first = 0 if hexadecimal else next((i for i, c in enumerate(example) if c.isdigit()), None)
    if first is None:
        return [example] if example and _matches(pattern, example) else []
    tail = example[first:]
    hex_tail = re.fullmatch(r"[0-9a-f]*[a-f][0-9a-f]*|[0-9A-F]*[A-F][0-9A-F]*", tail)
    alphabet = "0123456789abcdef" if tail.islower() else "0123456789ABCDEF"
    places: list[list[str]] = []
    for i, char in enumerate(example):
        options = [char]
        if i >= first and (hex_tail or char.isdigit()):
            options = list(alphabet if hex_tail else "0123456789")
            if pattern:
                options = [
                    c for c in options if _matches(pattern, f"{example[:i]}{c}{example[i + 1 :]}")
                ]
        places.append(options or [char])
    drawn = [np.array(options)[rng.integers(0, len(options), size)] for options in places]
    values = dict.fromkeys("".join(chars) for chars in zip(*drawn, strict=True))
    return [v for v in values if _matches(pattern, v)]


def _matches(pattern: str | None, value: str) -> bool:
    return pattern is None or re.fullmatch(pattern, value) is not None


# --- profiles ---------------------------------------------------------------------------

_GENERATORS = (
    "weights",
    "given",
    "constant",
    "timestamp",
    "map_point",
    "after",
    "reference",
    "pool",
    "normal",
    "count",
    "fraction_of",
)


def load_profile(contract: Contract, directory: Path | None = None) -> dict[str, Any]:
    """The contract's synthetic profile, checked against the contract; {} if it has none."""
    path = (directory or PROFILES_DIR) / f"{contract.name}.yaml"
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as fh:
        # libyaml's safe loader where PyYAML has it: the pure-Python one took 0.23 s a
        # profile, and the demo reads one for each of its 200 deliveries.
        profile = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    _check_profile(contract, profile, path)
    return profile


def _valid_values(column: Column) -> set[str] | None:
    if not column.value_rules:
        return None
    allowed = set(column.value_rules[0].valid_values)
    for rule in column.value_rules[1:]:
        allowed &= set(rule.valid_values)
    return allowed


def _check_value(column: Column, value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise ProfileError(f"{where}: {value!r} must be written as text")
    if value == "":
        if column.required:
            raise ProfileError(f"{where}: {column.source_name} is required and cannot be blank")
        return
    allowed = _valid_values(column)
    if allowed is not None and value not in allowed:
        raise ProfileError(f"{where}: {value!r} is not a valid {column.source_name}")
    if column.logical_type == "boolean" and value not in ("True", "False"):
        raise ProfileError(f"{where}: {value!r} is not True or False")
    if not _matches(column.pattern, value):
        raise ProfileError(f"{where}: {value!r} does not match {column.pattern!r}")


def _check_weights(column: Column, weights: Any, where: str) -> None:
    if not isinstance(weights, dict) or not weights:
        raise ProfileError(f"{where}: weights must be a non-empty mapping of value to weight")
    for value, weight in weights.items():
        _check_value(column, value, where)
        if not isinstance(weight, int | float) or weight < 0:
            raise ProfileError(f"{where}: weight of {value!r} must be a non-negative number")
    if sum(weights.values()) <= 0:
        raise ProfileError(f"{where}: weights are all zero")


def _check_profile(contract: Contract, profile: dict[str, Any], path: Path) -> None:
    by_source = {c.source_name: c for c in contract.columns}

    def delivered(name: Any, where: str, what: str) -> Column:
        if name not in by_source:
            raise ProfileError(f"{where}: {what} {name!r} is not delivered")
        return by_source[name]

    if profile.get("contract", contract.name) != contract.name:
        raise ProfileError(f"{path}: profile is for {profile['contract']!r}, not {contract.name}")
    for name, spec in (profile.get("columns") or {}).items():
        where = f"{path.name}: columns[{name}]"
        column = by_source.get(name)
        if column is None:
            raise ProfileError(f"{where}: the contract has no column delivered as {name!r}")
        if "constant" in spec:
            _check_value(column, spec["constant"], where)
        elif "given" in spec:
            delivered(spec["given"], where, "given column")
            for parent, table in spec["weights"].items():
                if not isinstance(parent, str):
                    raise ProfileError(f"{where}: {parent!r} must be written as text")
                _check_weights(column, table, f"{where}.weights[{parent}]")
        elif "weights" in spec:
            _check_weights(column, spec["weights"], where)
        elif "map_point" in spec:
            other = delivered(spec["map_point"].get("longitude"), where, "longitude column")
            if (column.required or other.required) and spec["map_point"]["blank"]:
                raise ProfileError(f"{where}: a required coordinate cannot be blank")
        elif "timestamp" in spec:
            day = (spec["timestamp"] or {}).get("day")
            if day not in (None, "first", "last"):
                raise ProfileError(f"{where}: timestamp.day must be first or last")
        elif "after" in spec:
            after = spec["after"]
            reference = delivered(after.get("column"), where, "after column")
            if _time_kind(column) is None or _time_kind(reference) is None:
                raise ProfileError(f"{where}: after links a date or time to a date or time")
            if after.get("given"):
                delivered(after["given"], where, "given column")
            if after.get("unit", "minutes") not in UNITS:
                raise ProfileError(f"{where}: after.unit must be one of {', '.join(UNITS)}")
        elif "reference" in spec:
            if spec["reference"].get("date"):
                delivered(spec["reference"]["date"], where, "reference date column")
            if "template" not in spec["reference"]:
                raise ProfileError(f"{where}: a reference needs a template")
        elif "normal" in spec:
            if spec["normal"].get("given"):
                delivered(spec["normal"]["given"], where, "given column")
        elif "fraction_of" in spec:
            delivered(spec["fraction_of"].get("column"), where, "fraction_of column")
        elif "count" in spec:
            if column.logical_type != "integer":
                raise ProfileError(f"{where}: count makes whole numbers")
        elif "pool" not in spec:
            raise ProfileError(f"{where}: say how to generate it ({', '.join(_GENERATORS)})")
        blank_with = spec.get("blank_with")
        if blank_with:
            if column.required:
                raise ProfileError(f"{where}: a required column cannot be blanked")
            delivered(blank_with.get("column"), where, "blank_with column")
    groups = profile.get("groups")
    if groups:
        number = delivered(groups.get("number"), f"{path.name}: groups", "number column")
        if number.logical_type not in ("integer", "string"):
            raise ProfileError(f"{path.name}: groups.number must be a whole-number column")
        for name in groups.get("shared") or []:
            delivered(name, f"{path.name}: groups.shared", "column")
    layout = profile.get("layout")
    if layout:
        if contract.layout is None:
            raise ProfileError(f"{path.name}: layout is for a contract with a wide layout")
        means = layout.get("count_means") or {}
        if means:
            delivered(means.get("column"), f"{path.name}: layout.count_means", "column")
    for name in (profile.get("defects") or {}).get("invalid_values") or {}:
        if name not in by_source:
            raise ProfileError(f"{path.name}: defects.invalid_values[{name}] is not delivered")


# --- the generator ----------------------------------------------------------------------


def _seed(*parts: int | str) -> list[int]:
    # zlib.crc32 rather than hash(): it is the same in every process.
    return [p if isinstance(p, int) else zlib.crc32(p.encode("utf-8")) for p in parts]


class _Generator:
    """Everything that is fixed for one delivery; builds it chunk by chunk."""

    def __init__(
        self,
        contract: Contract,
        period: str,
        rows: int,
        seed: int,
        defect_rate: float,
        profile: dict[str, Any],
    ) -> None:
        if rows < 0:
            raise ValueError("rows must not be negative")
        if seed < 0:
            raise ValueError("seed must not be negative")
        if not 0.0 <= defect_rate <= 1.0:
            raise ValueError("defect_rate must be between 0 and 1")
        self.contract, self.period, self.rows = contract, period, rows
        self.defect_rate = defect_rate
        self.months = period_months(contract)
        self.start_utc, self.end_utc = period_bounds(period, self.months)
        self.base_seed = _seed(seed, contract.name, period)
        self.profile = profile
        self.by_source = {c.source_name: c for c in contract.columns}
        self.keys = [
            tuple(contract.column(name).source_name for name in key) for key in contract.unique_keys
        ]
        # notBefore rules between dates or times: the column comes a delay after its reference.
        self.after = {
            contract.column(r.column).source_name: contract.column(r.reference).source_name
            for r in contract.cross_rules
            if _time_kind(contract.column(r.column)) and _time_kind(contract.column(r.reference))
        }
        self.value_names = self._value_names(profile.get("layout") or {})
        self.names = (*contract.source_names, *self.value_names)
        self._groups(profile.get("groups") or {})
        setup = np.random.default_rng([*self.base_seed, _STREAM_SETUP])
        specs = self._specs(setup)
        if self.value_names:
            layout = profile.get("layout") or {}
            specs.append(_WideCounts(self.value_names, layout, contract.layout.value_minimum))
        specs = self._plan_keys(specs)
        self.specs = self._ordered(specs)
        self._spread_references()
        self._duplicates(profile.get("duplicates") or {})
        self._defects(profile.get("defects") or {})

    # building the column generators

    def _specs(self, rng: np.random.Generator) -> list[_Spec]:
        columns = self.profile.get("columns") or {}
        specs: list[_Spec] = []
        made: set[str] = set()
        times = [
            c
            for c in self.contract.columns
            if c.logical_type in ("timestamp", "date") and c.source_name not in self.after
        ]
        main_timestamp = next(
            (c for c in times if c.in_period_rule is not None), next(iter(times), None)
        )
        references = self._default_references(columns)
        for column in self.contract.columns:
            name = column.source_name
            if name in made:
                continue
            spec = columns.get(name) or {}
            if "after" in spec or (not spec and name in self.after):
                built: _Spec = self._after(column, spec.get("after") or {})
            elif "timestamp" in spec or (not spec and _time_kind(column) is not None):
                # An optional date or time the profile says nothing about is sometimes blank.
                timing = spec.get("timestamp") or {"blank": self._default_blank(column)}
                slots = _slots(self.period, timing, self.months)
                ordered = rng.multinomial(self.rows, slots.p) if column is main_timestamp else None
                built = _Timestamp(column, slots, ordered, timing)
            elif "map_point" in spec:
                lon = self.by_source[spec["map_point"]["longitude"]]
                built = _MapPoint(column, lon, spec["map_point"], rng)
            elif "reference" in spec:
                built = _Reference(name, spec["reference"], self.period)
            elif name in references:
                built = _Reference(name, references[name], self.period)
            elif self.group_number == name:
                built = _GroupNumber(name)
            elif spec:
                built = self._from_profile(column, spec)
            else:
                built = self._from_contract(column)
            if spec.get("blank_with"):
                blank_with = spec["blank_with"]
                built = _BlankWith(built, blank_with["column"], float(blank_with["share"]))
            specs.append(built)
            made.update(built.makes)
        return specs

    def _from_profile(self, column: Column, spec: dict[str, Any]) -> _Spec:
        name = column.source_name
        if "constant" in spec:
            return _Constant(name, spec["constant"])
        if "given" in spec:
            return _Conditional(name, spec["given"], spec["weights"])
        if "pool" in spec:
            pool = spec["pool"] or {}
            return self._pool(column, int(pool.get("size", POOL_SIZE)), pool.get("sigma", 1.0))
        if "normal" in spec:
            return _Normal(column, spec["normal"])
        if "count" in spec:
            return _KeyCount(column, spec["count"])
        if "fraction_of" in spec:
            return _FractionOf(column, spec["fraction_of"])
        weights = spec["weights"]
        return _Choice(name, list(weights), list(weights.values()))

    def _from_contract(self, column: Column) -> _Spec:
        name = column.source_name
        allowed = _valid_values(column)
        if allowed is not None:
            values = [v for v in column.value_rules[0].valid_values if v in allowed]
            return _Choice(name, values, [1.0] * len(values))
        match column.logical_type:
            case "boolean":
                return _Choice(name, ["True", "False"], [1.0, 1.0])
            case "number" | "integer":
                return _Uniform(column, decimals=_decimals(column, 6))
        if column.example:
            return self._pool(column, POOL_SIZE, 1.0)
        if column.pattern:
            raise ProfileError(
                f"column {name!r} must match {column.pattern!r}: give it an example in the "
                "contract or list its values in the contract's synthetic profile"
            )
        values = [f"{column.name}-{i:03d}" for i in range(1000)]
        return _Choice(name, values, [1.0] * len(values))

    def _pool(self, column: Column, size: int, sigma: float) -> _Choice:
        """Values in the form of the example, some far more common than others."""
        rng = np.random.default_rng([*self.base_seed, _STREAM_POOLS, *_seed(column.name)])
        values = _example_pool(column, size, rng)
        if not values:
            raise ProfileError(
                f"column {column.source_name!r}: no values like its example "
                f"{column.example!r} match {column.pattern!r}; list them in the profile"
            )
        return _Choice(column.source_name, values, rng.lognormal(0.0, float(sigma), len(values)))

    def _after(self, column: Column, spec: dict[str, Any]) -> _After:
        name = column.source_name
        reference = spec.get("column") or self.after.get(name)
        if reference is None:
            raise ProfileError(f"{name}: after needs the column it comes after")
        # Nothing is known after the delivery's due date: later times are blank (still open).
        due = _add_months(*_year_month(self.period), self.months)
        day = min(self.contract.schedule.due_day_of_following_month, 28)
        cutoff = calendar.timegm((*due, max(day, 1), 0, 0, 0))
        gaps: list[tuple[int, int]] = []
        if _time_kind(column) == "local":
            end = datetime.fromtimestamp(cutoff, UTC) + timedelta(days=2)
            gaps = _gaps(column.default_timezone or "Europe/London", self.start_utc, end)
        return _After(column, reference, spec, cutoff, gaps, self._default_blank(column))

    def _default_blank(self, column: Column) -> float:
        """The blank share of an optional column: 10%, or half its completeness limit."""
        if column.required:
            return 0.0
        rules = self.contract.completeness_rules
        limits = [r.max_percent for r in rules if r.column == column.name]
        return min([0.1, *(limit / 200 for limit in limits)])

    def _default_references(self, columns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """References for unique keys the profile says nothing about, in the example's form."""
        made: dict[str, dict[str, Any]] = {}
        for key in self.keys:
            if any(name in columns for name in key):
                continue
            free = [
                self.by_source[name]
                for name in key
                if _valid_values(self.by_source[name]) is None
                and self.by_source[name].logical_type in ("string", "integer")
            ]
            if free and not any(c.source_name in made for c in free):
                made[free[0].source_name] = _reference_from_example(free[0])
        return made

    def _groups(self, spec: dict[str, Any]) -> None:
        """Rows in groups that share some columns and are numbered 1, 2, ... (a case's
        allegations)."""
        self.group_number = spec.get("number")
        self.group_shared = set(spec.get("shared") or ())
        sizes = spec.get("sizes") or {1: 1}
        self.group_size_values = np.array([int(k) for k in sizes], dtype=np.int64)
        if (self.group_size_values < 1).any():
            raise ProfileError("groups.sizes must all be 1 or more")
        self.group_size_cdf = _cdf(np.array(list(sizes.values()), dtype=float))

    @staticmethod
    def _ordered(specs: list[_Spec]) -> list[_Spec]:
        """The generators in an order where every column exists before it is needed."""
        ordered: list[_Spec] = []
        made: set[str] = set()
        pending = list(specs)
        while pending:
            ready = [s for s in pending if set(s.needs) <= made]
            if not ready:
                names = ", ".join(n for s in pending for n in s.makes)
                raise ProfileError(f"columns depend on each other in a circle: {names}")
            for spec in ready:
                ordered.append(spec)
                made.update(spec.makes)
                pending.remove(spec)
        return ordered

    def _value_names(self, spec: dict[str, Any]) -> tuple[str, ...]:
        """Wide layout: one column per month, the latest `lag` months before the period's
        last month, `months` of them (24 and 0 unless the profile says otherwise)."""
        layout = self.contract.layout
        if layout is None:
            return ()
        months, lag = int(spec.get("months", 24)), int(spec.get("lag", 0))
        year, month = _add_months(*_year_month(self.period), period_months(self.contract) - 1)
        names = tuple(
            datetime(*_add_months(year, month, -lag - i), 1).strftime(layout.period_format)
            for i in reversed(range(months))
        )
        for name in names:
            if not re.fullmatch(layout.value_column_pattern, name):
                raise ProfileError(f"month column {name!r} does not match the layout's pattern")
        return names

    # unique keys

    def _plan_keys(self, specs: list[_Spec]) -> list[_Spec]:
        """Make every unique key unique: by construction (a reference), or by drawing
        distinct combinations of a key's finite values (fewer rows if there are fewer)."""
        maker = {name: spec for spec in specs for name in spec.makes}
        planned: tuple[str, ...] | None = None
        for key in self.keys:
            if self._unique_by_construction(key, maker):
                continue
            if planned is not None and set(planned) <= set(key):
                continue
            if planned is not None:
                raise ProfileError(
                    f"two unique keys need distinct combinations ({', '.join(planned)} and "
                    f"{', '.join(key)}); give one of them a reference in the profile"
                )
            planned = key
        uses_weights = [s for s in specs if isinstance(s, _KeyCount)]
        if planned is None:
            if uses_weights:
                raise ProfileError("count needs a unique key drawn from finite values")
            return specs
        combos = self._choose_combos(planned, maker)
        made = set(combos.makes)
        kept = []
        for spec in specs:
            if set(spec.makes) & made:
                if not set(spec.makes) <= made:
                    raise ProfileError(f"{', '.join(spec.makes)} must be generated together")
                continue
            kept.append(spec)
        for spec in uses_weights:
            spec.needs = combos.makes
        return [combos, *kept]

    def _unique_by_construction(self, key: tuple[str, ...], maker: dict[str, _Spec]) -> bool:
        for name in key:
            spec = _unwrap(maker.get(name))
            if isinstance(spec, _Reference) and spec.unique:
                if name not in self.group_shared or self.group_number in key:
                    return True
        return False

    def _choose_combos(self, key: tuple[str, ...], maker: dict[str, _Spec]) -> _KeyCombos:
        domains: dict[str, Any] = {}
        pending = list(key)
        while pending:  # the key's columns, and the columns they depend on
            name = pending.pop(0)
            domain = maker[name].domain() if name in maker else None
            if domain is None:
                raise ProfileError(
                    f"unique key {' + '.join(key)}: {name} has no finite set of values; give "
                    "one key column a reference in the profile"
                )
            domains[name] = domain
            if isinstance(domain, _GivenValues) and domain.parent not in domains:
                if domain.parent not in pending:
                    pending.append(domain.parent)
        columns: dict[str, np.ndarray] = {}
        slots: dict[str, np.ndarray] = {}
        weights = np.ones(1)
        order = list(domains)
        while order:
            name = next(
                n
                for n in order
                if not isinstance(domains[n], _GivenValues) or domains[n].parent in columns
            )
            order.remove(name)
            columns, slots, weights = _extend(columns, slots, weights, name, domains[name])
        chosen = self._distinct(key, columns, weights)
        # In the order a force sorts its export: by the key's columns, each in the order of
        # the contract's valid values (a time in time order).
        ranks = []
        for name in reversed(key):
            values = columns[name][chosen]
            rules = self.by_source[name].value_rules
            order = {v: i for i, v in enumerate(rules[0].valid_values)} if rules else {}
            order = order or {v: i for i, v in enumerate(dict.fromkeys(columns[name].tolist()))}
            ranks.append(np.array([order.get(v, len(order)) for v in values.tolist()]))
        chosen = chosen[np.lexsort(ranks)] if ranks else chosen
        weights = weights / weights.sum()
        values = {name: pa.array(columns[name][chosen].tolist(), pa.string()) for name in columns}
        times = {}
        for name, slot in slots.items():
            spec = _unwrap(maker[name])
            index = slot[chosen]
            times[name] = (spec.slots.utc[index], spec.local[index])
        requested, self.rows = self.rows, len(chosen)
        if self.rows != requested:
            # Fewer rows than asked for: spread the rows that remain over the whole period.
            rng = np.random.default_rng([*self.base_seed, _STREAM_ORDER])
            for spec in maker.values():
                if isinstance(spec, _Timestamp) and spec.cumulative is not None:
                    spec.order(rng.multinomial(self.rows, spec.slots.p))
        return _KeyCombos(values, times, weights[chosen])

    def _distinct(
        self, key: tuple[str, ...], columns: dict[str, np.ndarray], weights: np.ndarray
    ) -> np.ndarray:
        """Rows of the enumeration to deliver, in enumeration order: `self.rows` of them,
        drawn by weight without replacement, each key value once."""
        candidates = np.flatnonzero(weights > 0)
        if set(columns) != set(key):
            # Columns outside the key came along (the values a key column depends on): keep
            # the likeliest combination of each key value.
            joined = ["\x1f".join(parts) for parts in zip(*(columns[n] for n in key), strict=True)]
            best: dict[str, int] = {}
            for i in candidates[np.argsort(-weights[candidates], kind="stable")].tolist():
                best.setdefault(joined[i], i)
            candidates = np.sort(np.array(list(best.values()), dtype=np.int64))
        if self.rows >= len(candidates):
            return candidates
        rng = np.random.default_rng([*self.base_seed, _STREAM_KEYS])
        scores = np.log(weights[candidates]) + rng.gumbel(size=len(candidates))
        return np.sort(candidates[np.argpartition(-scores, self.rows - 1)[: self.rows]])

    def _spread_references(self) -> None:
        timestamps = {s.makes[0]: s for s in self.specs if isinstance(s, _Timestamp)}
        for spec in self.specs:
            reference = _unwrap(spec)
            if not isinstance(reference, _Reference):
                continue
            uses_days = any(f == "day_number" for _, f, _, _ in reference.fields)
            source = timestamps.get(reference.date)
            if uses_days and (source is None or source.cumulative is None):
                raise ProfileError(
                    f"{reference.makes[0]}: day_number needs the delivery's main timestamp"
                )
            if uses_days:
                reference.spread(int(np.diff(source.day_first_row).max(initial=0)))

    def _duplicates(self, spec: dict[str, Any]) -> None:
        self.group_share = float(spec.get("group_share", 0.0))
        if self.group_share > 0 and self.keys:
            raise ProfileError("duplicate rows would break the contract's unique keys")
        sizes = spec.get("group_sizes") or {2: 1}
        self.group_sizes = np.array([int(k) for k in sizes], dtype=np.int64)
        if (self.group_sizes < 2).any():
            raise ProfileError("duplicates.group_sizes must all be 2 or more")
        self.group_cdf = _cdf(np.array(list(sizes.values()), dtype=float))

    def _defects(self, spec: dict[str, Any]) -> None:
        cols = self.contract.columns
        invalid = spec.get("invalid_values") or {}
        trailing = spec.get("trailing_space")
        if trailing is None:
            trailing = [c.source_name for c in cols if _valid_values(c)]
        times = [c.source_name for c in cols if _time_kind(c) is not None]
        checks_period = self.contract.schedule.period != "once"
        self.candidates: dict[str, list[str]] = {
            "blank_required": [c.source_name for c in cols if c.required],
            "invalid_value": [
                c.source_name
                for c in cols
                if _valid_values(c) or c.source_name in invalid or c.pattern
            ],
            "malformed_timestamp": times,
            "out_of_period": [
                c.source_name
                for c in cols
                if _time_kind(c) in ("utc", "local", "date")
                and c.in_period_rule is not None
                and checks_period
            ],
            "out_of_range": [
                c.source_name
                for c in cols
                if c.logical_type in ("number", "integer")
                and (c.minimum is not None or c.maximum is not None)
            ]
            + list(self.value_names),
            "trailing_space": [n for n in trailing if n in self.by_source],
            "before_reference": list(self.after),
            "duplicate_key": [_WHOLE_ROW] if self.keys else [],
        }
        weights = spec.get("kinds") or dict.fromkeys(DEFECT_KINDS, 1)
        unknown = set(weights) - set(DEFECT_KINDS)
        if unknown:
            raise ProfileError(f"unknown defect kinds: {', '.join(sorted(unknown))}")
        self.kinds = [k for k in DEFECT_KINDS if weights.get(k, 0) > 0 and self.candidates[k]]
        self.kind_cdf = _cdf(np.array([weights[k] for k in self.kinds], dtype=float))
        self.invalid_values = {k: [str(v) for v in vs] for k, vs in invalid.items()}

    # generating

    @property
    def chunk_count(self) -> int:
        return -(-self.rows // CHUNK_ROWS)

    def batches(self) -> Iterator[pa.RecordBatch]:
        for index in range(self.chunk_count):
            yield self.chunk(index)

    def chunk(self, index: int) -> pa.RecordBatch:
        """Rows of chunk `index`; chunks are independent, so they can be built in parallel."""
        start = index * CHUNK_ROWS
        chunk = _Chunk(
            n=min(CHUNK_ROWS, self.rows - start),
            start=start,
            rng=np.random.default_rng([*self.base_seed, _STREAM_VALUES, index]),
        )
        if self.group_number:
            self._group(chunk, np.random.default_rng([*self.base_seed, _STREAM_GROUPS, index]))
        for spec in self.specs:
            spec.generate(chunk)
            if chunk.owner is not None:
                self._share(chunk, spec.makes)
        self._copy_duplicates(
            chunk, np.random.default_rng([*self.base_seed, _STREAM_DUPLICATES, index])
        )
        if self.defect_rate > 0 and self.kinds:
            self._add_defects(
                chunk, np.random.default_rng([*self.base_seed, _STREAM_DEFECTS, index])
            )
        names = self.names
        return pa.RecordBatch.from_arrays(
            [chunk.columns[n] for n in names], schema=pa.schema([(n, pa.string()) for n in names])
        )

    def _group(self, chunk: _Chunk, rng: np.random.Generator) -> None:
        """Cut the chunk into groups of rows (a group never runs into the next chunk)."""
        sizes = self.group_size_values[_draw(self.group_size_cdf, rng, max(chunk.n, 1))]
        ends = np.cumsum(sizes)
        count = int(np.searchsorted(ends, chunk.n)) + 1
        starts = np.concatenate([[0], ends[: count - 1]])
        chunk.owner = np.repeat(starts, sizes[:count])[: chunk.n]
        chunk.group_number = np.arange(chunk.n) - chunk.owner + 1

    def _share(self, chunk: _Chunk, names: Sequence[str]) -> None:
        """Give every row of a group the group's first row's value of the shared columns."""
        for name in names:
            if name not in self.group_shared:
                continue
            chunk.columns[name] = chunk.columns[name].take(pa.array(chunk.owner))
            for times in (chunk.epochs, chunk.local, chunk.day_rank):
                if name in times:
                    times[name] = times[name][chunk.owner]

    def _copy_duplicates(self, chunk: _Chunk, rng: np.random.Generator) -> None:
        """Turn the rows after some rows into exact copies of them (people searched together)."""
        if self.group_share <= 0 or chunk.n < 2:
            return
        starts = np.flatnonzero(rng.random(chunk.n) < self.group_share)
        if not starts.size:
            return
        sizes = self.group_sizes[_draw(self.group_cdf, rng, starts.size)]
        owner = np.arange(chunk.n)
        for j in range(1, int(sizes.max())):
            first = starts[sizes > j]
            at = first + j
            keep = at < chunk.n
            owner[at[keep]] = first[keep]
        # A group that starts inside another copies that group's row: follow owners to the end.
        while not np.array_equal(owner[owner], owner):
            owner = owner[owner]
        take = pa.array(owner)
        for name, values in chunk.columns.items():
            chunk.columns[name] = values.take(take)
        for times in (chunk.epochs, chunk.local):
            for name, epochs in times.items():
                times[name] = epochs[owner]

    def _add_defects(self, chunk: _Chunk, rng: np.random.Generator) -> None:
        rows = np.flatnonzero(rng.random(chunk.n) < self.defect_rate)
        if not rows.size:
            return
        kinds = _draw(self.kind_cdf, rng, rows.size)
        edits: dict[str, dict[int, str]] = defaultdict(dict)
        for row, kind_index in zip(rows.tolist(), kinds.tolist(), strict=True):
            kind = self.kinds[kind_index]
            options = self.candidates[kind]
            name = options[int(rng.integers(len(options)))]
            if kind == "duplicate_key":
                # The row sent twice: an exact copy of its neighbour, so both are held back.
                if chunk.n < 2:
                    continue
                other = row - 1 if row > 0 else row + 1
                for column in self.names:
                    edits[column][row] = chunk.columns[column][other].as_py()
                continue
            edits[name][row] = self._defect(kind, name, chunk, row, rng)
        for name, changes in edits.items():
            mask = np.zeros(chunk.n, dtype=bool)
            at = sorted(changes)
            mask[at] = True
            replacements = pa.array([changes[i] for i in at], pa.string())
            chunk.columns[name] = pc.replace_with_mask(
                chunk.columns[name], pa.array(mask), replacements
            )

    def _defect(
        self, kind: str, name: str, chunk: _Chunk, row: int, rng: np.random.Generator
    ) -> str:
        """One realistic wrong value for a cell."""

        def pick(options: Sequence[str]) -> str:
            return options[int(rng.integers(len(options)))]

        current = chunk.columns[name][row].as_py()
        if name not in self.by_source:  # a month column of a wide layout
            # A correction keyed as a negative count.
            return f"-{current}" if current not in ("", "0") else "-1"
        column = self.by_source[name]
        if kind == "blank_required":
            return ""
        if kind == "invalid_value":
            if name in self.invalid_values:
                return pick(self.invalid_values[name])
            allowed = _valid_values(column)
            if allowed is None:
                return _off_pattern(column, current, rng)
            # Otherwise a typo in the value the row has (or in any allowed value, if blank).
            wrong = _misspelt(current or pick(sorted(allowed or {name})), rng)
            return wrong if wrong not in allowed else wrong + "x"
        if kind == "trailing_space":
            allowed = _valid_values(column)
            return (current or pick(sorted(allowed or {name}))) + " "
        if kind == "out_of_range":
            return _out_of_range(column, current)
        time_kind = _time_kind(column)
        fmt = _time_format(column)
        if kind == "before_reference":
            # Keyed against the wrong day or hour: earlier than the time it follows.
            reference = self.by_source[self.after[name]]
            step = int(rng.integers(1, 30)) * (DAY if time_kind == "date" else 600)
            local = int(chunk.local[reference.source_name][row]) - step
            utc = int(chunk.epochs[reference.source_name][row]) - step
            return _format_times(time_kind, fmt, np.array([utc]), np.array([local]))[0].as_py()
        if time_kind == "utc":
            return self._utc_defect(kind, fmt, chunk.epochs.get(name), row, pick, rng)
        if kind == "out_of_period":
            # Up to two weeks before the period starts (London time): the previous month.
            when = self.start_utc - timedelta(minutes=int(rng.integers(1, 14 * 24 * 60)))
            zone = ZoneInfo(column.default_timezone or "Europe/London")
            return when.astimezone(zone).strftime(fmt)
        # malformed_timestamp: how a spreadsheet or another system writes the same time.
        local = chunk.local.get(name)
        when = (
            datetime.fromtimestamp(int(local[row]), UTC).replace(tzinfo=None)
            if local is not None
            else self.start_utc.astimezone(LONDON).replace(tzinfo=None)
        )
        variants = [v for v in _malformed(time_kind, fmt, when) if not _parses(fmt, v)]
        return pick(variants)

    def _utc_defect(
        self,
        kind: str,
        fmt: str,
        epochs: np.ndarray | None,
        row: int,
        pick: Any,
        rng: np.random.Generator,
    ) -> str:
        """A wrong time in a column written in UTC with an offset."""
        if kind == "out_of_period":
            # Up to two weeks before the month starts (London time), i.e. in the previous month.
            when = self.start_utc - timedelta(minutes=int(rng.integers(1, 14 * 24 * 60)))
            return _strftime(when, fmt)
        epoch = epochs[row] if epochs is not None else None
        when = datetime.fromtimestamp(int(epoch), UTC) if epoch is not None else self.start_utc
        local = when.astimezone(LONDON)
        days = calendar.monthrange(local.year, local.month)[1]
        # The day after the month's last, e.g. 2022-06-31: the date part is the London month's
        # even when the UTC date is the previous day.
        impossible = (
            fmt.replace("%Y", f"{local.year:04d}")
            .replace("%m", f"{local.month:02d}")
            .replace("%d", f"{days + 1:02d}")
        )
        variants = [
            local.strftime("%d/%m/%Y %H:%M"),
            when.strftime("%Y-%m-%d %H:%M:%S"),
            _strftime(when, impossible),
        ]
        return pick([v for v in variants if not _parses(fmt, v)])


def _unwrap(spec: _Spec | None) -> _Spec | None:
    while isinstance(spec, _BlankWith):
        spec = spec.inner
    return spec


def _extend(
    columns: dict[str, np.ndarray],
    slots: dict[str, np.ndarray],
    weights: np.ndarray,
    name: str,
    domain: _Values | _GivenValues,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """The enumeration of key combinations with one more column (blank values left out)."""
    n = len(weights)
    if isinstance(domain, _GivenValues):
        parent = columns[domain.parent].tolist()
        tables = {v: _options(domain.tables.get(v, domain.fallback)) for v in dict.fromkeys(parent)}
        per_row = [tables[v] for v in parent]
    else:
        per_row = [_options(domain)] * n
    counts = np.array([len(o.values) for o in per_row], dtype=np.int64)
    if counts.sum() > KEY_SPACE_LIMIT:
        raise ProfileError(f"a unique key with {name} has too many combinations to draw from")
    take = np.repeat(np.arange(n), counts)
    out = {k: v[take] for k, v in columns.items()}
    out[name] = np.array([v for o in per_row for v in o.values], dtype=object)
    out_slots = {k: v[take] for k, v in slots.items()}
    if per_row and per_row[0].slots is not None:
        out_slots[name] = np.array([s for o in per_row for s in o.slots], dtype=np.int64)
    p = np.concatenate([o.p for o in per_row]) if per_row else np.zeros(0)
    return out, out_slots, weights[take] * p


def _options(domain: _Values) -> _Values:
    """The domain without blanks or impossible values, its probabilities summing to 1."""
    keep = [i for i, v in enumerate(domain.values) if v != "" and domain.p[i] > 0]
    p = domain.p[keep]
    slots = [domain.slots[i] for i in keep] if domain.slots is not None else None
    return _Values([domain.values[i] for i in keep], p / p.sum() if p.size else p, slots)


def _reference_from_example(column: Column) -> dict[str, Any]:
    """A reference spec numbering rows in the example's form (`CO/01234/24` ->
    `CO/{number:05d}/24`), or plain numbers from the minimum for a whole-number column."""
    if column.logical_type == "integer":
        return {"template": "{number}", "start": int(column.minimum or 1) - 1}
    example = column.example or f"{column.name.upper()}-000001"
    runs = list(re.finditer(r"\d+", example))
    if not runs:
        example, runs = example + "-000001", list(re.finditer(r"\d+", example + "-000001"))
    run = max(runs, key=lambda m: len(m[0]))
    escape = lambda text: text.replace("{", "{{").replace("}", "}}")  # noqa: E731
    template = (
        escape(example[: run.start()])
        + f"{{number:0{len(run[0])}d}}"
        + escape(example[run.end() :])
    )
    sample = template.format(number=1)
    if not _matches(column.pattern, sample):
        raise ProfileError(
            f"column {column.source_name!r}: references like {sample!r} do not match "
            f"{column.pattern!r}; give it a reference template in the profile"
        )
    return {"template": template}


def _malformed(kind: str, fmt: str, when: datetime) -> list[str]:
    """The same date or time as other systems and spreadsheets write it."""
    days = calendar.monthrange(when.year, when.month)[1]
    impossible = fmt.replace("%d", f"{days + 1:02d}")  # e.g. 31/06/2025
    if kind == "time":
        formats = ["%H.%M", "%H%M", "%I:%M %p", "%H:%M:%S"]
    elif kind == "date" and "%d" not in fmt:  # a month, such as 2025-03
        formats = ["%b-%y", "%m/%Y", "%Y-%m-%d", "%Y%m", "%B %Y"]
    elif kind == "date":
        formats = ["%d/%m/%Y", "%Y-%m-%d", "%Y%m%d", "%d-%b-%Y", "%d/%m/%y", impossible]
    else:
        formats = ["%d/%m/%Y %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", impossible]
    return [when.strftime(f) for f in formats]


def _out_of_range(column: Column, current: str) -> str:
    """A number outside the agreed range, as a slip makes it."""
    low, high = _bounds(column)
    value = float(current) if current else (low + high) / 2
    if column.maximum is not None and column.maximum <= 1 and 1 < value * 100:
        wrong = value * 100  # a percentage where a fraction is agreed: 74 for 0.74
    elif column.maximum is not None and value + 100 > column.maximum:
        wrong = value + 100  # a dropped-in digit, as in 151.508814 for 51.508814
    elif column.minimum is not None and column.logical_type == "integer":
        wrong = column.minimum - 1  # numbered from 0, or a negative count
    elif column.minimum is not None:
        wrong = -value if value > column.minimum else column.minimum - 1  # a sign slip
    else:
        wrong = value + 100
    if column.logical_type == "integer":
        return str(int(round(wrong)))
    decimals = len(current.split(".")[1]) if "." in current else 6
    return f"{wrong:.{decimals}f}"


def _off_pattern(column: Column, current: str, rng: np.random.Generator) -> str:
    """A value that is not in the column's agreed form: a character lost or the case changed."""
    value = current or column.example or column.source_name
    options = [_misspelt(value, rng), value.upper(), value.lower(), value[:-1], f"{value}?"]
    wrong = [v for v in options if v != value and not _matches(column.pattern, v)]
    return wrong[int(rng.integers(len(wrong)))] if wrong else f"#{value}"


def _misspelt(value: str, rng: np.random.Generator) -> str:
    """The value with one interior letter dropped ("Arest"), or a suffix if that is too short."""
    if len(value) > 3:
        at = int(rng.integers(1, len(value) - 1))
        return value[:at] + value[at + 1 :]
    return value + "x"


# --- public API -------------------------------------------------------------------------


def generate_batches(
    contract: Contract,
    period: str,
    rows: int,
    seed: int = 0,
    defect_rate: float = 0.002,
) -> Iterator[pa.RecordBatch]:
    """Yield the delivery's rows as RecordBatches of text columns named by delivered header
    (then, for a wide layout, one column per month).

    Blanks are empty strings, never nulls. Batches hold at most `CHUNK_ROWS` rows.
    """
    generator = _Generator(contract, period, rows, seed, defect_rate, load_profile(contract))
    return generator.batches()


def write_delivery(
    contract: Contract,
    period: str,
    path: Path,
    rows: int,
    seed: int = 0,
    defect_rate: float = 0.002,
) -> Path:
    """Write the delivery CSV for `period` at `path`, in the force's published layout.

    The file has `rows` rows, or every combination once when the contract's unique key
    allows fewer (the census's 48). About `defect_rate` of the rows carry one realistic
    defect; 0 gives a file that passes every row rule of the contract. The file is written
    under a temporary name beside `path` and renamed into place.
    """
    generator = _Generator(contract, period, rows, seed, defect_rate, load_profile(contract))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    workers = max(1, min(WORKERS, os.cpu_count() or 1))
    try:
        with open(temporary, "wb") as fh, ThreadPoolExecutor(workers) as pool:
            fh.write(_csv_header(generator.names))
            # Numpy and Arrow release the GIL, so chunks build in parallel threads; at most
            # `workers` + 1 chunks are in memory at once, and they are written in order.
            pending: deque[Future[memoryview | bytes]] = deque()
            for index in range(generator.chunk_count):
                pending.append(pool.submit(lambda i: _csv_rows(generator.chunk(i)), index))
                if len(pending) > workers:
                    fh.write(pending.popleft().result())
            while pending:
                fh.write(pending.popleft().result())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _csv_field(value: str) -> str:
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if re.search(_NEEDS_QUOTES, value) else value


def _csv_header(names: Sequence[str]) -> bytes:
    return (",".join(_csv_field(n) for n in names) + "\n").encode("utf-8")


def _quoted(values: pa.Array) -> pa.Array:
    """Quote only the fields that need it, as Python's csv.QUOTE_MINIMAL does."""
    needs = pc.match_substring_regex(values, _NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return values
    escaped = pc.replace_substring(values, '"', '""')
    return pc.if_else(needs, pc.binary_join_element_wise('"', escaped, '"', ""), values)


def _csv_rows(batch: pa.RecordBatch) -> memoryview | bytes:
    """The batch as CSV lines, built by Arrow without a Python loop over rows."""
    if batch.num_rows == 0:
        return b""
    text = _joined(list(batch.columns))
    # Fast path: checking the joined bytes is far cheaper than a regex over every column.
    # Exactly one comma between fields and one newline per row, and no quote or CR, means
    # no field needed quoting.
    data = np.frombuffer(text, dtype=np.uint8)
    plain = (
        np.count_nonzero(data == ord(",")) == batch.num_rows * (batch.num_columns - 1)
        and np.count_nonzero(data == ord("\n")) == batch.num_rows
        and not (data == ord('"')).any()
        and not (data == ord("\r")).any()
    )
    return text if plain else _joined([_quoted(c) for c in batch.columns])


def _joined(columns: list[pa.Array]) -> memoryview:
    """The columns joined into CSV lines, as one contiguous block of UTF-8 bytes."""
    columns[-1] = pc.binary_join_element_wise(columns[-1], "\n", "")
    lines = columns[0] if len(columns) == 1 else pc.binary_join_element_wise(*columns, ",")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    first, last = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return memoryview(lines.buffers()[2])[first:last]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write one synthetic delivery and say how long it took."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("contract")
    parser.add_argument("period", help="YYYY-MM (a quarter by its first month)")
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=16_332)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--defect-rate", type=float, default=0.002)
    args = parser.parse_args(argv)
    contract = load_contracts()[args.contract]
    began = time.perf_counter()
    write_delivery(contract, args.period, args.path, args.rows, args.seed, args.defect_rate)
    print(f"{args.rows:,} rows -> {args.path} in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
