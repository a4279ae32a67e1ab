"""A notice to the force: what was agreed, what arrived, what must be fixed.

Written so that a data-sharing lead can send it as it is. It names rules, clauses, counts
and row numbers, never the values in the rows: breach details are built without values,
and nothing from the quarantined records is read here.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.contract import Contract

ASK = {
    "rows quarantined": "Correct these rows at source and re-send the month as a whole.",
    "rows kept": "Correct these rows at source; the rows were published as sent.",
    "delivery rejected": "Re-send the month in the agreed layout.",
    "columns withheld": "Stop sending these columns: the agreement does not cover them.",
    "delivery published": "Improve completeness from the next delivery.",
}


@dataclass
class Notice:
    markdown: str
    html: str


def _ask(action: str) -> str:
    return ASK.get(action, "Please correct this at source.")


def _rows(entry: dict) -> str:
    sample = entry.get("sample_rows") or []
    if not sample:
        return "not row-specific (it concerns the delivery as a whole)"
    shown = ", ".join(str(n) for n in sample)
    more = entry["failing_rows"] - len(sample)
    return shown + (f" and {more:,} more" if more > 0 else "")


def _affected(entry: dict) -> str:
    if not entry["rows_checked"]:
        return "the whole file"
    return f"{entry['failing_rows']:,} of {entry['rows_checked']:,} ({entry['failing_share']:.2%})"


def build_notice(
    contract: Contract, period: str, deliveries: list[dict], entries: list[dict]
) -> Notice:
    """The notice for one contract and period, as Markdown and HTML."""
    agreement = contract.agreement
    owners = agreement.get("owners") or {}
    today = datetime.now(UTC).date().isoformat()
    open_entries = [e for e in entries if e["status"] not in ("resolved", "waived")]
    facts = [
        ("To", owners.get("provider", "the provider")),
        ("From", owners.get("recipient", "MOPAC")),
        ("Agreement", agreement.get("reference", contract.name)),
        ("Extract", f"{contract.name} (contract v{contract.version})"),
        ("Period", period),
        ("Date", today),
    ]
    md = [f"# Data-sharing notice: {contract.name}, {period}", ""]
    md += [f"- **{k}:** {v}" for k, v in facts]
    md += [
        "",
        "## What was agreed",
        "",
        " ".join(str(agreement.get("purpose") or contract.description).split()),
        "",
        f"A {contract.schedule.period} extract in the agreed layout of "
        f"{len(contract.columns)} columns, checked on arrival against the rules of the "
        "contract named in each item below.",
        "",
        "## What arrived",
        "",
        "| file | received | rows | outcome |",
        "|---|---|---|---|",
    ]
    for d in deliveries:
        received = d.get("received_at") or d.get("event_at")
        md.append(
            f"| {d.get('source_path') or d['delivery_id'][:12]} | "
            f"{received:%Y-%m-%d %H:%M} UTC | {d.get('rows_delivered') or 0:,} | "
            f"{d.get('event')} |"
        )
    md += ["", f"## What must be fixed ({len(open_entries)} item(s))", ""]
    if not open_entries:
        md.append("Nothing: the deliveries for this period met the agreement.")
    for n, e in enumerate(open_entries, 1):
        md += [
            f"### {n}. {e['rule']} ({e['severity']}) - {e['breach_id']}",
            "",
            f"- **Clause:** {e['clause']}",
            f"- **Found:** {e['detail']}",
            f"- **Rows affected:** {_affected(e)}; row numbers in the file: {_rows(e)}",
            f"- **What we did:** {e['action']}",
            f"- **Seen before:** in {e['recurrence']} period(s) so far",
            f"- **What we ask:** {_ask(e['action'])}",
            "",
        ]
    md += [
        "Row numbers count data rows from 1, after the header. "
        "Please reply to acknowledge this notice.",
        "",
    ]
    markdown = "\n".join(md)
    return Notice(markdown=markdown, html=_html(contract, period, facts, deliveries, open_entries))


def _html(contract, period, facts, deliveries, entries) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Data-sharing notice: {e(contract.name)}, {e(period)}</title>",
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2em .5em}"
        ".critical{color:#a00}.major{color:#a60}</style></head><body>",
        f"<h1>Data-sharing notice: {e(contract.name)}, {e(period)}</h1><dl>",
    ]
    parts += [f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in facts]
    parts += [
        "</dl><h2>What was agreed</h2>",
        f"<p>{e(' '.join(str(contract.agreement.get('purpose') or '').split()))}</p>",
        "<h2>What arrived</h2><table><tr><th>file</th><th>rows</th><th>outcome</th></tr>",
    ]
    for d in deliveries:
        parts.append(
            f"<tr><td>{e(str(d.get('source_path') or d['delivery_id'][:12]))}</td>"
            f"<td>{d.get('rows_delivered') or 0:,}</td><td>{e(str(d.get('event')))}</td></tr>"
        )
    parts.append(f"</table><h2>What must be fixed ({len(entries)} item(s))</h2><ol>")
    for b in entries:
        parts.append(
            f"<li><p><strong class='{e(b['severity'])}'>{e(b['rule'])} ({e(b['severity'])})"
            f"</strong> {e(b['breach_id'])}</p><ul>"
            f"<li>Clause: {e(b['clause'])}</li><li>Found: {e(b['detail'])}</li>"
            f"<li>Rows affected: {e(_affected(b))}; "
            f"row numbers: {e(_rows(b))}</li><li>What we did: {e(b['action'])}</li>"
            f"<li>What we ask: {e(_ask(b['action']))}</li></ul></li>"
        )
    parts.append("</ol><p>Row numbers count data rows from 1, after the header.</p></body></html>")
    return "".join(parts)
