"""Compile a contract into the row checks that run on every batch of a delivery.

Deliveries are read as text (so that nothing is coerced before it is checked); each
contract rule becomes a named pandera check on that text, and each column a strict parse
to its curated type. A row passes when no quarantining rule fails on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pandera.polars as pa
import polars as pl

from schemas.contract import Column, Contract, OnFailure, Severity

LONDON = ZoneInfo("Europe/London")
BOOLEAN_TEXT = {"True": True, "False": False}


@dataclass(frozen=True)
class RowRule:
    """A check on one column, with what the contract says about it."""

    id: str
    column: str
    source_name: str
    severity: Severity
    on_failure: OnFailure
    clause: str
    reason: str  # what is wrong with a failing row, without its value


def _parsed(column: Column, expr: pl.Expr) -> pl.Expr:
    """The text in `expr` parsed strictly to the column's curated type (null when it fails)."""
    match column.logical_type:
        case "timestamp":
            return expr.str.strptime(
                pl.Datetime("us", "UTC"), column.timestamp_format, strict=False
            )
        case "date":
            return expr.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
        case "number":
            return expr.cast(pl.Float64, strict=False)
        case "integer":
            return expr.cast(pl.Int64, strict=False)
        case "boolean":
            return expr.replace_strict(BOOLEAN_TEXT, default=None, return_dtype=pl.Boolean)
        case _:
            return expr


def curated_dtype(column: Column) -> pl.DataType:
    return {
        "timestamp": pl.Datetime("us", "UTC"),
        "date": pl.Date(),
        "number": pl.Float64(),
        "integer": pl.Int64(),
        "boolean": pl.Boolean(),
    }.get(column.logical_type, pl.String())


def typed_columns(contract: Contract) -> list[pl.Expr]:
    """Expressions turning the delivered text columns into the curated, typed columns."""
    return [_parsed(c, pl.col(c.source_name)).alias(c.name) for c in contract.columns]


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The first instant of the month and of the next, London time, in UTC."""
    year, month = (int(x) for x in period.split("-"))
    start = datetime(year, month, 1, tzinfo=LONDON)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=LONDON)
    utc = ZoneInfo("UTC")
    return start.astimezone(utc), end.astimezone(utc)


def _clause(contract: Contract, column: Column, suffix: str) -> str:
    return f"{contract.path.name}: schema[{contract.name}].properties[{column.name}].{suffix}"


def compile_row_checks(contract: Contract, period: str) -> tuple[pa.DataFrameSchema, list[RowRule]]:
    """The pandera schema for one delivery period, and the rule behind each of its checks.

    Check names are rule ids, so a failure case maps straight back to its rule.
    Blank cells arrive as null: `required` is pandera's nullability.
    """
    start, end = period_bounds(period)
    rules: list[RowRule] = []
    columns: dict[str, pa.Column] = {}
    for col in contract.columns:
        src = col.source_name
        checks: list[pa.Check] = []

        def add(rule: RowRule, check_fn, checks: list[pa.Check] = checks) -> None:
            rules.append(rule)
            checks.append(pa.Check(check_fn, name=rule.id, error=rule.id))

        if col.required:
            rules.append(
                RowRule(
                    f"{col.name}.required", col.name, src, "major", "quarantine",
                    _clause(contract, col, "required"),
                    f"{src} is blank, but the agreement requires it",
                )
            )  # fmt: skip
        if col.logical_type != "string":
            fmt = f" (agreed form: {col.example})" if col.example else ""
            add(
                RowRule(
                    f"{col.name}.type", col.name, src, "major", "quarantine",
                    _clause(contract, col, "logicalType"),
                    f"{src} is not a valid {col.logical_type}{fmt}",
                ),
                lambda data, col=col: data.lazyframe.select(
                    pl.col(data.key).is_null() | _parsed(col, pl.col(data.key)).is_not_null()
                ),
            )  # fmt: skip
        if col.minimum is not None or col.maximum is not None:
            low = col.minimum if col.minimum is not None else float("-inf")
            high = col.maximum if col.maximum is not None else float("inf")
            add(
                RowRule(
                    f"{col.name}.range", col.name, src, "major", "quarantine",
                    _clause(contract, col, "logicalTypeOptions"),
                    f"{src} is outside the agreed range {low} to {high}",
                ),
                lambda data, col=col, low=low, high=high: data.lazyframe.select(
                    _parsed(col, pl.col(data.key)).is_between(low, high).fill_null(True)
                ),
            )  # fmt: skip
        for vr in col.value_rules:
            add(
                RowRule(
                    vr.name, col.name, src, vr.severity, vr.on_failure,
                    _clause(contract, col, f"quality[{vr.name}]"),
                    f"{src} is not one of the {len(vr.valid_values)} agreed values",
                ),
                lambda data, values=vr.valid_values: data.lazyframe.select(
                    pl.col(data.key).is_null() | pl.col(data.key).is_in(list(values))
                ),
            )  # fmt: skip
        if col.in_period_rule is not None:
            ipr = col.in_period_rule
            add(
                RowRule(
                    ipr.name, col.name, src, ipr.severity, ipr.on_failure,
                    _clause(contract, col, f"quality[{ipr.name}]"),
                    f"{src} is outside the month the delivery is for ({period}, London time)",
                ),
                lambda data, col=col: data.lazyframe.select(
                    _parsed(col, pl.col(data.key))
                    .is_between(pl.lit(start), pl.lit(end), closed="left")
                    .fill_null(True)
                ),
            )  # fmt: skip
        columns[src] = pa.Column(pl.String, nullable=not col.required, checks=checks)
    schema = pa.DataFrameSchema(columns, name=contract.name, strict=False, ordered=False)
    return schema, rules
