"""Validate one landed delivery against its contract, in bounded memory.

The file is streamed as text in batches. Each batch goes through the contract's pandera
checks; a row that breaks a quarantining rule goes to quarantine with every reason, the
others are typed and written to staging, ready to publish. Every source row ends up in
exactly one of the two, numbered from 1 in file order (`_source_row`).

A file that cannot be read at all, or lacks agreed columns, is rejected as a whole: the
caller records why, and its bytes stay in the landing area. The caller is
`delivery_verdicts.validate_pending`, which judges the delivery as one of its month's.
"""

from __future__ import annotations

import difflib
from array import array
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.intake.delivery_formats import (
    NO_LIMITS,
    OTHER_SEPARATORS,
    DecompressionLimits,
    DeliveryFile,
    UnreadableFile,
    column_positions,
    error_words,
    format_breaches,
    open_delivery,
    quoted,
    quoted_names,
    text_batches,
)
from pipelines.intake.manifests import manifest_breaches
from pipelines.intake.pseudonymise import pseudonymise
from pipelines.intake.wide_layout import curated_long, value_columns, value_rule
from pipelines.lake.publishing import curated_parquet_writer
from pipelines.lake.register import Breach
from pipelines.lake.store import Lake
from pipelines.validation.batch_threads import BackgroundWriter, read_ahead
from pipelines.validation.dataset_expectations import (
    DeliveryProfile,
    profile_from_counts,
)
from pipelines.validation.month_checks import (
    VALUES_KEPT,
    RuleFailures,
    named_period,
    nothing_usable_breach,
    periods_carried_breach,
)
from pipelines.validation.row_verdicts import (
    RULE,
    TYPED,
    judged_columns,
    quarantined_expr,
    row_checks,
    rules_broken,
)
from schemas.contract import Column, Contract, WideLayout
from schemas.row_checks import (
    compile_row_checks,
    curated_dtype,
    key_expr,
    parsed,
)

READ_BLOCK_BYTES = 4 << 20  # Arrow reads ahead up to 32 blocks: 4 MB keeps that ~128 MB
BATCH_BYTES = 16 << 20  # ~16 MB of CSV text per batch keeps memory flat at any file size
# String views, cast to the file's strings in one copy. (The engine makes no Categorical or
# Enum column: a dictionary of string views would not cast to the file's strings.)
NEWEST = pl.CompatLevel.newest()
SAMPLE_ROWS = 20  # row numbers kept per breach, enough for the force to find the pattern

QUARANTINE_SCHEMA = pa.schema(
    [
        ("contract", pa.string()),
        ("_delivery_id", pa.string()),
        ("_source_row", pa.int64()),
        ("_period", pa.string()),
        ("rules", pa.list_(pa.string())),
        ("reasons", pa.list_(pa.string())),
        ("record", pa.string()),
    ]
)


class DeliveryRejected(Exception):
    """The delivery cannot be validated at all; `reason` says why in plain words."""

    def __init__(self, reason: str, rule: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


@dataclass
class ValidationOutcome:
    rows_delivered: int = 0
    rows_curated: int = 0
    rows_quarantined: int = 0
    breaches: list[Breach] = field(default_factory=list)
    preview: pl.DataFrame | None = None
    profile: DeliveryProfile | None = None  # small per-delivery figures for dataset checks


# Names of a batch's failures in their query, per rule (no agreed column starts with \x1f).
_COUNT, _SAMPLE, _FOUND, _MONTHS = "\x1fcount ", "\x1fsample ", "\x1ffound ", "\x1fmonths "
_N = "\x1fn"


@dataclass
class _RuleTally(RuleFailures):
    def failures(self, contract: Contract, delivered: list[str]) -> list[pl.Expr]:
        """Over a batch judged by `judged_columns`: how many rows break the rule, the
        numbers of the first few while the sample has room, and what the failing rows held
        (`add` keeps them): a few values of a public column, and for a date that must lie
        in the period, the month each failing date lies in."""
        rule = self.rule
        broken = ~pl.col(RULE + rule.id)
        found = [broken.sum().alias(_COUNT + rule.id)]
        room = SAMPLE_ROWS - len(self.sample)
        if room > 0:
            rows = pl.col("_source_row").filter(broken).head(room)
            found.append(rows.implode().alias(_SAMPLE + rule.id))
        if rule.source_name not in delivered or rule.column in contract.classified:
            return found
        failing = pl.col(rule.source_name).filter(broken)
        # The commonest first; a value kept is counted in every batch, so that the counts a
        # breach states are exact.
        values = failing.drop_nulls().alias("v").value_counts(sort=True, name=_N)
        found.append(values.implode().alias(_FOUND + rule.id))
        column = contract.column(rule.column)
        if column.in_period_rule is not None and column.in_period_rule.name == rule.id:
            months = _london_month(column, failing).drop_nulls().alias("m").value_counts(name=_N)
            found.append(months.implode().alias(_MONTHS + rule.id))
        return found

    def add(self, found: dict) -> None:
        """Count the failures `failures` found in a batch (`found`: its query's row)."""
        count = found[_COUNT + self.rule.id]
        if not count:
            return
        self.count += count
        self.sample.extend(found.get(_SAMPLE + self.rule.id) or [])
        for item in found.get(_FOUND + self.rule.id) or []:
            value, n = item["v"], item[_N]
            if value in self.values or len(self.values) < VALUES_KEPT:
                self.values[value] = self.values.get(value, 0) + n
        for item in found.get(_MONTHS + self.rule.id) or []:
            month, n = item["m"], item[_N]
            self.months[month] = self.months.get(month, 0) + n


# Names of a batch's profile counts in their query (no agreed column starts with \x1f).
_MISSING, _VALUES = "\x1fmissing ", "\x1fvalues "
# The rules each quarantined row broke, beside the delivered columns: a name no agreed column
# has, and a delivered column that happens to have it (hostile headers) is left out of the
# quarantined rows' query rather than clash with it (the quarantine record holds only agreed
# columns). A delivery with an unagreed column named `rule` is published with its breach.
_RULES = "\x1frules"


def _profile_counts(contract: Contract, categorical: list[str]) -> list[pl.Expr]:
    """A batch's counts for the delivery's profile, as one row: the blank cells of each
    completeness rule's column, and the values of each categorical column with their
    counts (a list of (value, count) structs; blanks are not values)."""
    exprs = []
    for rule in contract.completeness_rules:
        src = pl.col(contract.column(rule.column).source_name)
        blanks = [v for v in rule.missing_values if v is not None]
        exprs.append((src.is_null() | src.is_in(blanks)).sum().alias(_MISSING + rule.name))
    for src in categorical:
        counted = pl.col(src).drop_nulls().value_counts(name="\x1fcount")
        exprs.append(counted.implode().alias(_VALUES + src))
    return exprs


@lru_cache(maxsize=4096)
def _typed(column: Column) -> pl.Expr:
    """The delivered text of `column` as its curated, typed value (made once per column and
    process: every month of a backfill types its columns alike)."""
    return parsed(column, pl.col(column.source_name)).alias(column.name)


def _london_month(column: Column, text: pl.Expr) -> pl.Expr:
    """The month (YYYY-MM, London time) of a date or timestamp given as text."""
    value = parsed(column, text)
    if column.logical_type == "timestamp":
        value = value.dt.convert_time_zone("Europe/London")
    return value.dt.strftime("%Y-%m")


# Lineage columns every curated row carries, after the agreed columns.
LINEAGE_TYPES = {"_delivery_id": "String", "_source_row": "Int64", "_period": "String"}
LINEAGE_ARROW = {"_delivery_id": pa.string(), "_source_row": pa.int64(), "_period": pa.string()}


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    return pl.DataFrame(schema={"x": dtype}).to_arrow().schema[0].type


def curated_schema(contract: Contract) -> pa.Schema:
    """The Arrow schema of a curated partition: agreed columns, typed, plus lineage."""
    return _curated_schema(contract.columns, contract.layout)


@lru_cache(maxsize=256)
def _curated_schema(columns: tuple[Column, ...], layout: WideLayout | None) -> pa.Schema:
    # Made once per contract and process (the columns are frozen, so an edited contract is
    # another key): every delivery of a backfill asks for it.
    fields = [pa.field(c.name, _arrow_type(curated_dtype(c))) for c in columns]
    if layout:
        fields += [
            pa.field(layout.period_name, pa.date32()),
            pa.field(layout.value_name, pa.int64()),
        ]
    fields += [pa.field(name, LINEAGE_ARROW[name]) for name in LINEAGE_TYPES]
    return pa.schema(fields)


def _open_delivery(path: Path, limits: DecompressionLimits = NO_LIMITS) -> DeliveryFile:
    try:
        return open_delivery(path, limits=limits)
    except UnreadableFile as exc:
        raise DeliveryRejected(exc.reason, exc.rule) from exc


def read_header(path: Path, limits: DecompressionLimits = NO_LIMITS) -> list[str]:
    """The delivered column names, or DeliveryRejected with a reason a person can act on.

    Any agreed format (CSV in UTF-8 or Windows-1252, gzip-compressed CSV, Parquet) is
    read by `pipelines.intake.delivery_formats`.
    """
    return list(_open_delivery(path, limits).header)


BROKEN_FLUSH_ROWS = 20_000  # broken rows held before they are written to quarantine
BROKEN_FLUSH_BYTES = 8 << 20  # ... or this much of their text, whichever comes first
# A file most of whose rows do not have the header's fields is not in the agreed layout
# (a wrong delimiter, unquoted commas, another export): rejected once this many rows are
# broken and they are most of what was read. Arrow takes ~12 microseconds per broken row,
# so quarantining a few hundred million of them would take hours.
BROKEN_REJECT_ROWS = 100_000
BROKEN_REJECT_SHARE = 0.5


class _SourceRowNumbers:
    """Numbers each parsed row by its position among all data rows, including broken ones.

    The CSV reader skips rows with the wrong number of fields and reports each one (by
    record number) to `on_invalid_row`; rows read after it must not take its number. A
    broken row is handed to `sink` (quarantine) in bounded batches as it is found. Of the
    numbers, only runs of consecutive broken rows not yet passed are kept (a file that is
    all broken rows is one run), so memory stays flat however many rows are broken: the
    reader runs one block ahead of the rows numbered (use_threads=False).
    """

    def __init__(self, sink: Callable[[list[int], list[int], list[str]], None] | None = None):
        self.next_row = 1
        self.broken_count = 0
        self.broken_sample: list[int] = []  # the first few, for the breach
        self.sink = sink
        self.error: BaseException | None = None  # raised by the sink inside the reader
        self._starts = array("q")  # runs of broken row numbers not yet passed, ascending
        self._lengths = array("q")
        self._passed = 0  # how many runs are behind `next_row`
        self._held: tuple[list[int], list[int], list[str]] = ([], [], [])
        self._held_bytes = 0

    def on_invalid_row(self, row: pacsv.InvalidRow) -> str:
        number = row.number - 1  # the reader counts the header as record 1
        if self.broken_count >= BROKEN_REJECT_ROWS and (
            self.broken_count > BROKEN_REJECT_SHARE * number
        ):
            self.error = DeliveryRejected(
                f"Most rows do not have the header's {row.expected_columns} fields "
                f"({self.broken_count:,} of the first {number - 1:,} rows): the file is not in "
                "the agreed layout (a wrong delimiter, unquoted commas, or another export). "
                "It was not read further and nothing from it was published; its bytes are "
                "kept.",
                "file.row_shape",
            )
            return "error"  # stops the reader
        if self._starts and self._starts[-1] + self._lengths[-1] == number:
            self._lengths[-1] += 1
        else:
            self._starts.append(number)
            self._lengths.append(1)
        self.broken_count += 1
        if len(self.broken_sample) < SAMPLE_ROWS:
            self.broken_sample.append(number)
        if self.sink is not None and self.error is None:
            numbers, fields, texts = self._held
            numbers.append(number)
            fields.append(row.actual_columns)
            texts.append(row.text)
            self._held_bytes += len(row.text)
            if len(numbers) >= BROKEN_FLUSH_ROWS or self._held_bytes >= BROKEN_FLUSH_BYTES:
                # Arrow ignores an exception raised here (the row would then fail the whole
                # file as malformed): keep it for the reading loop to raise.
                try:
                    self.flush()
                except Exception as exc:  # re-raised by check()
                    self.error = exc
        return "skip"

    def flush(self) -> None:
        """Hand the broken rows held so far to the sink."""
        numbers, fields, texts = self._held
        if numbers and self.sink is not None:
            self._held = ([], [], [])
            self._held_bytes = 0
            self.sink(numbers, fields, texts)

    def check(self) -> None:
        """Raise what the sink raised while the reader was calling back."""
        if self.error is not None:
            raise self.error

    def take(self, count: int) -> np.ndarray:
        """The numbers of the next `count` parsed rows, skipping broken rows' numbers."""
        start = self.next_row
        end = start + count  # pushed further by each run of broken rows inside the range
        first = self._passed
        while self._passed < len(self._starts) and self._starts[self._passed] < end:
            end += self._lengths[self._passed]
            self._passed += 1
        numbers = np.arange(start, end, dtype=np.int64)
        if self._passed > first:
            keep = np.ones(end - start, dtype=bool)
            for run in range(first, self._passed):
                begin = self._starts[run] - start
                keep[begin : begin + self._lengths[run]] = False
            numbers = numbers[keep]
        if self._passed > 4096 and self._passed * 2 > len(self._starts):
            del self._starts[: self._passed]  # forget the runs already passed
            del self._lengths[: self._passed]
            self._passed = 0
        self.next_row = end
        return numbers


def _batches(
    delivery: DeliveryFile, header: list[str], numbers: _SourceRowNumbers
) -> Iterator[pl.DataFrame]:
    # All-text batches of any agreed format; only an empty cell is blank ("NA" is a value).
    # Arrow's CSV reader reads up to 32 blocks ahead, so memory follows the block size, not
    # the batch size: read small blocks and join them into ~BATCH_BYTES validation batches.
    # Joined into one chunk per column (here, in the read-ahead thread): polars' eager
    # operations copy a frame of several chunks into one each time they read it (about 3 ms
    # for a 16 MB batch), and the checking loop reads each batch several times.
    batches = text_batches(
        delivery,
        on_invalid_row=numbers.on_invalid_row,
        block_size=READ_BLOCK_BYTES,
        names=header,
        joined=BATCH_BYTES // READ_BLOCK_BYTES,
    )
    try:
        for frame in batches:
            numbers.check()
            yield _numbered(frame, numbers)
        numbers.check()
    except UnreadableFile as exc:
        raise DeliveryRejected(exc.reason, exc.rule) from exc


def _numbered(frame: pl.DataFrame, numbers: _SourceRowNumbers) -> pl.DataFrame:
    # Numbered when joined, after the reader has reported the broken rows of these blocks.
    return frame.with_columns(pl.Series("_source_row", numbers.take(frame.height)))


def validate_delivery(
    contract: Contract,
    landed: Path,
    period: str,
    delivery_id: str,
    lake: Lake,
    pseudonym_key: bytes | None = None,
    source_path: str | None = None,
    standing: str | None = None,
) -> ValidationOutcome:
    """Split a landed delivery into staged curated rows and quarantined rows, with breaches.

    Identifiers the agreement pseudonymises are tokenised before anything leaves the
    landing area, in curated and quarantined rows alike. A delivery from which too few rows
    can be published gets a critical `delivery.nothing_usable` breach (it is held back);
    `source_path`, the file's name in the drop zone, helps say what most likely happened,
    and `standing` (`standing_delivery`'s file) what the month, or for a month in parts
    the part, is published from instead.
    """
    if contract.pseudonymised and pseudonym_key is None:
        raise ValueError(f"{contract.name} pseudonymises fields: a key is required")
    # Earlier published names the agreement still accepts are read as today's name.
    aliases = {old: c.source_name for c in contract.columns for old in c.previous_names}
    delivery = _open_delivery(landed, DecompressionLimits.agreed(contract.file_format))
    delivered = list(delivery.header)
    header = [aliases[h] if aliases.get(h, h) not in delivered else h for h in delivered]
    values = value_columns(contract, header)
    agreed = set(contract.source_names) | set(values)
    missing = [name for name in contract.source_names if name not in header]
    if missing:
        raise DeliveryRejected(_missing_reason(missing, header, agreed), "file.columns")
    extra = [name for name in header if name not in agreed]

    if contract.layout and not values:
        layout = contract.layout
        raise DeliveryRejected(
            f"The file has no value columns: the agreement asks for one per "
            f"{layout.period_name}, headed like {_period_header(layout.period_format)} "
            f"(matching {layout.value_column_pattern}).",
            "file.columns",
        )
    duplicates = _duplicate_keys(contract, delivery, header) if contract.unique_keys else {}
    schema, rules = compile_row_checks(contract, period, duplicates)
    if values:
        schema, rules = value_rule(contract, schema, rules, values)
    by_id = {r.id: r for r in rules}
    tallies = {r.id: _RuleTally(r) for r in rules}
    checks = row_checks(schema, rules)
    missing_counts = {rule.name: 0 for rule in contract.completeness_rules}
    categorical = [c.source_name for c in contract.columns if c.value_rules]
    value_counts: dict[str, dict[str, int]] = {}
    profile_counts = _profile_counts(contract, categorical)
    outcome = ValidationOutcome()
    lineage = [pl.lit(delivery_id).alias("_delivery_id"), pl.lit(period).alias("_period")]
    source_cols = list(contract.source_names) + values
    secret = [contract.column(n).source_name for n in contract.pseudonymised]
    # Typed in the checks' query (each column parsed once), but for the pseudonymised
    # columns: those are typed from their tokens, never from the identifier itself.
    typed_now = {c.name: _typed(c) for c in contract.columns if c.source_name not in secret}
    typed_later = [_typed(c) for c in contract.columns if c.source_name in secret]
    rule_ids = list(checks.passes)
    reasons = {rid: f"{rid}: {by_id[rid].reason}" for rid in by_id}
    # The rows kept, as the query over a judged batch gives them: typed (but for the
    # pseudonymised columns, typed after their tokens are made) with their lineage.
    typed_out = [pl.col(TYPED + name).alias(name) for name in typed_now]
    if secret:  # still prefixed: a curated name may be a pseudonymised column's delivered one
        keep = [pl.col(TYPED + name) for name in typed_now] + [*secret, "_source_row", *values]
    else:
        keep = [*typed_out, *lineage, *(pl.col(c) for c in ["_source_row", *values])]
        if not contract.layout:  # in the curated file's order, so taken as they come
            by_name = {e.meta.output_name(): e for e in keep}
            keep = [by_name[name] for name in curated_schema(contract).names]
    quarantining = quarantined_expr(checks)

    staging_path = lake.staging_path(contract.name, period, delivery_id)
    quarantine_path = lake.quarantine_path(contract.name, period, delivery_id)
    with ExitStack() as stack:
        staging_tmp = stack.enter_context(lake.writing(staging_path))
        quarantine_tmp = stack.enter_context(lake.writing(quarantine_path))
        curated_writer = stack.enter_context(
            curated_parquet_writer(staging_tmp, curated_schema(contract))
        )
        quarantine_writer = stack.enter_context(
            pq.ParquetWriter(quarantine_tmp, QUARANTINE_SCHEMA, compression="zstd")
        )
        # Both files are written in one background thread while the next batch is checked
        # (and the broken rows the reader finds go through it too, in order).
        background = stack.enter_context(BackgroundWriter())

        def quarantine_broken(rows: list[int], fields: list[int], texts: list[str]) -> None:
            # A row that could not be split into fields is kept as its raw line (withheld
            # where the agreement pseudonymises a field: any part of it could be one).
            withheld = "(withheld: it may hold pseudonymised identifiers)"
            broken = pl.DataFrame(
                {"_source_row": rows, "fields": fields, "raw_line": texts},
                schema={"_source_row": pl.Int64, "fields": pl.Int64, "raw_line": pl.String},
            ).select(
                pl.lit(contract.name).alias("contract"),
                pl.lit(delivery_id).alias("_delivery_id"),
                "_source_row",
                pl.lit(period).alias("_period"),
                pl.concat_list(pl.lit("file.row_shape")).alias("rules"),
                pl.concat_list(
                    pl.format(
                        "file.row_shape: the row has {} fields, the header has {}",
                        "fields",
                        pl.lit(len(header)),
                    )
                ).alias("reasons"),
                pl.struct(pl.lit(withheld).alias("raw_line") if secret else "raw_line")
                .struct.json_encode()
                .alias("record"),
            )
            background.write(quarantine_writer, broken.to_arrow())

        numbers = _SourceRowNumbers(sink=quarantine_broken)
        try:
            for frame in read_ahead(_batches(delivery, header, numbers)):
                outcome.rows_delivered += frame.height
                # Which rows break which rules, and every row typed, in one query; the
                # batch's counts for the profile in another, collected with it.
                judged, (counted,) = judged_columns(
                    frame, checks, typed_now, [frame.lazy().select(profile_counts)]
                )
                for rule in contract.completeness_rules:
                    missing_counts[rule.name] += counted[_MISSING + rule.name].item()
                for src in categorical:
                    counts = value_counts.setdefault(src, {})
                    for value, n in counted[_VALUES + src][0].struct.unnest().iter_rows():
                        counts[value] = counts.get(value, 0) + n
                # Then, in one call to polars' pool, every rule's failures, the rows kept
                # and the rows quarantined: one call a batch, not one per rule and step.
                tallied, kept_rows, failing = pl.collect_all(
                    [
                        judged.lazy().select(
                            pl.lit(0).alias("\x1fnone"),  # a row even with no rules
                            *(
                                e
                                for t in tallies.values()
                                for e in t.failures(contract, frame.columns)
                            ),
                        ),
                        judged.lazy().filter(~quarantining).select(keep),
                        judged.lazy()
                        .filter(quarantining)
                        .select(
                            *(c for c in frame.columns if c != _RULES),
                            rules_broken(rule_ids).alias(_RULES),
                        ),
                    ]
                )
                row = tallied.row(0, named=True)
                for tally in tallies.values():
                    tally.add(row)
                if secret:
                    rest = pseudonymise(kept_rows, secret, pseudonym_key)
                    failing = pseudonymise(failing, secret, pseudonym_key)
                    curated = rest.select(
                        *typed_out, *typed_later, *lineage, "_source_row", *values
                    )
                else:
                    rest = curated = kept_rows
                if contract.layout:
                    curated = curated_long(contract, curated, values)
                if curated.columns != curated_writer.schema.names:
                    curated = curated.select(curated_writer.schema.names)
                if curated.height:
                    background.write(curated_writer, curated.to_arrow(compat_level=NEWEST))
                    if outcome.preview is None:
                        outcome.preview = curated.head(10)
                outcome.rows_curated += rest.height  # source rows (a wide row makes many)

                if failing.height:
                    quarantined = failing.select(
                        pl.lit(contract.name).alias("contract"),
                        pl.lit(delivery_id).alias("_delivery_id"),
                        "_source_row",
                        pl.lit(period).alias("_period"),
                        pl.col(_RULES).alias("rules"),
                        pl.col(_RULES)
                        .list.eval(pl.element().replace_strict(reasons))
                        .alias("reasons"),
                        pl.struct(source_cols).struct.json_encode().alias("record"),
                    )
                    background.write(quarantine_writer, quarantined.to_arrow())
                    outcome.rows_quarantined += failing.height
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            if isinstance(numbers.error, DeliveryRejected):
                raise numbers.error from exc
            raise DeliveryRejected(
                f"The file could not be read as CSV after row {numbers.next_row - 1}: "
                f"{error_words(exc)}. "
                "Nothing from this file was published.",
                "file.format",
            ) from exc

        numbers.flush()
        outcome.rows_delivered += numbers.broken_count
        outcome.rows_quarantined += numbers.broken_count

    if outcome.rows_delivered == 0:
        lake.delete(lake.staging_path(contract.name, period, delivery_id))
        lake.delete(lake.quarantine_path(contract.name, period, delivery_id))
        raise DeliveryRejected("The file has a header but no data rows.", "file.empty")

    outcome.breaches = _breaches(
        contract, period, delivery_id, outcome, tallies, missing_counts, numbers, extra, header
    )
    outcome.profile = profile_from_counts(
        contract, outcome.rows_delivered, missing_counts, value_counts
    )
    # The file's format and its manifest, if the force sent one (a mismatch is critical).
    delivered_rows = outcome.rows_delivered
    outcome.breaches += format_breaches(contract, period, delivery_id, delivery, delivered_rows)
    outcome.breaches += manifest_breaches(contract, period, delivery_id, lake, delivered_rows)
    # What the delivery means for its month: the periods a release carries, and whether
    # anything in it can be published at all.
    month_breaches = [
        periods_carried_breach(contract, period, delivery_id, values, delivered_rows),
        nothing_usable_breach(
            contract,
            period,
            delivery_id,
            delivered_rows,
            outcome.rows_curated,
            list(tallies.values()),
            numbers.broken_count,
            named_period(contract, source_path),
            standing,
        ),
    ]
    outcome.breaches += [b for b in month_breaches if b is not None]
    return outcome


def _duplicate_keys(
    contract: Contract, delivery: DeliveryFile, header: list[str]
) -> dict[tuple[str, ...], list[str]]:
    """A first pass over the file: key values occurring more than once, per unique key.

    Only the key text is kept, so memory grows with the number of distinct keys, not with
    the width of the file.
    """
    counts: dict[tuple[str, ...], pl.DataFrame] = {}
    try:
        for frame in _batches(delivery, header, _SourceRowNumbers()):
            for key in contract.unique_keys:
                batch = (
                    frame.select(key_expr(contract, key).alias("k"))
                    .drop_nulls()
                    .group_by("k")
                    .len()
                )
                seen = counts.get(key)
                counts[key] = (
                    batch
                    if seen is None
                    else pl.concat([seen, batch]).group_by("k").agg(pl.col("len").sum())
                )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return {}  # the main pass reports the file as unreadable
    return {key: frame.filter(pl.col("len") > 1)["k"].to_list() for key, frame in counts.items()}


def _share(count: int, total: int) -> str:
    share = count / total
    percent = "under 0.1%" if 0 < share < 0.001 else f"{share:.1%}"
    return f"{count:,} of {total:,} rows ({percent})"


def _values_found(contract: Contract, tally: _RuleTally) -> str:
    """What the failing rows of a one-column rule held: for a column the agreement does not
    classify, its commonest failing values with their counts; for a classified column, only
    that its values are not shown, and why."""
    rule = tally.rule
    columns = {c.name: c for c in contract.columns}
    if rule.column not in columns or rule.id.endswith((".required", ".unique")):
        return ""
    if rule.column in contract.classified:
        kind = (
            "pseudonymised"
            if rule.column in contract.pseudonymised
            else columns[rule.column].classification
        )
        return f" (its values are not shown: the agreement classifies {rule.source_name} as {kind})"
    if not tally.values:
        return ""
    ordered = sorted(tally.values.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{quoted(v)} ({_rows(n)})" for v, n in ordered)
    other = tally.count - sum(tally.values.values())
    return f"; it holds {shown}" + (f", and other values ({_rows(other)})" if other > 0 else "")


def _rows(count: int) -> str:
    return f"{count:,} row" + ("" if count == 1 else "s")


def _closest(name: str, candidates: list[str]) -> str | None:
    """The delivered column most likely meant as agreed column `name`, if one is close: the
    same but for case or spaces, one name inside the other ("Type", "Search type"), or
    spelt nearly alike."""

    def folded(text: str) -> str:
        return " ".join(text.lower().replace("_", " ").replace("-", " ").split())

    by_fold = {folded(c): c for c in candidates if c.strip()}
    want = folded(name)
    if want in by_fold:
        return by_fold[want]
    words = set(want.split())
    inside = [c for f, c in by_fold.items() if words <= set(f.split()) or set(f.split()) <= words]
    if inside:
        return min(inside, key=len)
    near = difflib.get_close_matches(want, list(by_fold), n=1, cutoff=0.75)
    return by_fold[near[0]] if near else None


def _missing_reason(missing: list[str], header: list[str], agreed: set[str]) -> str:
    """Which agreed columns the file lacks, and what its header has instead."""
    unagreed = [h for h in header if h not in agreed and h.strip()]
    named = []
    for name in missing:
        match = _closest(name, unagreed)
        named.append(
            quoted(name) + (f" (the header has {quoted(match)}: renamed?)" if match else "")
        )
    if unagreed:
        instead = (
            f"Instead, the header has {len(unagreed)} column(s) the agreement does not name: "
            f"{quoted_names(unagreed)}."
        )
    else:
        instead = "The header has no other columns in their place."
    separators = [w for sep, w in OTHER_SEPARATORS.items() if any(sep in h for h in header)]
    if separators:
        instead += (
            f" Its names hold {separators[0]}: the file may be separated by them, not by "
            "commas as agreed."
        )
    return (
        f"The file lacks {len(missing)} agreed column(s): {', '.join(named)}. {instead} "
        "A renamed column counts as missing; nothing from this file was published."
    )


def _period_header(period_format: str) -> str:
    """An example header of a wide layout's value column (January 2024, in its format)."""
    return datetime(2024, 1, 1).strftime(period_format)


def _named(extra: list[str], header: list[str]) -> str:
    """Unagreed columns by name, and a blank one by its position (a name "" says nothing)."""
    named = [repr(h) for h in extra if h.strip()]
    blank = [i for i, h in enumerate(header, 1) if not h.strip()]
    if blank:
        named.append(f"{column_positions(blank)}, with no name")
    return ", ".join(named)


def _breaches(
    contract: Contract,
    period: str,
    delivery_id: str,
    outcome: ValidationOutcome,
    tallies: dict[str, _RuleTally],
    missing_counts: dict[str, int],
    numbers: _SourceRowNumbers,
    extra: list[str],
    header: list[str],
) -> list[Breach]:
    total = outcome.rows_delivered
    common = dict(
        contract=contract.name,
        contract_version=contract.version,
        period=period,
        delivery_id=delivery_id,
        rows_checked=total,
    )
    found: list[Breach] = []
    if numbers.broken_count:
        found.append(
            Breach(
                **common,
                rule="file.row_shape",
                clause=f"{contract.path.name}: schema[{contract.name}] (agreed layout)",
                severity="major",
                action="rows quarantined",
                failing_rows=numbers.broken_count,
                sample_rows=numbers.broken_sample,
                detail=f"{_share(numbers.broken_count, total)} do not have the "
                f"{len(header)} fields of the header (a missing or extra comma, or a broken "
                "quote); these rows were quarantined.",
            )
        )
    for tally in tallies.values():
        if not tally.count:
            continue
        rule = tally.rule
        kept = rule.on_failure == "keep"
        found.append(
            Breach(
                **common,
                rule=rule.id,
                clause=rule.clause,
                severity=rule.severity,
                action="rows kept" if kept else "rows quarantined",
                failing_rows=tally.count,
                sample_rows=tally.sample,
                detail=f"{_share(tally.count, total)}: {rule.reason}"
                f"{_values_found(contract, tally)}. "
                + (
                    "The agreement keeps these rows; please correct them at source."
                    if kept
                    else "These rows were quarantined and not published."
                ),
            )
        )
    for rule in contract.completeness_rules:
        count = missing_counts[rule.name]
        share = 100 * count / total
        if share <= rule.max_percent:
            continue
        col = contract.column(rule.column)
        found.append(
            Breach(
                **common,
                rule=rule.name,
                clause=f"{contract.path.name}: schema[{contract.name}]"
                f".properties[{col.name}].quality[{rule.name}]",
                severity=rule.severity,
                action="delivery published",
                failing_rows=count,
                detail=f"{_share(count, total)} have no {col.source_name}; "
                f"the agreement allows at most {rule.max_percent:g}%.",
            )
        )
    if extra:
        found.append(
            Breach(
                **common,
                rule="file.unagreed_columns",
                clause=f"{contract.path.name}: schema[{contract.name}].properties",
                severity="major",
                action="columns withheld",
                failing_rows=total,
                detail=f"The file includes {len(extra)} column(s) the agreement does not list "
                f"({_named(extra, header)}). Over-sharing: these columns were not published.",
            )
        )
    return found
