"""Synthetic deliveries' column generators: one kind of value per class (choices, conditional
choices, timestamps, references, numbers, counts, map points), each drawing a chunk of a
column at once with numpy."""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.demo.synthetic_time import (
    DAY,
    KEY_SPACE_LIMIT,
    SLOTS_PER_DAY,
    UNITS,
    ProfileError,
    Slots,
    cumulative,
    decimals_of,
    draw,
    example_has_seconds,
    format_times,
    time_format,
    time_kind_of,
    wall_clock,
    year_month,
)
from schemas.contract import Column

# --- column generators ------------------------------------------------------------------


@dataclass
class Chunk:
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


class Spec:
    """Generates one or more columns of a chunk."""

    makes: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()

    def generate(self, chunk: Chunk) -> None:
        raise NotImplementedError

    def domain(self) -> Any:
        """The finite values the column can take, for drawing distinct key combinations."""
        return None


@dataclass(frozen=True)
class Values:
    """A finite set of values with probabilities (and, for times, a slot per value)."""

    values: list[str]
    p: np.ndarray
    slots: list[int] | None = None


@dataclass(frozen=True)
class GivenValues:
    """Values whose probabilities depend on the value of another column."""

    parent: str
    tables: dict[str, Values]
    fallback: Values


class Choice(Spec):
    def __init__(self, name: str, values: Sequence[str], weights: Sequence[float]) -> None:
        self.makes = (name,)
        self.values = pa.array(list(values), pa.string())
        self.cdf = cumulative(np.asarray(weights, dtype=float))
        self.options = Values(list(values), np.asarray(weights, dtype=float))

    def generate(self, chunk: Chunk) -> None:
        index = draw(self.cdf, chunk.rng, chunk.n)
        chunk.columns[self.makes[0]] = self.values.take(pa.array(index))

    def domain(self) -> Values:
        return self.options


class Conditional(Spec):
    """A column whose weights depend on the value of another column."""

    def __init__(self, name: str, parent: str, tables: dict[str, dict[str, float]]) -> None:
        self.makes, self.needs = (name,), (parent,)
        self.keys = pa.array(list(tables), pa.string())
        values: list[str] = []
        self.tables: list[tuple[int, np.ndarray]] = []
        overall: dict[str, float] = defaultdict(float)
        for table in tables.values():
            self.tables.append(
                (len(values), cumulative(np.array(list(table.values()), dtype=float)))
            )
            values.extend(table)
            for value, weight in table.items():
                overall[value] += weight
        # A parent value the table does not know (e.g. from another profile) gets the mix
        # over all parents.
        self.fallback = (len(values), cumulative(np.array(list(overall.values()), dtype=float)))
        values.extend(overall)
        self.values = pa.array(values, pa.string())
        self.given = GivenValues(
            parent,
            {
                k: Values(list(t), np.array(list(t.values()), dtype=float))
                for k, t in tables.items()
            },
            Values(list(overall), np.array(list(overall.values()), dtype=float)),
        )

    def generate(self, chunk: Chunk) -> None:
        parent = pc.index_in(chunk.columns[self.needs[0]], value_set=self.keys)
        codes = parent.fill_null(-1).to_numpy(zero_copy_only=False)
        u = chunk.rng.random(chunk.n)
        index = np.empty(chunk.n, dtype=np.int64)
        for code, (offset, cdf) in [(-1, self.fallback), *enumerate(self.tables)]:
            rows = codes == code
            index[rows] = offset + np.searchsorted(cdf, u[rows], side="right")
        chunk.columns[self.makes[0]] = self.values.take(pa.array(index))

    def domain(self) -> GivenValues:
        return self.given


class Constant(Spec):
    def __init__(self, name: str, value: str) -> None:
        self.makes, self.value = (name,), value

    def generate(self, chunk: Chunk) -> None:
        chunk.columns[self.makes[0]] = pa.repeat(pa.scalar(self.value, pa.string()), chunk.n)

    def domain(self) -> Values:
        return Values([self.value], np.ones(1))


class BlankWith(Spec):
    """Blanks the wrapped column, with a given share, on rows where another column is blank."""

    def __init__(self, inner: Spec, column: str, share: float) -> None:
        self.inner, self.column, self.share = inner, column, share
        self.makes, self.needs = inner.makes, (*inner.needs, column)

    def generate(self, chunk: Chunk) -> None:
        self.inner.generate(chunk)
        other = pc.equal(chunk.columns[self.column], "").to_numpy(zero_copy_only=False)
        blank = other & (chunk.rng.random(chunk.n) < self.share)
        name = self.makes[0]
        chunk.columns[name] = pc.if_else(pa.array(blank), "", chunk.columns[name])

    def domain(self) -> Any:
        return self.inner.domain()


# strftime fields that say more than the day (the rest name a day, a month or a year).
_TIME_FIELDS = re.compile(r"%[HIklMSfpzZcXTRrsP]|%:z")


class Timestamp(Spec):
    """Minutes of the period, in time order for the main timestamp column, else at random.

    Written in the column's format: UTC for a format with an offset, else the wall clock.
    With `seconds` (by default when the column's example has them) each time gets random
    seconds; otherwise they are :00.
    """

    def __init__(
        self,
        column: Column,
        slots: Slots,
        ordered_counts: np.ndarray | None,
        spec: dict[str, Any],
    ) -> None:
        self.makes = (column.source_name,)
        self.slots = slots
        self.kind, self.fmt = time_kind_of(column), time_format(column)
        self.local = slots.local
        zone = column.default_timezone
        if self.kind == "local" and zone and zone != "Europe/London":
            self.local = wall_clock(slots.utc, zone)
        self.seconds = self.kind in ("utc", "local") and bool(
            spec.get("seconds", example_has_seconds(column))
        )
        self._strings: pa.Array | None = None
        self.blank = 0.0 if column.required else float(spec.get("blank", 0.0))
        self.order(ordered_counts)

    @property
    def strings(self) -> pa.Array | None:
        """Every minute of the period as text (None when each time gets its own seconds).

        Formatted only when a key's domain needs them all: a delivery's rows are formatted
        as drawn instead, since a month's 44,640 minutes took 0.12 s a file to format and
        a delivery uses a few thousand of them."""
        if self._strings is None and not self.seconds:
            if self.kind == "date" and not _TIME_FIELDS.search(self.fmt):
                # A date's text is its day's: each day formatted once, then repeated (the
                # public attitude survey and workforce have a date in their keys).
                days, which = np.unique(self.local // 86_400, return_inverse=True)
                text = format_times(self.kind, self.fmt, days * 86_400, days * 86_400)
                self._strings = text.take(pa.array(which.ravel()))
            else:
                self._strings = format_times(self.kind, self.fmt, self.slots.utc, self.local)
        return self._strings

    def order(self, counts: np.ndarray | None) -> None:
        """Rows in time order, `counts[i]` of them in slot i (None: drawn at random)."""
        self.cumulative = None if counts is None else np.cumsum(counts)
        if counts is not None:
            # The first row of every day, so that a row knows its place in its day.
            self.day_first_row = np.concatenate(
                [[0], self.cumulative[SLOTS_PER_DAY - 1 :: SLOTS_PER_DAY]]
            )

    def generate(self, chunk: Chunk) -> None:
        name = self.makes[0]
        if self.cumulative is not None:
            rows = np.arange(chunk.start, chunk.start + chunk.n)
            index = np.searchsorted(self.cumulative, rows, side="right")
            chunk.day_rank[name] = rows - self.day_first_row[index // SLOTS_PER_DAY]
        else:
            index = draw(self.slots.cdf, chunk.rng, chunk.n)
        utc, local = self.slots.utc[index], self.local[index]
        if self.seconds:
            extra = chunk.rng.integers(0, 60, chunk.n)
            utc, local = utc + extra, local + extra
            chunk.columns[name] = format_times(self.kind, self.fmt, utc, local)
        elif self._strings is not None:
            chunk.columns[name] = self._strings.take(pa.array(index))
        else:  # the same text as every minute's, for just the rows drawn
            chunk.columns[name] = format_times(self.kind, self.fmt, utc, local)
        if self.blank > 0:
            empty = pa.array(chunk.rng.random(chunk.n) < self.blank)
            chunk.columns[name] = pc.if_else(empty, "", chunk.columns[name])
        chunk.epochs[name] = utc
        chunk.local[name] = local

    def domain(self) -> Values | None:
        if self.strings is None or self.blank > 0:
            return None
        encoded = self.strings.dictionary_encode()
        if len(encoded.dictionary) > KEY_SPACE_LIMIT // 10:
            return None
        codes = encoded.indices.to_numpy()
        p = np.bincount(codes, weights=self.slots.p, minlength=len(encoded.dictionary))
        _, first = np.unique(codes, return_index=True)
        return Values(encoded.dictionary.to_pylist(), p, first.tolist())


class After(Spec):
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
        self.kind, self.fmt = time_kind_of(column), time_format(column)
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
            spec.get("seconds", example_has_seconds(column))
        )

    def generate(self, chunk: Chunk) -> None:
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
        text = format_times(self.kind, self.fmt, utc, local)
        chunk.columns[name] = pc.if_else(pa.array(empty), "", text)
        chunk.epochs[name] = utc
        chunk.local[name] = local


class Reference(Spec):
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
        month = year_month(period)[1]
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

    def generate(self, chunk: Chunk) -> None:
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


class GroupNumber(Spec):
    """The number of each row within its group (1, 2, ...), e.g. allegations of a case."""

    def __init__(self, name: str) -> None:
        self.makes = (name,)

    def generate(self, chunk: Chunk) -> None:
        chunk.columns[self.makes[0]] = pc.cast(pa.array(chunk.group_number), pa.string())


class KeyCombos(Spec):
    """Distinct combinations of a unique key's columns, chosen when the delivery is set up."""

    def __init__(
        self,
        values: dict[str, pa.Array],
        times: dict[str, tuple[np.ndarray, np.ndarray]],
        weights: np.ndarray,
    ) -> None:
        self.makes = tuple(values)
        self.values, self.times, self.weights = values, times, weights

    def generate(self, chunk: Chunk) -> None:
        rows = slice(chunk.start, chunk.start + chunk.n)
        for name, values in self.values.items():
            chunk.columns[name] = values.slice(chunk.start, chunk.n)
        for name, (utc, local) in self.times.items():
            chunk.epochs[name], chunk.local[name] = utc[rows], local[rows]
        chunk.key_weight = self.weights[rows]


class Uniform(Spec):
    """A number uniformly within the column's bounds."""

    def __init__(self, column: Column, decimals: int) -> None:
        self.makes = (column.source_name,)
        self.low, self.high = bounds(column)
        self.integer = column.logical_type == "integer"
        self.decimals = decimals

    def generate(self, chunk: Chunk) -> None:
        if self.integer:
            values = chunk.rng.integers(int(self.low), int(self.high), endpoint=True, size=chunk.n)
            text = pc.cast(pa.array(values), pa.string())
        else:
            values = chunk.rng.uniform(self.low, self.high, chunk.n)
            text = _format_fixed(np.clip(values, self.low, self.high), self.decimals)
        chunk.columns[self.makes[0]] = text

    def domain(self) -> Values | None:
        size = int(self.high) - int(self.low) + 1
        if not self.integer or size > 10_000:
            return None
        return Values([str(v) for v in range(int(self.low), int(self.high) + 1)], np.ones(size))


class Normal(Spec):
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
        self.decimals = int(spec.get("decimals", decimals_of(column, 2)))
        self.low, self.high = column.minimum, column.maximum
        self.integer = column.logical_type == "integer"

    def generate(self, chunk: Chunk) -> None:
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


class KeyCount(Spec):
    """A count of people or things in the row's key combination: `total` shared out by the
    combination's probability, Poisson-distributed, at least 1 (the row would not exist)."""

    def __init__(self, column: Column, spec: dict[str, Any]) -> None:
        self.makes = (column.source_name,)
        self.total = float(spec["total"])
        self.low = int(column.minimum) if column.minimum is not None else 0

    def generate(self, chunk: Chunk) -> None:
        counts = chunk.rng.poisson(self.total * chunk.key_weight)
        counts = np.maximum(counts, max(1, self.low))
        chunk.columns[self.makes[0]] = pc.cast(pa.array(counts), pa.string())


class FractionOf(Spec):
    """A number that is a random fraction (between `low` and `high`) of another column's."""

    def __init__(self, column: Column, spec: dict[str, Any]) -> None:
        self.makes = (column.source_name,)
        self.parent = spec["column"]
        self.needs = (self.parent,)
        self.low, self.high = float(spec.get("low", 0.0)), float(spec.get("high", 1.0))
        self.decimals = int(spec.get("decimals", decimals_of(column, 2)))

    def generate(self, chunk: Chunk) -> None:
        parent = chunk.columns[self.parent]
        blank = pc.equal(parent, "")
        numbers = pc.cast(pc.if_else(blank, "0", parent), pa.float64()).to_numpy()
        values = numbers * chunk.rng.uniform(self.low, self.high, chunk.n)
        # Rounded down, so that a fraction of at most 1 never exceeds the parent.
        scale = 10**self.decimals
        values = np.floor(values * scale + 1e-9) / scale
        chunk.columns[self.makes[0]] = pc.if_else(blank, "", _format_fixed(values, self.decimals))


class WideCounts(Spec):
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

    def generate(self, chunk: Chunk) -> None:
        n, m, rng = chunk.n, len(self.makes), chunk.rng
        code = _codes(chunk, self.column, self.keys) if self.column else np.zeros(n, dtype=np.int64)
        level = self.means[code] * rng.lognormal(0.0, self.spread, n)
        counts = rng.poisson(level[:, None], size=(n, m)) + self.minimum
        empty = np.flatnonzero((counts == self.minimum).all(axis=1))
        counts[empty, rng.integers(0, m, empty.size)] += 1
        for j, name in enumerate(self.makes):
            chunk.columns[name] = pc.cast(pa.array(counts[:, j]), pa.string())


class MapPoint(Spec):
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
        cell = draw(cumulative(cells[:, 2]), rng, size)
        lats = np.clip(cells[cell, 0] + rng.random(size) * dlat, *bounds(lat))
        lons = np.clip(cells[cell, 1] + rng.random(size) * dlon, *bounds(lon))
        popularity = rng.lognormal(0.0, float(spec.get("point_weight_sigma", 1.0)), size)
        self.cdf = cumulative(popularity)
        blank_text = pa.array([""], pa.string())
        self.lat = pa.concat_arrays([_format_fixed(lats, decimals), blank_text])
        self.lon = pa.concat_arrays([_format_fixed(lons, decimals), blank_text])

    def generate(self, chunk: Chunk) -> None:
        index = draw(self.cdf, chunk.rng, chunk.n)
        index[chunk.rng.random(chunk.n) < self.blank_share] = len(self.lat) - 1
        take = pa.array(index)
        chunk.columns[self.makes[0]] = self.lat.take(take)
        chunk.columns[self.makes[1]] = self.lon.take(take)


def _codes(chunk: Chunk, name: str, keys: pa.Array) -> np.ndarray:
    """1 + the place of each row's value of a column among `keys`; 0 for any other value."""
    found = pc.index_in(chunk.columns[name], value_set=keys)
    return found.fill_null(-1).to_numpy(zero_copy_only=False) + 1


def bounds(column: Column) -> tuple[float, float]:
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


def example_pool(column: Column, size: int, rng: np.random.Generator) -> list[str]:
    """Made-up values in the form of the column's example that match its pattern.

    From the first digit on (the whole value when it is hexadecimal, like a Crime ID),
    every digit, and every letter of a hexadecimal value, is drawn again, limited to what
    the pattern allows at that place: `E01000074` gives `E01` and six random digits.
    """
    example, pattern = column.example or "", column.pattern
    hexadecimal = re.fullmatch(r"[0-9a-f]{8,}|[0-9A-F]{8,}", example)
    first = 0 if hexadecimal else next((i for i, c in enumerate(example) if c.isdigit()), None)
    if first is None:
        return [example] if example and matches(pattern, example) else []
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
                    c for c in options if matches(pattern, f"{example[:i]}{c}{example[i + 1 :]}")
                ]
        places.append(options or [char])
    drawn = [np.array(options)[rng.integers(0, len(options), size)] for options in places]
    values = dict.fromkeys("".join(chars) for chars in zip(*drawn, strict=True))
    return [v for v in values if matches(pattern, v)]


def matches(pattern: str | None, value: str) -> bool:
    return pattern is None or re.fullmatch(pattern, value) is not None
