"""Which rows of a batch break which of the contract's rules, in one polars query.

`schemas.row_checks` compiles a contract into a pandera schema: a column per agreed column
(its nullability is the `required` rule) and named checks, each written as
`data.lazyframe.select(expression)`. pandera's `validate` runs every check as its own query
and collects each one twice (once to see whether it passed, once for its failure cases),
about a quarter of the engine's time on a large delivery. Here the same checks are taken as
expressions, once per delivery, and a batch is judged by one select, in which polars also
parses each typed column once for all the checks that read it.

The result is the one pandera gives (the tests compare them on real and generated rows):
a check's null counts as a pass (pandera's `ignore_na`), and a check with several output
columns passes only where all of them do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from weakref import WeakKeyDictionary

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from schemas.row_checks import RowRule

EMPTY_RULES = pl.lit([], dtype=pl.List(pl.String))
VERDICT = "\x1fverdict"  # the rules' struct in the query; no agreed column is named so
RULE, TYPED = "\x1frule ", "\x1ftyped "  # `judged_columns`' prefixes (no agreed name has \x1f)


class _Captured:
    """Stands in for a batch's LazyFrame when a compiled check is called: a row check is
    written `data.lazyframe.select(expr)`, so calling it with this gives back `expr`."""

    def select(self, *exprs: pl.Expr) -> tuple[pl.Expr, ...]:
        return exprs


@dataclass(frozen=True)
class RowChecks:
    """Every rule of one delivery's schema as an expression true where a row passes it."""

    passes: dict[str, pl.Expr]  # rule id -> expression, in rule-id order
    quarantining: frozenset[str]


def row_checks(schema: pa.DataFrameSchema, rules: list[RowRule]) -> RowChecks:
    """The compiled schema's checks as expressions: a blank cell in a required column breaks
    its `.required` rule, and each named check is its rule (check names are rule ids)."""
    by_source = {r.source_name: r.id for r in rules if r.id.endswith(".required")}
    found: dict[str, pl.Expr] = {}
    for name, column in schema.columns.items():
        if not column.nullable:
            found[by_source[name]] = pl.col(name).is_not_null()
        for check in column.checks:
            found[check.name] = _passes(check, name)
    for check in schema.checks:
        found[check.name] = _passes(check, "*")
    missing = {r.id for r in rules} - set(found)
    if missing:
        raise ValueError(f"rules with no check in the schema: {sorted(missing)}")
    return RowChecks(
        passes={rule_id: found[rule_id] for rule_id in sorted(found)},
        quarantining=frozenset(r.id for r in rules if r.on_failure == "quarantine"),
    )


def _passes(check: pa.Check, key: str) -> pl.Expr:
    if check._check_kwargs:
        return _expression(partial(check._check_fn, **check._check_kwargs), key, check.name)
    # `schemas.row_checks` makes a column's period-free checks once per process, so the
    # months of a backfill share their functions: each one's expression is built once,
    # kept for as long as its function lives (a delivery's own checks, such as its
    # in-period bounds, go with it).
    kept = _EXPRESSIONS.setdefault(check._check_fn, {})
    if key not in kept:
        kept[key] = _expression(check._check_fn, key, check.name)
    return kept[key]


_EXPRESSIONS: WeakKeyDictionary[Callable, dict[str, pl.Expr]] = WeakKeyDictionary()


def _expression(check_fn: Callable, key: str, name: str) -> pl.Expr:
    """The expression, true where a row passes, that the check `name` selects."""
    captured = check_fn(PolarsData(_Captured(), key))
    if not isinstance(captured, tuple) or not all(isinstance(e, pl.Expr) for e in captured):
        raise TypeError(
            f"row check {name!r} must be written as data.lazyframe.select(expr) "
            "so that a batch is judged in one query"
        )
    ok = pl.all_horizontal(captured) if len(captured) > 1 else captured[0]
    return ok | ok.is_null()  # pandera's ignore_na: a null result is not a failure


def judged(
    frame: pl.DataFrame, checks: RowChecks, typed: list[pl.Expr] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One boolean column per rule (true where the row passes it), and the `typed` columns
    of every row, from one query: polars parses a typed column once for all the checks
    that read it and for its curated value."""
    verdict, typed_rows, _ = judged_with(frame, checks, typed)
    return verdict, typed_rows


def judged_with(
    frame: pl.DataFrame,
    checks: RowChecks,
    typed: list[pl.Expr] | None = None,
    also: list[pl.LazyFrame] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, list[pl.DataFrame]]:
    """`judged`, and the other queries `also` over the same batch (such as its counts for
    the delivery's profile), collected together: polars runs them side by side in one call
    to its thread pool, where one call each would wait for the pool each time (on a busy
    machine, most of a small query's time)."""
    also = list(also or [])
    if not checks.passes:  # a contract with no row rules: every row passes
        typed_rows, *rest = pl.collect_all([frame.lazy().select(typed or []), *also])
        return pl.DataFrame(), typed_rows, rest
    query = frame.lazy().select(
        pl.struct(ok.alias(rule_id) for rule_id, ok in checks.passes.items()).alias(VERDICT),
        *(typed or []),
    )
    out, *rest = pl.collect_all([query, *also])
    return out[VERDICT].struct.unnest(), out.drop(VERDICT), rest


def judged_columns(
    frame: pl.DataFrame,
    checks: RowChecks,
    typed: dict[str, pl.Expr],
    also: list[pl.LazyFrame] | None = None,
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """`frame` with, beside its own columns, one boolean column per rule (named
    `RULE + rule id`, true where the row passes it) and each of the `typed` columns (named
    `TYPED + name`), from one query, and the queries `also` collected with it. Prefixed, so
    that no rule or curated name can meet a delivered one; the batch's later queries read
    them all from this one frame."""
    query = frame.lazy().with_columns(
        *(ok.alias(RULE + rule_id) for rule_id, ok in checks.passes.items()),
        *(expr.alias(TYPED + name) for name, expr in typed.items()),
    )
    out, *rest = pl.collect_all([query, *(also or [])])
    return out, rest


def broken_rules(verdict: pl.DataFrame) -> pl.Expr:
    """Per row, the ids of the rules it breaks, sorted (empty when it breaks none)."""
    return rules_broken(verdict.columns, "")


def rules_broken(rule_ids: list[str], prefix: str = RULE) -> pl.Expr:
    """`broken_rules` over columns named `prefix + rule id` (as `judged_columns` names
    them), for `rule_ids` in sorted order."""
    if not rule_ids:
        return EMPTY_RULES
    return pl.concat_list(
        pl.when(~pl.col(prefix + rule_id)).then(pl.lit(rule_id)) for rule_id in rule_ids
    ).list.drop_nulls()


def quarantined_expr(checks: RowChecks) -> pl.Expr:
    """True where a row of `judged_columns`' frame breaks a rule whose failing rows are
    quarantined."""
    names = [RULE + rule_id for rule_id in checks.passes if rule_id in checks.quarantining]
    if not names:
        return pl.lit(False)
    return ~pl.all_horizontal(names)


def quarantined_rows(verdict: pl.DataFrame, checks: RowChecks, height: int) -> pl.Series:
    """True for each of the batch's `height` rows that breaks a rule whose failing rows are
    quarantined."""
    names = [name for name in verdict.columns if name in checks.quarantining]
    if not names:
        return pl.repeat(False, height, dtype=pl.Boolean, eager=True).alias("quarantined")
    return verdict.select(~pl.all_horizontal(names)).to_series().alias("quarantined")
