"""Compile a contract into the row checks that run on every batch of a delivery.

Deliveries are read as text (so that nothing is coerced before it is checked); each
contract rule becomes a named pandera check on that text, and each column a strict parse
to its curated type. A row passes when no quarantining rule fails on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import pandera.polars as pa
import polars as pl

from schemas.contract import Column, Contract, OnFailure, Severity
from schemas.period_words import period_words

LONDON = ZoneInfo("Europe/London")
UTC = ZoneInfo("UTC")
BOOLEAN_TEXT = {"True": True, "False": False}
PERIOD_MONTHS = {"monthly": 1, "quarterly": 3, "annual": 12}
KEY_SEPARATOR = "\x1f"  # cannot occur in CSV text the force sends; joins composite keys

# Polars' parsers are lenient (they take "2022-6-3" or " 12"); the text must also have
# exactly the agreed shape. A number is any finite decimal number as both Arrow and Python
# read it: a sign ("+" too), digits with or without a fraction (or a fraction alone, ".5",
# or a trailing point, "5."), and an exponent ("-8.6e-05", "1E3"), as exporters write small
# or large floats. Not: spaces around it, "1_000" (Python only), other scripts' digits, or
# "inf"/"nan" (not finite; those are turned away after parsing).
_NUMBER_SHAPE = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_INTEGER_SHAPE = r"-?\d+"
_FORMAT_SHAPES = {
    "%Y": r"\d{4}", "%m": r"\d{2}", "%d": r"\d{2}", "%H": r"\d{2}",
    "%M": r"\d{2}", "%S": r"\d{2}", "%:z": r"[+-]\d{2}:\d{2}",
}  # fmt: skip


@dataclass(frozen=True)
class RowRule:
    """A check on one column (or across columns), with what the contract says about it."""

    id: str
    column: str
    source_name: str
    severity: Severity
    on_failure: OnFailure
    clause: str
    reason: str  # what is wrong with a failing row, without its value


def format_shape(fmt: str) -> str:
    """A regular expression matching exactly the text a strptime format produces."""
    parts = re.split(r"(%:?[A-Za-z])", fmt)
    return "".join(_FORMAT_SHAPES.get(p, re.escape(p)) for p in parts)


def _shape(column: Column) -> str | None:
    if column.logical_type in ("timestamp", "date", "time") and column.timestamp_format:
        return format_shape(column.timestamp_format)
    return {"number": _NUMBER_SHAPE, "integer": _INTEGER_SHAPE}.get(column.logical_type)


def _parse_expr(column: Column, expr: pl.Expr) -> pl.Expr:
    fmt = column.timestamp_format
    match column.logical_type:
        case "timestamp":
            if "%z" in fmt or "%:z" in fmt:
                return expr.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False)
            # Local clock time: an hour that does not exist (clocks forward) fails the check;
            # the repeated hour (clocks back) is read as its first occurrence.
            return (
                expr.str.strptime(pl.Datetime("us"), fmt, strict=False)
                .dt.replace_time_zone(
                    column.default_timezone or "Europe/London",
                    ambiguous="earliest",
                    non_existent="null",
                )
                .dt.convert_time_zone("UTC")
            )
        case "date":
            fmt = fmt or "%Y-%m-%d"
            if "%d" not in fmt:  # a month such as 2023-01 is its first day
                return (expr + "|01").str.strptime(pl.Date, fmt + "|%d", strict=False)
            return expr.str.strptime(pl.Date, fmt, strict=False)
        case "time":
            return expr.str.strptime(pl.Time, fmt or "%H:%M", strict=False)
        case "number":
            # "1e400" has the shape of a number but reads as infinity: not a number.
            number = expr.cast(pl.Float64, strict=False)
            return pl.when(number.is_finite()).then(number).otherwise(None)
        case "integer":
            return expr.cast(pl.Int64, strict=False)
        case "boolean":
            # Compared, not looked up: `replace_strict` builds a hash join for two values
            # (six times the CPU time). The same result, and named like `expr`: an agreed
            # spelling of true is true, of false false, and any other text null.
            true = pl.any_horizontal(expr == text for text, flag in BOOLEAN_TEXT.items() if flag)
            return pl.when(pl.any_horizontal(expr == text for text in BOOLEAN_TEXT)).then(true)
        case _:
            return expr


def parsed(column: Column, expr: pl.Expr) -> pl.Expr:
    """The text in `expr` parsed strictly to the column's curated type (null when it fails)."""
    value = _parse_expr(column, expr)
    shape = _shape(column)
    if shape is None:
        return value
    return pl.when(expr.str.contains(f"^(?:{shape})$")).then(value).otherwise(None)


def curated_dtype(column: Column) -> pl.DataType:
    return {
        "timestamp": pl.Datetime("us", "UTC"),
        "date": pl.Date(),
        "time": pl.Time(),
        "number": pl.Float64(),
        "integer": pl.Int64(),
        "boolean": pl.Boolean(),
    }.get(column.logical_type, pl.String())


def typed_columns(contract: Contract) -> list[pl.Expr]:
    """Expressions turning the delivered text columns into the curated, typed columns."""
    return [parsed(c, pl.col(c.source_name)).alias(c.name) for c in contract.columns]


def key_expr(contract: Contract, key: tuple[str, ...]) -> pl.Expr:
    """One text value per row for a (possibly composite) key; null if any part is blank."""
    parts = [pl.col(contract.column(name).source_name) for name in key]
    if len(parts) == 1:
        return parts[0]
    return pl.concat_str(parts, separator=KEY_SEPARATOR, ignore_nulls=False)


def period_bounds(period: str, months: int = 1) -> tuple[datetime, datetime]:
    """The first instant of the period and of the next, London time, in UTC."""
    year, month = (int(x) for x in period.split("-"))
    end_year, end_month = divmod(year * 12 + month - 1 + months, 12)
    start = datetime(year, month, 1, tzinfo=LONDON)
    end = datetime(end_year, end_month + 1, 1, tzinfo=LONDON)
    return start.astimezone(UTC), end.astimezone(UTC)


def _clause(contract: Contract, where: str) -> str:
    return f"{contract.path.name}: schema[{contract.name}]{where}"


def compile_row_checks(
    contract: Contract,
    period: str,
    duplicate_keys: dict[tuple[str, ...], list[str]] | None = None,
) -> tuple[pa.DataFrameSchema, list[RowRule]]:
    """The pandera schema for one delivery period, and the rule behind each of its checks.

    Check names are rule ids, so a failure case maps straight back to its rule. Blank
    cells arrive as null: `required` is pandera's nullability. `duplicate_keys` holds, per
    unique key, the key values that occur more than once in the whole delivery (found in a
    first pass over the file, since a batch alone cannot tell).
    """
    months = PERIOD_MONTHS.get(contract.schedule.period)
    start, end = period_bounds(period, months) if months else (None, None)
    rules: list[RowRule] = []
    columns: dict[str, pa.Column] = {}

    def rule(rule_id, col: Column, severity, on_failure, where, reason) -> RowRule:
        made = RowRule(rule_id, col.name, col.source_name, severity, on_failure, where, reason)
        rules.append(made)
        return made

    for col in contract.columns:
        src = col.source_name
        where = f".properties[{col.name}]"
        if col.required:
            rule(
                f"{col.name}.required", col, "major", "quarantine",
                _clause(contract, f"{where}.required"),
                f"{src} is blank, but the agreement requires it",
            )  # fmt: skip
        # The column's other rules but its in-period one hold whatever the period: made
        # once per process, so that a backfill's months share them (and their compiled
        # expressions, which `row_verdicts` keeps per check function).
        made = _period_free_checks(contract.path.name, contract.name, col)
        rules.extend(made_rule for made_rule, _ in made)
        checks = [check for _, check in made]
        if col.in_period_rule is not None and start is not None:
            ipr = col.in_period_rule
            low, high = (start, end) if col.logical_type == "timestamp" else _dates(period, months)
            made_rule = rule(
                ipr.name, col, ipr.severity, ipr.on_failure,
                _clause(contract, f"{where}.quality[{ipr.name}]"),
                _in_period_reason(col, period, contract.schedule.period),
            )  # fmt: skip
            checks.append(
                pa.Check(
                    lambda data, col=col, low=low, high=high: data.lazyframe.select(
                        parsed(col, pl.col(data.key))
                        .is_between(pl.lit(low), pl.lit(high), closed="left")
                        .fill_null(True)
                    ),
                    name=made_rule.id,
                    error=made_rule.id,
                )
            )
        columns[src] = pa.Column(pl.String, nullable=not col.required, checks=checks)

    table_checks = _table_checks(contract, period, duplicate_keys or {}, rules)
    schema = pa.DataFrameSchema(
        columns, checks=table_checks, name=contract.name, strict=False, ordered=False
    )
    return schema, rules


@lru_cache(maxsize=1024)
def _period_free_checks(
    contract_file: str, contract_name: str, col: Column
) -> tuple[tuple[RowRule, pa.Check], ...]:
    """A column's rules that do not depend on the delivery (its type, range, pattern and
    agreed values), each with its check, in the order `compile_row_checks` lists them.

    They depend only on the column and the contract's names (in their clauses), so one
    process makes them once for every delivery of the contract. A `Column` is frozen, so
    a contract changed on disk is a different key.
    """
    src = col.source_name
    where = f".properties[{col.name}]"

    def clause(what: str) -> str:
        return f"{contract_file}: schema[{contract_name}]{where}{what}"

    made: list[tuple[RowRule, pa.Check]] = []

    def add(rule_id, severity, on_failure, what, reason, check_fn) -> None:
        rule = RowRule(rule_id, col.name, src, severity, on_failure, clause(what), reason)
        made.append((rule, pa.Check(check_fn, name=rule_id, error=rule_id)))

    if col.logical_type != "string":
        add(
            f"{col.name}.type", "major", "quarantine", ".logicalType", _type_reason(col),
            lambda data: data.lazyframe.select(
                pl.col(data.key).is_null() | parsed(col, pl.col(data.key)).is_not_null()
            ),
        )  # fmt: skip
    if col.minimum is not None or col.maximum is not None:
        low = col.minimum if col.minimum is not None else float("-inf")
        high = col.maximum if col.maximum is not None else float("inf")
        add(
            f"{col.name}.range", "major", "quarantine", ".logicalTypeOptions",
            f"{src} is outside the agreed range {low:g} to {high:g}",
            lambda data: data.lazyframe.select(
                parsed(col, pl.col(data.key)).is_between(low, high).fill_null(True)
            ),
        )  # fmt: skip
    if col.pattern:
        pattern = col.pattern
        add(
            f"{col.name}.pattern", "major", "quarantine", ".logicalTypeOptions.pattern",
            f"{src} does not have the agreed form"
            + (f" (for example {col.example})" if col.example else ""),
            lambda data: data.lazyframe.select(
                pl.col(data.key).is_null() | pl.col(data.key).str.contains(f"^(?:{pattern})$")
            ),
        )  # fmt: skip
    for vr in col.value_rules:
        add(
            vr.name, vr.severity, vr.on_failure, f".quality[{vr.name}]",
            f"{src} is not one of the {len(vr.valid_values)} agreed values",
            lambda data, values=vr.valid_values: data.lazyframe.select(
                pl.col(data.key).is_null() | pl.col(data.key).is_in(list(values))
            ),
        )  # fmt: skip
    return tuple(made)


def _type_reason(col: Column) -> str:
    """Why a value is not of the column's type, with the form the agreement spells it in."""
    if col.logical_type == "boolean":
        # Only these spellings are read; whether others (Excel's TRUE) count is for the
        # contract to agree, so the reason names exactly what is agreed.
        spelled = " or ".join(repr(text) for text in BOOLEAN_TEXT)
        return f"{col.source_name} is not true or false as the agreement spells them: {spelled}"
    form = f" (agreed form: {col.example})" if col.example else ""
    if col.logical_type == "number":
        return f"{col.source_name} is not a finite decimal number{form}"
    return f"{col.source_name} is not a valid {col.logical_type}{form}"


def _in_period_reason(col: Column, period: str, schedule_period: str) -> str:
    """Why a date lies outside the delivery's period; a quarter or year is named by its
    first month, which a person reading `2025-04` cannot guess."""
    months = PERIOD_MONTHS.get(schedule_period, 1)
    if months == 1:
        return (
            f"{col.source_name} is outside the period the delivery is for ({period}, London time)"
        )
    span = {3: "quarter", 12: "year"}.get(months, "period")
    return (
        f"{col.source_name} is outside the {span} the delivery is for ({period}, London time: "
        f"a {span} is named by its first month, so {period} is "
        f"{period_words(period, schedule_period)})"
    )


def _dates(period: str, months: int) -> tuple[date, date]:
    start, end = period_bounds(period, months)
    return start.astimezone(LONDON).date(), end.astimezone(LONDON).date()


def _table_checks(
    contract: Contract,
    period: str,
    duplicate_keys: dict[tuple[str, ...], list[str]],
    rules: list[RowRule],
) -> list[pa.Check]:
    """Checks across columns: unique keys and the contract's notBefore rules."""
    checks = []
    for key in contract.unique_keys:
        names = [contract.column(n).source_name for n in key]
        made = RowRule(
            id=f"{'+'.join(key)}.unique",
            column=key[0],
            source_name=" + ".join(names),
            severity="major",
            on_failure="quarantine",
            clause=_clause(contract, f".properties[{key[0]}].primaryKey/unique"),
            reason=f"{' + '.join(names)} occurs more than once in the delivery; "
            "every copy is held back because the agreement says it identifies one record",
        )
        rules.append(made)
        dupes = list(duplicate_keys.get(key, []))
        checks.append(
            pa.Check(
                lambda data, key=key, dupes=dupes: data.lazyframe.select(
                    ~key_expr(contract, key).is_in(dupes).fill_null(False)
                ),
                name=made.id,
                error=made.id,
            )
        )
    for cr in contract.cross_rules:
        col, ref = contract.column(cr.column), contract.column(cr.reference)
        made = RowRule(
            id=cr.name,
            column=col.name,
            source_name=col.source_name,
            severity=cr.severity,
            on_failure=cr.on_failure,
            clause=_clause(contract, f".quality[{cr.name}]"),
            reason=f"{col.source_name} is earlier than {ref.source_name}",
        )
        rules.append(made)
        checks.append(
            pa.Check(
                lambda data, col=col, ref=ref: data.lazyframe.select(
                    (
                        parsed(col, pl.col(col.source_name)) >= parsed(ref, pl.col(ref.source_name))
                    ).fill_null(True)
                ),
                name=made.id,
                error=made.id,
            )
        )
    return checks
