"""`datashare agreement review [CONTRACT] [--from P --to P]`: the agreement review pages.

Kept apart from pipelines/cli/main.py so the main CLI only needs `add_agreement_command` and
`run_agreement_command`; the engine is pipelines/reviews/ (agreement_review.py, agreement_page.py).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from pipelines.home.settings import Settings

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _period(text: str) -> str:
    if not PERIOD.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a period such as 2025-04 (YYYY-MM)")
    return text


def add_agreement_command(sub: Any) -> None:
    """Add `agreement` (with `review`) to the `datashare` sub-commands."""
    agreement = sub.add_parser(
        "agreement",
        help="review a data-sharing agreement: is it being honoured?",
        description="Reviews of the data-sharing agreements, from warehouse.duckdb.",
    )
    commands = agreement.add_subparsers(dest="agreement_command", required=True)
    review = commands.add_parser(
        "review",
        help="write the review of one agreement (or all) as HTML to print and Markdown",
        description="Write, for one contract (default: every contract) over a window of its "
        "periods (default: the last 12 that have ended), a page fit to print and its "
        "Markdown twin, <home>/reports/agreement-review-<contract>.html and .md: "
        "deliveries due, on time, late and never received; periods right first time; "
        "breaches by rule and severity, the rules failing again and again, how they were "
        "answered against the agreed response days, what is open now by age; over-sharing; "
        "personal data and retention (checked in the lake); rows per period against the "
        "usual volume; the contract versions in force and what changed; and points for "
        "the review meeting, each linked to its evidence.",
    )
    review.add_argument("contract", nargs="?", help="contract name (default: every contract)")
    review.add_argument("--from", dest="first", type=_period, help="first period (YYYY-MM)")
    review.add_argument("--to", dest="last", type=_period, help="last period (YYYY-MM)")


def run_agreement_command(args: argparse.Namespace, settings: Settings) -> int:
    """Write the review(s) asked for; print where, with the points for the meeting."""
    from pipelines.lake.store import open_lake
    from pipelines.reviews.agreement_page import ensure_current, write_agreement_review
    from pipelines.reviews.agreement_review import review_tables
    from schemas.contract import load_contracts

    contracts = load_contracts()
    if args.contract and args.contract not in contracts:
        print(
            f"error: no contract named {args.contract!r}; the contracts are "
            f"{', '.join(sorted(contracts))}.",
            file=sys.stderr,
        )
        return 2
    if args.first and args.last and args.first > args.last:
        print(f"error: --from {args.first} comes after --to {args.last}.", file=sys.stderr)
        return 2
    lake = open_lake(settings.lake)
    # No warehouse yet, or one an earlier version built: rebuilt from the lake first.
    ensure_current(settings.warehouse, lake, contracts)
    names = [args.contract] if args.contract else sorted(contracts)
    # The governance views every review reads, read once for the command, not per contract.
    with review_tables(settings.warehouse) as tables:
        for name in names:
            review, html, md = write_agreement_review(
                settings.warehouse, lake, contracts[name], settings.home,
                first=args.first, last=args.last, tables=tables,
            )  # fmt: skip
            print(
                f"Agreement review of {name}, {review.first} to {review.last}: {html} "
                f"(and {md.name})"
            )
            for point in review.points:
                print(f"  - {point.text}")
    return 0
