"""Wide deliveries: one value column per period (e.g. `202401`), curated as long rows.

The London Datastore publishes recorded crime with a count column per month, and each
release changes which months are there. The value columns are found by the contract's
pattern, checked like any other column, and unpivoted into (period, value) rows.
"""

from __future__ import annotations

import re

import pandera.polars as pa
import polars as pl

from schemas.contract import Contract
from schemas.row_checks import RowRule


def value_columns(contract: Contract, header: list[str]) -> list[str]:
    """The delivered columns that hold one period's value each, in file order."""
    if contract.layout is None:
        return []
    pattern = re.compile(contract.layout.value_column_pattern)
    return [h for h in header if pattern.fullmatch(h)]


def _valid_value(minimum: float | None) -> pl.Expr:
    value = pl.element()
    ok = value.str.contains(r"^-?\d+$")
    if minimum is not None:
        ok = ok & (value.cast(pl.Int64, strict=False) >= minimum)
    return ok


def value_rule(
    contract: Contract, schema: pa.DataFrameSchema, rules: list[RowRule], values: list[str]
) -> tuple[pa.DataFrameSchema, list[RowRule]]:
    """Add the rule every value column must meet: a whole number at or above the minimum."""
    layout = contract.layout
    low = f" of at least {layout.value_minimum:g}" if layout.value_minimum is not None else ""
    rule = RowRule(
        id=f"{layout.value_name}.type",
        column=layout.value_name,
        source_name=f"the {layout.period_name} columns",
        severity="major",
        on_failure="quarantine",
        clause=f"{contract.path.name}: schema[{contract.name}].customProperties.layout",
        reason=f"a {layout.period_name} column does not hold a whole number{low}",
    )

    def check(data):
        cols = [pl.col(v) for v in values]
        return data.lazyframe.select(
            pl.concat_list(cols)
            .list.eval(pl.element().is_null() | _valid_value(layout.value_minimum))
            .list.all()
        )

    columns = {**schema.columns}
    checks = [*schema.checks, pa.Check(check, name=rule.id, error=rule.id)]
    new_schema = pa.DataFrameSchema(
        columns, checks=checks, name=schema.name, strict=False, ordered=False
    )
    return new_schema, [*rules, rule]


def curated_long(contract: Contract, curated: pl.DataFrame, values: list[str]) -> pl.DataFrame:
    """Unpivot the value columns into one row per record and period."""
    layout = contract.layout
    index = [c for c in curated.columns if c not in values]
    return curated.unpivot(
        on=values, index=index, variable_name=layout.period_name, value_name=layout.value_name
    ).with_columns(
        (pl.col(layout.period_name) + "|01").str.strptime(
            pl.Date, layout.period_format + "|%d", strict=True
        ),
        pl.col(layout.value_name).cast(pl.Int64),
    )
