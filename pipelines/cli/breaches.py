"""`datashare breaches ...`: the breach register from the command line."""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pipelines.governance.audit_log import record_export
from pipelines.governance.breach_notice import (
    NothingToSend,
    notice_from_warehouse,
    what_we_did,
    write_notice,
)
from pipelines.governance.breach_register import STATUSES, BreachChangeError, BreachRegister
from pipelines.home.settings import Settings
from pipelines.lake.store import Lake, open_lake
from pipelines.warehouse.catalog import build_warehouse, connect
from schemas.contract import load_contracts

# The listing's columns, in order; the detail (the longest, and whole in `show`) is the
# one cut to fit a terminal.
LIST_COLUMNS = ("breach_id", "contract", "period", "severity", "status", "delivery_status",
                "clause_number", "rule", "failing_rows", "recurrence", "detail")  # fmt: skip
LIST_HEADINGS = {"failing_rows": "rows failing", "recurrence": "periods",
                 "clause_number": "clause", "delivery_status": "delivery"}  # fmt: skip
SHRINKABLE = ("detail", "rule", "contract")  # cut in this order, down to their minimum
MINIMUM = {"detail": 24, "rule": 16, "contract": 10}
# What csv and json give: every field of a breach but its history (json has that too).
# clause_number is the clause as `datashare contracts show` numbers it (and notices cite
# it); clause_location is where the contract file states the rule. what_we_did is what
# became of the delivery, from its status now (as the notice says it).
EXPORT_FIELDS = ("breach_id", "contract", "contract_version", "period", "delivery_id",
                 "source_path", "delivery_status", "rule", "clause_number", "clause_title",
                 "clause_location", "severity", "action", "what_we_did", "status",
                 "updated_at", "failing_rows", "rows_checked", "failing_share", "sample_rows",
                 "recurrence", "raised_at", "later_delivery_id", "later_delivery_path",
                 "later_published_at", "detail")  # fmt: skip


def _cell(value: object) -> str:
    return " ".join(str("" if value is None else value).split())


def table(rows: list[dict], columns: Sequence[str], width: int | None = None) -> str:
    """Rows as a plain-text table, each column as wide as its content.

    With `width` (a terminal's), the detail, then the rule, then the contract are cut
    (with "…") until the table fits; headings and ids are never cut. Without it (output
    to a pipe or a file), nothing is cut.
    """
    headings = [LIST_HEADINGS.get(c, c) for c in columns]
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headings)]
    if width is not None:
        for name in SHRINKABLE:
            if name not in columns:
                continue
            i = columns.index(name)
            over = sum(widths) + 2 * (len(widths) - 1) - width
            if over <= 0:
                break
            floor = max(len(headings[i]), MINIMUM[name])
            widths[i] = max(floor, widths[i] - over)

    def line(values: list[str]) -> str:
        out = []
        for text, w in zip(values, widths, strict=True):
            out.append(text if len(text) <= w else text[: w - 1] + "…")
        return "  ".join(t.ljust(w) for t, w in zip(out, widths, strict=True)).rstrip()

    return "\n".join([line(headings), line(["-" * w for w in widths])] + [line(c) for c in cells])


def _terminal_width() -> int | None:
    """The terminal's width when output goes to one; None for a pipe or a file."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def _plain(value: object) -> object:
    """A value JSON can carry (times as ISO 8601)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _exported(entry: dict) -> dict:
    """A register entry with the fields only exports name."""
    return {**entry, "clause_location": entry.get("clause"), "what_we_did": what_we_did(entry)}


def _print_listing(rows: list[dict], fmt: str) -> None:
    rows = [_exported(r) for r in rows]
    if fmt == "table":  # what became of the delivery; a late month has none
        rows = [{**r, "delivery_status": r.get("delivery_status") or "none"} for r in rows]
    if fmt == "json":
        fields = (*EXPORT_FIELDS, "history")
        print(json.dumps([{f: _plain(r.get(f)) for f in fields} for r in rows], indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(EXPORT_FIELDS)
        for r in rows:
            values = {**r, "sample_rows": " ".join(str(n) for n in r.get("sample_rows") or [])}
            writer.writerow([_plain(values.get(f)) for f in EXPORT_FIELDS])
    else:
        print(table(rows, LIST_COLUMNS, _terminal_width()) if rows else "No breaches match.")
        print(f"\n{len(rows)} breach(es).")


def add_breaches_commands(sub: argparse._SubParsersAction) -> None:
    breaches = sub.add_parser("breaches", help="the breach register: list, show, notify, ...")
    actions = breaches.add_subparsers(dest="breaches_command", required=True)
    listing = actions.add_parser("list", help="breaches, filtered")
    listing.add_argument("--contract")
    listing.add_argument("--period", help="YYYY-MM")
    listing.add_argument("--severity", choices=["critical", "major", "minor"])
    listing.add_argument(
        "--status",
        choices=STATUSES,
        help="open, notified or acknowledged are still to act on; superseded ones closed on "
        "their own when the month was re-sent and the re-send published",
    )
    listing.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="table (default; cut to fit a terminal, never when piped), or every field as "
        "csv or json",
    )
    show = actions.add_parser("show", help="one breach with its history")
    show.add_argument("breach_id")
    for action, words in [
        ("notify", "mark as sent to the force"),
        ("ack", "mark as acknowledged by the force"),
        ("resolve", "mark as resolved"),
        ("waive", "waive (a --note saying why is required)"),
        ("reopen", "reopen a resolved or waived breach (--note required)"),
    ]:
        step = actions.add_parser(action, help=words)
        step.add_argument("breach_ids", nargs="+")
        step.add_argument("--note", default="")
        step.add_argument("--by", default=getpass.getuser(), help="who (default: you)")
    notice = actions.add_parser("notice", help="write the notice to the force (Markdown, HTML)")
    notice.add_argument("--contract", required=True)
    notice.add_argument("--period", required=True)
    notice.add_argument("--output-dir", type=Path, help="default: <home>/notices")


def run_breaches_command(args: argparse.Namespace, settings: Settings) -> int:
    lake = open_lake(settings.lake)
    register = BreachRegister(lake)
    command = args.breaches_command
    try:
        if command == "list":
            rows = register.entries(args.contract, args.period, args.severity, args.status)
            _print_listing(rows, args.format)
        elif command == "show":
            _show(register.get(args.breach_id))
        elif command == "notice":
            return _notice(args, settings, lake, register)
        else:
            for breach_id in args.breach_ids:
                entry = register.change(breach_id, command, args.by, args.note)
                print(f"{entry['breach_id']}: now {entry['status']} (by {args.by})")
            # The analysts' catalog shows the new status at once.
            build_warehouse(lake, load_contracts(), settings.warehouse)
    except BreachChangeError as exc:
        print(f"error: {exc}")
        return 1
    return 0


def _show(entry: dict) -> None:
    entry = _exported(entry)
    clause = entry.get("clause_number")
    shown = {
        **entry,
        "clause": f"{clause} ({entry.get('clause_title')})" if clause else None,
        "delivery_status": entry.get("delivery_status") or "none (a breach of the schedule)",
    }
    fields = [
        "breach_id", "status", "contract", "contract_version", "period", "delivery_id",
        "source_path", "delivery_status", "rule", "clause", "clause_location", "severity",
        "action", "what_we_did", "failing_rows", "rows_checked", "recurrence", "sample_rows",
        "detail",
    ]  # fmt: skip
    for name in fields:
        print(f"{name:>16}: {shown.get(name)}")
    # The same steps `--format json` gives as `history`, the raising first.
    print("         history:")
    for event in entry["history"]:
        print(
            f"{'':>18}{event['event_at']:%Y-%m-%d %H:%M} "
            + (
                f"open (raised by {event['actor']})"
                if event["step"] == "raised"
                else f"{event['status']} by {event['actor']}"
                + (f": {event['note']}" if event["note"] else "")
            )
        )


def _notice(args, settings: Settings, lake: Lake, register: BreachRegister) -> int:
    contracts = load_contracts()
    if args.contract not in contracts:
        print(f"error: no contract {args.contract!r}; known: {', '.join(contracts)}")
        return 1
    build_warehouse(lake, contracts, settings.warehouse)  # every breach the lake holds now
    try:
        with connect(settings.warehouse) as con:
            notice = notice_from_warehouse(con, contracts[args.contract], args.period)
    except NothingToSend as nothing:
        print(f"error: {nothing}")
        return 1
    folder = args.output_dir or settings.home / "notices"
    md, page = write_notice(notice, folder, args.contract, args.period)
    record_export(
        lake,
        args.contract,
        args.period,
        f"notice {md.name} ({len(notice.breach_ids)} breach(es))",
        getpass.getuser(),
        "notice to the force under the data-sharing agreement",
    )
    print(notice.markdown)
    print(f"Written: {md} and {page}")
    if notice.breach_ids:
        ids = " ".join(notice.breach_ids)
        print(f"Once it is sent: datashare breaches notify {ids} --note 'notice of <date>'")
    build_warehouse(lake, contracts, settings.warehouse)  # the export shows in the audit log
    return 0
