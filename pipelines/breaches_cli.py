"""`datashare breaches ...`: the breach register from the command line."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path

from pipelines.audit_log import record_export
from pipelines.breach_notice import build_notice
from pipelines.breach_register import STATUSES, BreachChangeError, BreachRegister
from pipelines.lake import Lake, open_lake
from pipelines.register import Register
from pipelines.settings import Settings
from pipelines.warehouse import build_warehouse
from schemas.contract import load_contracts

LIST_COLUMNS = [
    ("breach_id", 14), ("contract", 16), ("period", 7), ("severity", 8), ("status", 12),
    ("rule", 34), ("failing_rows", 9), ("recurrence", 5), ("detail", 60),
]  # fmt: skip


def _table(rows: list[dict], columns: list[tuple[str, int]]) -> str:
    def cell(value, width: int) -> str:
        text = " ".join(str("" if value is None else value).split())
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = ["  ".join(name[:w].ljust(w) for name, w in columns)]
    lines.append("  ".join("-" * w for _, w in columns))
    lines += ["  ".join(cell(r.get(n), w).ljust(w) for n, w in columns) for r in rows]
    return "\n".join(lines)


def add_breaches_commands(sub: argparse._SubParsersAction) -> None:
    breaches = sub.add_parser("breaches", help="the breach register: list, show, notify, ...")
    actions = breaches.add_subparsers(dest="breaches_command", required=True)
    listing = actions.add_parser("list", help="breaches, filtered")
    listing.add_argument("--contract")
    listing.add_argument("--period", help="YYYY-MM")
    listing.add_argument("--severity", choices=["critical", "major", "minor"])
    listing.add_argument("--status", choices=STATUSES)
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
            print(_table(rows, LIST_COLUMNS) if rows else "No breaches match.")
            print(f"\n{len(rows)} breach(es).")
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
    fields = [
        "breach_id", "status", "contract", "contract_version", "period", "delivery_id",
        "source_path", "delivery_status", "rule", "clause", "severity", "action",
        "failing_rows", "rows_checked", "recurrence", "sample_rows", "detail",
    ]  # fmt: skip
    for name in fields:
        print(f"{name:>16}: {entry.get(name)}")
    print("         history:")
    print(f"{'':>18}{entry['raised_at']:%Y-%m-%d %H:%M} open (raised by validation)")
    for event in entry["history"]:
        print(
            f"{'':>18}{event['event_at']:%Y-%m-%d %H:%M} {event['status']} by {event['actor']}"
            + (f": {event['note']}" if event["note"] else "")
        )


def _notice(args, settings: Settings, lake: Lake, register: BreachRegister) -> int:
    contracts = load_contracts()
    if args.contract not in contracts:
        print(f"error: no contract {args.contract!r}; known: {', '.join(contracts)}")
        return 1
    deliveries = [
        d for d in Register(lake).deliveries(args.contract).values() if d["period"] == args.period
    ]
    if not deliveries:
        print(f"error: nothing was delivered for {args.contract} {args.period}")
        return 1
    for d in deliveries:
        d["received_at"] = min(
            e["event_at"]
            for e in Register(lake).events(args.contract)
            if e["delivery_id"] == d["delivery_id"]
        )
    current = {d["delivery_id"] for d in deliveries if d["event"] != "superseded"}
    entries = [
        e for e in register.entries(args.contract, args.period) if e["delivery_id"] in current
    ]
    notice = build_notice(contracts[args.contract], args.period, deliveries, entries)
    folder = args.output_dir or settings.home / "notices"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"notice-{args.contract}-{args.period}"
    stem.with_suffix(".md").write_text(notice.markdown, encoding="utf-8")
    stem.with_suffix(".html").write_text(notice.html, encoding="utf-8")
    record_export(
        lake,
        args.contract,
        args.period,
        f"notice {stem.with_suffix('.md').name} ({len(entries)} breach(es))",
        getpass.getuser(),
        "notice to the force under the data-sharing agreement",
    )
    print(notice.markdown)
    print(f"Written: {stem.with_suffix('.md')} and {stem.with_suffix('.html')}")
    build_warehouse(lake, contracts, settings.warehouse)  # the export shows in the audit log
    return 0
