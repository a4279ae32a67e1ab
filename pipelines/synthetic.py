"""Realistic synthetic deliveries, driven by a data contract and an optional measured profile.

`write_delivery` writes one month's CSV exactly as the force publishes it: the contract's
delivered headers in contract order, UTF-8 without BOM, LF line endings, minimal quoting,
UTC timestamps with a `+00:00` offset. Values come from the contract alone (valid values
uniformly, numbers within their bounds, timestamps inside the month) unless
`synthetic_profiles/<contract>.yaml` describes the column: value weights and blank shares
measured from a real delivery, dependencies between columns, duplicate rows and the
defects a delivery realistically carries.

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
DEFECT_KINDS = (
    "blank_required",
    "invalid_value",
    "malformed_timestamp",
    "out_of_period",
    "out_of_range",
    "trailing_space",
)
_NEEDS_QUOTES = r'[",\r\n]'

# Purposes of the random streams; part of every seed, so never renumber them.
_STREAM_SETUP, _STREAM_VALUES, _STREAM_DUPLICATES, _STREAM_DEFECTS = range(4)


class ProfileError(ValueError):
    """A synthetic profile that does not fit its contract."""


# --- periods and time slots -------------------------------------------------------------


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """UTC start (inclusive) and end (exclusive) of a "YYYY-MM" month in London time."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", period)
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"period must look like YYYY-MM, not {period!r}")
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=LONDON)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=LONDON)
    return start.astimezone(UTC), end.astimezone(UTC)


@dataclass(frozen=True)
class _Slots:
    """Every minute of the month in London time, as UTC epoch seconds with a weight each."""

    utc: np.ndarray  # int64, ascending
    local: np.ndarray  # int64 epoch seconds of the London wall-clock time, read as if UTC
    cdf: np.ndarray
    p: np.ndarray


def _slots(period: str, spec: dict[str, Any]) -> _Slots:
    year, month = (int(x) for x in period.split("-"))
    days = calendar.monthrange(year, month)[1]
    weekday_w = _weights(spec.get("weekday_weights"), 7, "weekday_weights")
    hour_w = _weights(spec.get("hour_weights"), 24, "hour_weights")
    minute_w = _weights(spec.get("minute_weights"), 60, "minute_weights")
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
    p = w / w.sum()
    return _Slots(utc=utc, local=local.ravel(), cdf=_cdf(p), p=p)


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


def _strftime(when: datetime, fmt: str) -> str:
    """Format one aware UTC datetime like the vectorised writer does (offset as +00:00)."""
    return when.astimezone(UTC).strftime(_utc_format(fmt))


def _utc_format(fmt: str) -> str:
    # Deliveries are in UTC, so the offset is a constant; `%:z` is not portable to strftime.
    return fmt.replace("%:z", "+00:00").replace("%z", "+0000")


# --- column generators ------------------------------------------------------------------


@dataclass
class _Chunk:
    """What the generators share while one chunk is being built."""

    n: int
    start: int  # row number of the chunk's first row in the whole delivery
    rng: np.random.Generator
    columns: dict[str, pa.Array] = field(default_factory=dict)
    epochs: dict[str, np.ndarray] = field(default_factory=dict)


class _Spec:
    """Generates one or more columns of a chunk."""

    makes: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()

    def generate(self, chunk: _Chunk) -> None:
        raise NotImplementedError


class _Choice(_Spec):
    def __init__(self, name: str, values: Sequence[str], weights: Sequence[float]) -> None:
        self.makes = (name,)
        self.values = pa.array(list(values), pa.string())
        self.cdf = _cdf(np.asarray(weights, dtype=float))

    def generate(self, chunk: _Chunk) -> None:
        index = _draw(self.cdf, chunk.rng, chunk.n)
        chunk.columns[self.makes[0]] = self.values.take(pa.array(index))


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

    def generate(self, chunk: _Chunk) -> None:
        parent = pc.index_in(chunk.columns[self.needs[0]], value_set=self.keys)
        codes = parent.fill_null(-1).to_numpy(zero_copy_only=False)
        u = chunk.rng.random(chunk.n)
        index = np.empty(chunk.n, dtype=np.int64)
        for code, (offset, cdf) in [(-1, self.fallback), *enumerate(self.tables)]:
            rows = codes == code
            index[rows] = offset + np.searchsorted(cdf, u[rows], side="right")
        chunk.columns[self.makes[0]] = self.values.take(pa.array(index))


class _Constant(_Spec):
    def __init__(self, name: str, value: str) -> None:
        self.makes, self.value = (name,), value

    def generate(self, chunk: _Chunk) -> None:
        chunk.columns[self.makes[0]] = pa.repeat(pa.scalar(self.value, pa.string()), chunk.n)


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


class _Timestamp(_Spec):
    """Minutes of the month, in time order for the main timestamp column, else at random."""

    def __init__(self, column: Column, slots: _Slots, ordered_counts: np.ndarray | None) -> None:
        self.makes = (column.source_name,)
        self.slots = slots
        if column.logical_type == "date":
            when, fmt = slots.local, "%Y-%m-%d"
        else:
            when, fmt = slots.utc, _utc_format(column.timestamp_format or DEFAULT_TIMESTAMP_FORMAT)
        self.strings = pc.strftime(pa.array(when).cast(pa.timestamp("s")), format=fmt)
        self.cumulative = None if ordered_counts is None else np.cumsum(ordered_counts)

    def generate(self, chunk: _Chunk) -> None:
        if self.cumulative is not None:
            rows = np.arange(chunk.start, chunk.start + chunk.n)
            index = np.searchsorted(self.cumulative, rows, side="right")
        else:
            index = _draw(self.slots.cdf, chunk.rng, chunk.n)
        name = self.makes[0]
        chunk.columns[name] = self.strings.take(pa.array(index))
        chunk.epochs[name] = self.slots.utc[index]


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


# --- profiles ---------------------------------------------------------------------------


def load_profile(contract: Contract, directory: Path | None = None) -> dict[str, Any]:
    """The contract's synthetic profile, checked against the contract; {} if it has none."""
    path = (directory or PROFILES_DIR) / f"{contract.name}.yaml"
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as fh:
        profile = yaml.safe_load(fh) or {}
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
            if spec["given"] not in by_source:
                raise ProfileError(f"{where}: given column {spec['given']!r} is not delivered")
            for parent, table in spec["weights"].items():
                if not isinstance(parent, str):
                    raise ProfileError(f"{where}: {parent!r} must be written as text")
                _check_weights(column, table, f"{where}.weights[{parent}]")
        elif "weights" in spec:
            _check_weights(column, spec["weights"], where)
        elif "map_point" in spec:
            other = spec["map_point"].get("longitude")
            if other not in by_source:
                raise ProfileError(f"{where}: longitude column {other!r} is not delivered")
            if (column.required or by_source[other].required) and spec["map_point"]["blank"]:
                raise ProfileError(f"{where}: a required coordinate cannot be blank")
        elif "timestamp" not in spec:
            raise ProfileError(
                f"{where}: say how to generate it (weights, given, constant, timestamp or "
                "map_point)"
            )
        blank_with = spec.get("blank_with")
        if blank_with:
            if column.required:
                raise ProfileError(f"{where}: a required column cannot be blanked")
            if blank_with.get("column") not in by_source:
                raise ProfileError(f"{where}: blank_with column is not delivered")
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
        self.start_utc, self.end_utc = period_bounds(period)
        self.base_seed = _seed(seed, contract.name, period)
        self.profile = profile
        self.by_source = {c.source_name: c for c in contract.columns}
        setup = np.random.default_rng([*self.base_seed, _STREAM_SETUP])
        self.specs = self._ordered(self._specs(setup))
        self._duplicates(profile.get("duplicates") or {})
        self._defects(profile.get("defects") or {})

    # building the column generators

    def _specs(self, rng: np.random.Generator) -> list[_Spec]:
        columns = self.profile.get("columns") or {}
        specs: list[_Spec] = []
        made: set[str] = set()
        main_timestamp = next(
            (c for c in self.contract.columns if c.in_period_rule is not None),
            next(
                (c for c in self.contract.columns if c.logical_type in ("timestamp", "date")), None
            ),
        )
        for column in self.contract.columns:
            if column.source_name in made:
                continue
            spec = columns.get(column.source_name) or {}
            if "timestamp" in spec or (not spec and column.logical_type in ("timestamp", "date")):
                slots = _slots(self.period, spec.get("timestamp") or {})
                ordered = rng.multinomial(self.rows, slots.p) if column is main_timestamp else None
                built: _Spec = _Timestamp(column, slots, ordered)
            elif "map_point" in spec:
                lon = self.by_source[spec["map_point"]["longitude"]]
                built = _MapPoint(column, lon, spec["map_point"], rng)
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

    @staticmethod
    def _from_profile(column: Column, spec: dict[str, Any]) -> _Spec:
        name = column.source_name
        if "constant" in spec:
            return _Constant(name, spec["constant"])
        if "given" in spec:
            return _Conditional(name, spec["given"], spec["weights"])
        weights = spec["weights"]
        return _Choice(name, list(weights), list(weights.values()))

    @staticmethod
    def _from_contract(column: Column) -> _Spec:
        name = column.source_name
        allowed = _valid_values(column)
        if allowed is not None:
            values = [v for v in column.value_rules[0].valid_values if v in allowed]
            return _Choice(name, values, [1.0] * len(values))
        match column.logical_type:
            case "boolean":
                return _Choice(name, ["True", "False"], [1.0, 1.0])
            case "number" | "integer":
                return _Uniform(column, decimals=6)
        if column.pattern:
            raise ProfileError(
                f"column {name!r} must match {column.pattern!r}: list its values in the "
                "contract's synthetic profile"
            )
        values = [f"{column.name}-{i:03d}" for i in range(1000)]
        return _Choice(name, values, [1.0] * len(values))

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

    def _duplicates(self, spec: dict[str, Any]) -> None:
        self.group_share = float(spec.get("group_share", 0.0))
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
        times = [c.source_name for c in cols if c.logical_type in ("timestamp", "date")]
        self.candidates: dict[str, list[str]] = {
            "blank_required": [c.source_name for c in cols if c.required],
            "invalid_value": [
                c.source_name for c in cols if _valid_values(c) or c.source_name in invalid
            ],
            "malformed_timestamp": times,
            "out_of_period": [
                c.source_name
                for c in cols
                if c.logical_type in ("timestamp", "date") and c.in_period_rule is not None
            ],
            "out_of_range": [
                c.source_name
                for c in cols
                if c.logical_type in ("number", "integer")
                and (c.minimum is not None or c.maximum is not None)
            ],
            "trailing_space": [n for n in trailing if n in self.by_source],
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
        for spec in self.specs:
            spec.generate(chunk)
        self._copy_duplicates(
            chunk, np.random.default_rng([*self.base_seed, _STREAM_DUPLICATES, index])
        )
        if self.defect_rate > 0 and self.kinds:
            self._add_defects(
                chunk, np.random.default_rng([*self.base_seed, _STREAM_DEFECTS, index])
            )
        names = self.contract.source_names
        return pa.RecordBatch.from_arrays(
            [chunk.columns[n] for n in names], schema=pa.schema([(n, pa.string()) for n in names])
        )

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
        for name, epochs in chunk.epochs.items():
            chunk.epochs[name] = epochs[owner]

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
            current = chunk.columns[name][row].as_py()
            epoch = chunk.epochs[name][row] if name in chunk.epochs else None
            edits[name][row] = self._defect(kind, self.by_source[name], current, epoch, rng)
        for name, changes in edits.items():
            mask = np.zeros(chunk.n, dtype=bool)
            at = sorted(changes)
            mask[at] = True
            replacements = pa.array([changes[i] for i in at], pa.string())
            chunk.columns[name] = pc.replace_with_mask(
                chunk.columns[name], pa.array(mask), replacements
            )

    def _defect(
        self,
        kind: str,
        column: Column,
        current: str,
        epoch: int | None,
        rng: np.random.Generator,
    ) -> str:
        """One realistic wrong value for a cell."""

        def pick(options: Sequence[str]) -> str:
            return options[int(rng.integers(len(options)))]

        name = column.source_name
        if kind == "blank_required":
            return ""
        if kind == "invalid_value":
            if name in self.invalid_values:
                return pick(self.invalid_values[name])
            # Otherwise a typo in the value the row has (or in any allowed value, if blank).
            allowed = _valid_values(column) or set()
            wrong = _misspelt(current or pick(sorted(allowed or {name})), rng)
            return wrong if wrong not in allowed else wrong + "x"
        if kind == "trailing_space":
            allowed = _valid_values(column)
            return (current or pick(sorted(allowed or {name}))) + " "
        if kind == "out_of_range":
            low, high = _bounds(column)
            value = float(current) if current else (low + high) / 2
            # A dropped-in digit, as in 151.508814 for 51.508814.
            wrong = value + 100 if value + 100 > high else low - 100
            if column.logical_type == "integer":
                return str(int(round(wrong)))
            decimals = len(current.split(".")[1]) if "." in current else 6
            return f"{wrong:.{decimals}f}"
        is_date = column.logical_type == "date"
        fmt = "%Y-%m-%d" if is_date else column.timestamp_format or DEFAULT_TIMESTAMP_FORMAT
        if kind == "out_of_period":
            # Up to two weeks before the month starts (London time), i.e. in the previous month.
            when = self.start_utc - timedelta(minutes=int(rng.integers(1, 14 * 24 * 60)))
            return when.astimezone(LONDON).strftime(fmt) if is_date else _strftime(when, fmt)
        # malformed_timestamp
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
        variants = (
            [local.strftime("%d/%m/%Y"), local.strftime("%Y%m%d"), local.strftime(impossible)]
            if is_date
            else [
                local.strftime("%d/%m/%Y %H:%M"),
                when.strftime("%Y-%m-%d %H:%M:%S"),
                _strftime(when, impossible),
            ]
        )
        return pick(variants)


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
    """Yield the delivery's rows as RecordBatches of text columns named by delivered header.

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
    """Write one month's delivery CSV at `path`, in the force's published layout.

    About `defect_rate` of the rows carry one realistic defect; 0 gives a fully valid file.
    The file is written under a temporary name beside `path` and renamed into place.
    """
    generator = _Generator(contract, period, rows, seed, defect_rate, load_profile(contract))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    workers = max(1, min(WORKERS, os.cpu_count() or 1))
    try:
        with open(temporary, "wb") as fh, ThreadPoolExecutor(workers) as pool:
            fh.write(_csv_header(contract.source_names))
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
    parser.add_argument("period", help="YYYY-MM")
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
