"""`datashare explain MART [--month M]`: from a mart's figures down to the delivered files.

Reads `governance.mart_sources` (`pipelines/lake/provenance.py`) in warehouse.duckdb: for the
mart's latest computation, each month, each contract it read and each delivery whose curated
rows fed it, with the file's name, SHA-256, contract version, when it was received and
published, the rows used, and the earlier delivery it restated.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from typing import Any

from pipelines.home.settings import Settings

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-\d{2})?$")


def _month(text: str) -> str:
    if not MONTH.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a month such as 2022-06 (YYYY-MM)")
    return text[:7]


def add_explain_command(sub: Any) -> None:
    """Add `explain` to the `datashare` sub-commands."""
    explain = sub.add_parser(
        "explain",
        help="which delivered files an oversight mart's figures come from",
        description="Print the chain from an oversight mart's figures down to the files: "
        "its months, the contracts it reads, and the deliveries whose curated rows fed "
        "each month (file name, SHA-256, contract version, received, rows used, and the "
        "earlier delivery a restatement replaced). From governance.mart_sources.",
    )
    explain.add_argument("mart", help="the mart, e.g. stop_search_outcomes")
    explain.add_argument("--month", type=_month, help="only this month (YYYY-MM)")


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "not recorded"


def explain_text(rows: list[dict], mart: str, title: str, month: str | None) -> str:
    """The chain for `rows` (governance.mart_sources rows of one mart), as text."""
    lines = [f"oversight.{mart}: {title}"]
    computed = rows[0]["computed_at"]
    months = sorted({r["period"] for r in rows})
    deliveries = {r["delivery_id"] for r in rows}
    contracts = sorted({r["contract"] for r in rows})
    scope = f"{len(months)} month(s), {months[0]} to {months[-1]}"
    if month:
        scope = (
            f"month {month}"
            if months == [month]
            else f"the 12 months to {month} ({len(months)} with deliveries read, "
            f"{months[0]} to {months[-1]})"
        )
    lines.append(
        f"Computed {_when(computed)}; {scope}: {len(deliveries)} delivery(ies) of "
        f"{len(contracts)} contract(s) ({', '.join(contracts)})."
    )
    for period in months:
        lines.append("")
        lines.append(f"{period}")
        for contract in contracts:
            here = [r for r in rows if r["period"] == period and r["contract"] == contract]
            if not here:
                continue
            lines.append(f"  {contract}")
            for r in here:
                name = r["file_name"] or "(file not recorded)"
                lines.append(f"    delivery {r['delivery_id'][:12]}  {name}")
                lines.append(f"      sha256 {r['sha256']}")
                lines.append(
                    f"      contract version {r['contract_version'] or 'not recorded'}, "
                    f"received {_when(r['received_at'])}, published {_when(r['published_at'])}, "
                    f"{r['rows_used']:,} row(s) used"
                )
                if r["restated_delivery_id"]:
                    lines.append(
                        f"      restates delivery {r['restated_delivery_id'][:12]} "
                        f"({r['restated_file_name'] or 'file not recorded'}): this month was "
                        "sent again, and its figures may differ from a pack before "
                        f"{_when(r['published_at'])}"
                    )
    return "\n".join(lines)


def run_explain_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the chain for `args.mart` (and `args.month`); 1 when nothing is recorded."""
    from pipelines.oversight.mart_runner import MARTS
    from pipelines.warehouse.catalog import connect

    if args.mart not in MARTS:
        print(f"No mart {args.mart!r}. The marts: {', '.join(MARTS)}")
        return 2
    with connect(settings.warehouse) as con:
        views = {
            name
            for (name,) in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE schema_name = 'governance'"
            ).fetchall()
        }
        if "mart_sources" not in views:
            print(
                "No provenance in this warehouse yet: it was built by an earlier version. "
                "Run `datashare report --refresh` (or `datashare run`) to compute the marts "
                "and record their sources."
            )
            return 1
        # A mart with 12-month windows: the month's 12-month figures read the 11 before it.
        windowed = "time_window" in {c.name for c in MARTS[args.mart].output_columns}
        first = _months_before(args.month, 11) if args.month and windowed else args.month
        result = con.execute(
            "SELECT * FROM governance.mart_sources WHERE mart = ? "
            "AND (? IS NULL OR period BETWEEN ? AND ?) ORDER BY period, contract, received_at",
            [args.mart, args.month, first, args.month],
        )
        columns = [d[0] for d in result.description]
        rows = [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
        recorded = [
            p
            for (p,) in con.execute(
                "SELECT DISTINCT period FROM governance.mart_sources WHERE mart = ? ORDER BY 1",
                [args.mart],
            ).fetchall()
        ]
    if not rows:
        if args.month and recorded:
            print(
                f"oversight.{args.mart} read no delivery for {args.month}; its months: "
                f"{recorded[0]} to {recorded[-1]}."
            )
        else:
            print(
                f"oversight.{args.mart} has no recorded sources: it has not been computed "
                "since provenance was kept, or the curated tables it reads have no data."
            )
        return 1
    none_that_month = args.month and not any(r["period"] == args.month for r in rows)
    if none_that_month and not windowed:
        print(f"oversight.{args.mart} read no delivery for {args.month}.")
        return 1
    print(explain_text(rows, args.mart, MARTS[args.mart].title, args.month))
    if args.month and windowed:
        print(
            f"\n{args.month}'s figures for the month read {args.month} only"
            + (" (no delivery of it was read)" if none_that_month else "")
            + f"; its figures for the 12 months to {args.month} read every month listed."
        )
    return 0


def _months_before(month: str, n: int) -> str:
    """The month `n` months before `month` (YYYY-MM)."""
    total = int(month[:4]) * 12 + int(month[5:7]) - 1 - n
    return f"{total // 12:04d}-{total % 12 + 1:02d}"
