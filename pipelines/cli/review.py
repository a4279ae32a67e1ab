"""`datashare review [--output FILE]`: the breach review page for data-sharing leads."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.home.settings import Settings

DEFAULT_NAME = "breach-review.html"


def review_path(settings: Settings) -> Path:
    """Where `datashare review` writes the page by default."""
    return settings.home / "reports" / DEFAULT_NAME


def add_review_command(sub: argparse._SubParsersAction) -> None:
    """Add `review` to the `datashare` sub-commands."""
    review = sub.add_parser(
        "review",
        help="write the breach review page for leads (HTML, with each month's notice)",
        description="Write one self-contained HTML page of the breach register from "
        "warehouse.duckdb: every open breach by severity and age, what recurs, each "
        "breach's history, what was sent to the force, a chart per contract and month, "
        "and beside it the notice of each contract-month. It opens from the file, with no "
        "server; status changes stay with `datashare breaches`.",
    )
    review.add_argument(
        "--output", type=Path, help=f"the HTML file (default: <home>/reports/{DEFAULT_NAME})"
    )


def run_review_command(args: argparse.Namespace, settings: Settings) -> int:
    """Write the page (and the notices it links); print where."""
    from pipelines.reviews.breach_review import write_review

    output = args.output or review_path(settings)
    # Every change the page shows (a run, a status change, a notice sent) rebuilds the
    # warehouse it is read from: a page newer than the warehouse is current.
    current = (
        output.exists()
        and settings.warehouse.exists()
        and output.stat().st_mtime_ns > settings.warehouse.stat().st_mtime_ns
    )
    if getattr(args, "if_changed", False) and current:
        print(f"Breach review: {output} (current: nothing changed since it was written)")
        return 0
    written = write_review(settings, output)
    print(written.text())
    return 0
