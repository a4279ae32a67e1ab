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

The parts, each in its own module: constants, periods and the agreed time formats
(`synthetic_time`), the column generators (`synthetic_columns`) and measured profiles
(`synthetic_profile`); here, the generator that puts them together, the defects and the
CSV writer.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.demo.synthetic_columns import (
    After,
    BlankWith,
    Choice,
    Chunk,
    Conditional,
    Constant,
    FractionOf,
    GivenValues,
    GroupNumber,
    KeyCombos,
    KeyCount,
    MapPoint,
    Normal,
    Reference,
    Spec,
    Timestamp,
    Uniform,
    Values,
    WideCounts,
    bounds,
    example_pool,
    matches,
)
from pipelines.demo.synthetic_profile import load_profile, valid_values
from pipelines.demo.synthetic_time import (
    CHUNK_ROWS,
    DAY,
    DEFECT_KINDS,
    KEY_SPACE_LIMIT,
    LONDON,
    NEEDS_QUOTES,
    POOL_SIZE,
    STREAM_DEFECTS,
    STREAM_DUPLICATES,
    STREAM_GROUPS,
    STREAM_KEYS,
    STREAM_ORDER,
    STREAM_POOLS,
    STREAM_SETUP,
    STREAM_VALUES,
    WHOLE_ROW,
    WORKERS,
    ProfileError,
    add_months,
    clock_gaps,
    cumulative,
    decimals_of,
    draw,
    format_times,
    parses,
    period_bounds,
    period_months,
    slots_for,
    strftime,
    time_format,
    time_kind_of,
    year_month,
)
from schemas.contract import Column, Contract, load_contracts

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
            if time_kind_of(contract.column(r.column))
            and time_kind_of(contract.column(r.reference))
        }
        self.value_names = self._value_names(profile.get("layout") or {})
        self.names = (*contract.source_names, *self.value_names)
        self._groups(profile.get("groups") or {})
        setup = np.random.default_rng([*self.base_seed, STREAM_SETUP])
        specs = self._specs(setup)
        if self.value_names:
            layout = profile.get("layout") or {}
            specs.append(WideCounts(self.value_names, layout, contract.layout.value_minimum))
        specs = self._plan_keys(specs)
        self.specs = self._ordered(specs)
        self._spread_references()
        self._duplicates(profile.get("duplicates") or {})
        self._defects(profile.get("defects") or {})

    # building the column generators

    def _specs(self, rng: np.random.Generator) -> list[Spec]:
        columns = self.profile.get("columns") or {}
        specs: list[Spec] = []
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
                built: Spec = self._after(column, spec.get("after") or {})
            elif "timestamp" in spec or (not spec and time_kind_of(column) is not None):
                # An optional date or time the profile says nothing about is sometimes blank.
                timing = spec.get("timestamp") or {"blank": self._default_blank(column)}
                slots = slots_for(self.period, timing, self.months)
                ordered = rng.multinomial(self.rows, slots.p) if column is main_timestamp else None
                built = Timestamp(column, slots, ordered, timing)
            elif "map_point" in spec:
                lon = self.by_source[spec["map_point"]["longitude"]]
                built = MapPoint(column, lon, spec["map_point"], rng)
            elif "reference" in spec:
                built = Reference(name, spec["reference"], self.period)
            elif name in references:
                built = Reference(name, references[name], self.period)
            elif self.group_number == name:
                built = GroupNumber(name)
            elif spec:
                built = self._from_profile(column, spec)
            else:
                built = self._from_contract(column)
            if spec.get("blank_with"):
                blank_with = spec["blank_with"]
                built = BlankWith(built, blank_with["column"], float(blank_with["share"]))
            specs.append(built)
            made.update(built.makes)
        return specs

    def _from_profile(self, column: Column, spec: dict[str, Any]) -> Spec:
        name = column.source_name
        if "constant" in spec:
            return Constant(name, spec["constant"])
        if "given" in spec:
            return Conditional(name, spec["given"], spec["weights"])
        if "pool" in spec:
            pool = spec["pool"] or {}
            return self._pool(column, int(pool.get("size", POOL_SIZE)), pool.get("sigma", 1.0))
        if "normal" in spec:
            return Normal(column, spec["normal"])
        if "count" in spec:
            return KeyCount(column, spec["count"])
        if "fraction_of" in spec:
            return FractionOf(column, spec["fraction_of"])
        weights = spec["weights"]
        return Choice(name, list(weights), list(weights.values()))

    def _from_contract(self, column: Column) -> Spec:
        name = column.source_name
        allowed = valid_values(column)
        if allowed is not None:
            values = [v for v in column.value_rules[0].valid_values if v in allowed]
            return Choice(name, values, [1.0] * len(values))
        match column.logical_type:
            case "boolean":
                return Choice(name, ["True", "False"], [1.0, 1.0])
            case "number" | "integer":
                return Uniform(column, decimals=decimals_of(column, 6))
        if column.example:
            return self._pool(column, POOL_SIZE, 1.0)
        if column.pattern:
            raise ProfileError(
                f"column {name!r} must match {column.pattern!r}: give it an example in the "
                "contract or list its values in the contract's synthetic profile"
            )
        values = [f"{column.name}-{i:03d}" for i in range(1000)]
        return Choice(name, values, [1.0] * len(values))

    def _pool(self, column: Column, size: int, sigma: float) -> Choice:
        """Values in the form of the example, some far more common than others."""
        rng = np.random.default_rng([*self.base_seed, STREAM_POOLS, *_seed(column.name)])
        values = example_pool(column, size, rng)
        if not values:
            raise ProfileError(
                f"column {column.source_name!r}: no values like its example "
                f"{column.example!r} match {column.pattern!r}; list them in the profile"
            )
        return Choice(column.source_name, values, rng.lognormal(0.0, float(sigma), len(values)))

    def _after(self, column: Column, spec: dict[str, Any]) -> After:
        name = column.source_name
        reference = spec.get("column") or self.after.get(name)
        if reference is None:
            raise ProfileError(f"{name}: after needs the column it comes after")
        # Nothing is known after the delivery's due date: later times are blank (still open).
        due = add_months(*year_month(self.period), self.months)
        day = min(self.contract.schedule.due_day_of_following_month, 28)
        cutoff = calendar.timegm((*due, max(day, 1), 0, 0, 0))
        gaps: list[tuple[int, int]] = []
        if time_kind_of(column) == "local":
            end = datetime.fromtimestamp(cutoff, UTC) + timedelta(days=2)
            gaps = clock_gaps(column.default_timezone or "Europe/London", self.start_utc, end)
        return After(column, reference, spec, cutoff, gaps, self._default_blank(column))

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
                if valid_values(self.by_source[name]) is None
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
        self.group_size_cdf = cumulative(np.array(list(sizes.values()), dtype=float))

    @staticmethod
    def _ordered(specs: list[Spec]) -> list[Spec]:
        """The generators in an order where every column exists before it is needed."""
        ordered: list[Spec] = []
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
        year, month = add_months(*year_month(self.period), period_months(self.contract) - 1)
        names = tuple(
            datetime(*add_months(year, month, -lag - i), 1).strftime(layout.period_format)
            for i in reversed(range(months))
        )
        for name in names:
            if not re.fullmatch(layout.value_column_pattern, name):
                raise ProfileError(f"month column {name!r} does not match the layout's pattern")
        return names

    # unique keys

    def _plan_keys(self, specs: list[Spec]) -> list[Spec]:
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
        uses_weights = [s for s in specs if isinstance(s, KeyCount)]
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

    def _unique_by_construction(self, key: tuple[str, ...], maker: dict[str, Spec]) -> bool:
        for name in key:
            spec = _unwrap(maker.get(name))
            if isinstance(spec, Reference) and spec.unique:
                if name not in self.group_shared or self.group_number in key:
                    return True
        return False

    def _choose_combos(self, key: tuple[str, ...], maker: dict[str, Spec]) -> KeyCombos:
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
            if isinstance(domain, GivenValues) and domain.parent not in domains:
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
                if not isinstance(domains[n], GivenValues) or domains[n].parent in columns
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
            rng = np.random.default_rng([*self.base_seed, STREAM_ORDER])
            for spec in maker.values():
                if isinstance(spec, Timestamp) and spec.cumulative is not None:
                    spec.order(rng.multinomial(self.rows, spec.slots.p))
        return KeyCombos(values, times, weights[chosen])

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
        rng = np.random.default_rng([*self.base_seed, STREAM_KEYS])
        scores = np.log(weights[candidates]) + rng.gumbel(size=len(candidates))
        return np.sort(candidates[np.argpartition(-scores, self.rows - 1)[: self.rows]])

    def _spread_references(self) -> None:
        timestamps = {s.makes[0]: s for s in self.specs if isinstance(s, Timestamp)}
        for spec in self.specs:
            reference = _unwrap(spec)
            if not isinstance(reference, Reference):
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
        self.group_cdf = cumulative(np.array(list(sizes.values()), dtype=float))

    def _defects(self, spec: dict[str, Any]) -> None:
        cols = self.contract.columns
        invalid = spec.get("invalid_values") or {}
        trailing = spec.get("trailing_space")
        if trailing is None:
            trailing = [c.source_name for c in cols if valid_values(c)]
        times = [c.source_name for c in cols if time_kind_of(c) is not None]
        checks_period = self.contract.schedule.period != "once"
        self.candidates: dict[str, list[str]] = {
            "blank_required": [c.source_name for c in cols if c.required],
            "invalid_value": [
                c.source_name
                for c in cols
                if valid_values(c) or c.source_name in invalid or c.pattern
            ],
            "malformed_timestamp": times,
            "out_of_period": [
                c.source_name
                for c in cols
                if time_kind_of(c) in ("utc", "local", "date")
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
            "duplicate_key": [WHOLE_ROW] if self.keys else [],
        }
        weights = spec.get("kinds") or dict.fromkeys(DEFECT_KINDS, 1)
        unknown = set(weights) - set(DEFECT_KINDS)
        if unknown:
            raise ProfileError(f"unknown defect kinds: {', '.join(sorted(unknown))}")
        self.kinds = [k for k in DEFECT_KINDS if weights.get(k, 0) > 0 and self.candidates[k]]
        self.kind_cdf = cumulative(np.array([weights[k] for k in self.kinds], dtype=float))
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
        chunk = Chunk(
            n=min(CHUNK_ROWS, self.rows - start),
            start=start,
            rng=np.random.default_rng([*self.base_seed, STREAM_VALUES, index]),
        )
        if self.group_number:
            self._group(chunk, np.random.default_rng([*self.base_seed, STREAM_GROUPS, index]))
        for spec in self.specs:
            spec.generate(chunk)
            if chunk.owner is not None:
                self._share(chunk, spec.makes)
        self._copy_duplicates(
            chunk, np.random.default_rng([*self.base_seed, STREAM_DUPLICATES, index])
        )
        if self.defect_rate > 0 and self.kinds:
            self._add_defects(
                chunk, np.random.default_rng([*self.base_seed, STREAM_DEFECTS, index])
            )
        names = self.names
        return pa.RecordBatch.from_arrays(
            [chunk.columns[n] for n in names], schema=pa.schema([(n, pa.string()) for n in names])
        )

    def _group(self, chunk: Chunk, rng: np.random.Generator) -> None:
        """Cut the chunk into groups of rows (a group never runs into the next chunk)."""
        sizes = self.group_size_values[draw(self.group_size_cdf, rng, max(chunk.n, 1))]
        ends = np.cumsum(sizes)
        count = int(np.searchsorted(ends, chunk.n)) + 1
        starts = np.concatenate([[0], ends[: count - 1]])
        chunk.owner = np.repeat(starts, sizes[:count])[: chunk.n]
        chunk.group_number = np.arange(chunk.n) - chunk.owner + 1

    def _share(self, chunk: Chunk, names: Sequence[str]) -> None:
        """Give every row of a group the group's first row's value of the shared columns."""
        for name in names:
            if name not in self.group_shared:
                continue
            chunk.columns[name] = chunk.columns[name].take(pa.array(chunk.owner))
            for times in (chunk.epochs, chunk.local, chunk.day_rank):
                if name in times:
                    times[name] = times[name][chunk.owner]

    def _copy_duplicates(self, chunk: Chunk, rng: np.random.Generator) -> None:
        """Turn the rows after some rows into exact copies of them (people searched together)."""
        if self.group_share <= 0 or chunk.n < 2:
            return
        starts = np.flatnonzero(rng.random(chunk.n) < self.group_share)
        if not starts.size:
            return
        sizes = self.group_sizes[draw(self.group_cdf, rng, starts.size)]
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

    def _add_defects(self, chunk: Chunk, rng: np.random.Generator) -> None:
        rows = np.flatnonzero(rng.random(chunk.n) < self.defect_rate)
        if not rows.size:
            return
        kinds = draw(self.kind_cdf, rng, rows.size)
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
        self, kind: str, name: str, chunk: Chunk, row: int, rng: np.random.Generator
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
            allowed = valid_values(column)
            if allowed is None:
                return _off_pattern(column, current, rng)
            # Otherwise a typo in the value the row has (or in any allowed value, if blank).
            wrong = _misspelt(current or pick(sorted(allowed or {name})), rng)
            return wrong if wrong not in allowed else wrong + "x"
        if kind == "trailing_space":
            allowed = valid_values(column)
            return (current or pick(sorted(allowed or {name}))) + " "
        if kind == "out_of_range":
            return _out_of_range(column, current)
        time_kind = time_kind_of(column)
        fmt = time_format(column)
        if kind == "before_reference":
            # Keyed against the wrong day or hour: earlier than the time it follows.
            reference = self.by_source[self.after[name]]
            step = int(rng.integers(1, 30)) * (DAY if time_kind == "date" else 600)
            local = int(chunk.local[reference.source_name][row]) - step
            utc = int(chunk.epochs[reference.source_name][row]) - step
            return format_times(time_kind, fmt, np.array([utc]), np.array([local]))[0].as_py()
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
        variants = [v for v in _malformed(time_kind, fmt, when) if not parses(fmt, v)]
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
            return strftime(when, fmt)
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
            strftime(when, impossible),
        ]
        return pick([v for v in variants if not parses(fmt, v)])


def _unwrap(spec: Spec | None) -> Spec | None:
    while isinstance(spec, BlankWith):
        spec = spec.inner
    return spec


def _extend(
    columns: dict[str, np.ndarray],
    slots: dict[str, np.ndarray],
    weights: np.ndarray,
    name: str,
    domain: Values | GivenValues,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """The enumeration of key combinations with one more column (blank values left out)."""
    n = len(weights)
    if isinstance(domain, GivenValues):
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


def _options(domain: Values) -> Values:
    """The domain without blanks or impossible values, its probabilities summing to 1."""
    keep = [i for i, v in enumerate(domain.values) if v != "" and domain.p[i] > 0]
    p = domain.p[keep]
    slots = [domain.slots[i] for i in keep] if domain.slots is not None else None
    return Values([domain.values[i] for i in keep], p / p.sum() if p.size else p, slots)


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
    if not matches(column.pattern, sample):
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
    low, high = bounds(column)
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
    wrong = [v for v in options if v != value and not matches(column.pattern, v)]
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
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if re.search(NEEDS_QUOTES, value) else value


def _csv_header(names: Sequence[str]) -> bytes:
    return (",".join(_csv_field(n) for n in names) + "\n").encode("utf-8")


def _quoted(values: pa.Array) -> pa.Array:
    """Quote only the fields that need it, as Python's csv.QUOTE_MINIMAL does."""
    needs = pc.match_substring_regex(values, NEEDS_QUOTES)
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
