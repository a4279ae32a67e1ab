"""The breach review page: a month's review for a data-sharing lead, from one file.

`write_review(settings, output)` reads `governance.breach_register`, `breach_history`,
`deliveries` and `exports` in warehouse.duckdb (read-only) and writes one self-contained
HTML page: every open breach across contracts by severity and age, the rules broken month
after month, each breach's status and history, what was sent to the force and when, a
chart of breaches per contract and month (the oversight pack's inline SVG, nothing
fetched), and each contract-month's notice one click away (written beside the page as
drafts, by the same code as `datashare breaches notice`, which is what records a notice
as sent). Status changes stay with the CLI, recorded in the audit log: the page shows the
exact command for each. Breach details are built without the values of classified fields;
everything from a delivery is escaped.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.governance.breach_notice import (
    NothingToSend,
    notice_from_warehouse,
    notice_stem,
    what_we_did,
    write_notice,
)
from pipelines.governance.breach_register import TRANSITIONS
from pipelines.governance.views import OPEN_STATUSES
from pipelines.home.settings import Settings
from pipelines.warehouse.catalog import connect, has_breach_views
from schemas.contract import load_contracts
from schemas.contract_page import agreement_title, contract_document
from schemas.period_words import date_words, period_words, time_words

SEVERITY_ORDER = ("critical", "major", "minor")
OPEN = OPEN_STATUSES  # superseded, resolved and waived are closed
NOTICES_FOLDER = "notices"  # beside the page: links work from the file alone

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif;
       color: #1d1d1d; margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { margin-top: 32px; font-size: 19px;
     border-bottom: 2px solid #0b4f8a; padding-bottom: 3px; }
.note { color: #555; font-size: 12.5px; }
.summary { display: flex; gap: 14px; flex-wrap: wrap; margin: 14px 0; }
.summary div { border: 1px solid #d5d9de; border-radius: 4px; padding: 8px 14px; }
.summary strong { font-size: 22px; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid #dde1e5; padding: 5px 7px; text-align: left;
         vertical-align: top; }
th { background: #eef2f6; } tr.breach td { border-bottom: none; }
tr.commands td { font-size: 12px; color: #444; padding-top: 0; }
tr.commands code { display: inline-block; margin: 1px 6px 1px 0; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.critical { color: #9b0000; font-weight: 600; } .major { color: #8a4b00; font-weight: 600; }
.minor { color: #444; }
code { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12px;
       background: #f1f3f5; padding: 1px 4px; user-select: all; }
ol.history { margin: 4px 0; padding-left: 16px; font-size: 12px; color: #444; }
.screen-only { background: #eef5fb; padding: 6px 12px; border-left: 4px solid #0b4f8a; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { background: #fff; font-size: 10pt; } main { max-width: none; padding: 0; }
  .screen-only { display: none; } a { color: #000; text-decoration: none; }
  tr { break-inside: avoid; } h2 { break-after: avoid; }
}
"""


@dataclass
class ReviewWritten:
    """What `write_review` wrote."""

    page: Path
    notices: list[Path]  # each letter twice: HTML and Markdown
    open_breaches: int

    @property
    def letters(self) -> int:
        """Notices written: one letter per contract-month, whatever its formats."""
        return len({path.with_suffix("") for path in self.notices})

    def text(self) -> str:
        return (
            f"Breach review: {self.page}\n"
            f"  {self.open_breaches:,} open breach(es); {self.letters:,} notice letter(s) "
            f"(one per contract-month with an open breach, each as HTML and Markdown) "
            f"beside it in {self.page.parent / NOTICES_FOLDER}"
        )


def _dicts(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def read_register(con: duckdb.DuckDBPyConnection) -> dict[str, list[dict]]:
    """The governance rows the page shows (nothing of the curated or quarantined rows)."""
    return {
        "breaches": _dicts(
            con, "SELECT * FROM governance.breach_register ORDER BY contract, period, rule"
        ),
        "events": _dicts(con, "SELECT * FROM governance.breach_history ORDER BY event_at"),
        "exports": _dicts(con, "SELECT * FROM governance.exports ORDER BY exported_at DESC"),
    }


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _command(home: Path, *words: str) -> str:
    return "datashare --home " + " ".join([str(home), *words])


def _actions(home: Path, breach: dict) -> list[str]:
    """The CLI commands that move this breach on from its status (the audit log records
    each)."""
    out = []
    for action, (allowed_from, _) in TRANSITIONS.items():
        if breach["status"] in allowed_from:
            note = " --note 'why'" if action in ("waive", "reopen") else ""
            out.append(_command(home, "breaches", action, breach["breach_id"]) + note)
    return out


def _chart(breaches: list[dict], titles: dict[str, str]) -> str:
    """Breaches raised per contract and month, drawn as the oversight pack draws trends."""
    from pipelines.oversight.charts import fmt_count, line_chart

    periods = sorted({b["period"] for b in breaches})
    if not periods:
        return "<p class=note>No breach has been raised yet.</p>"
    first, last = (dt.date(int(p[:4]), int(p[5:]), 1) for p in (periods[0], periods[-1]))
    months = []
    day = first
    while day <= last:
        months.append(day)
        day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for b in breaches:
        counts[b["contract"]][b["period"]] += 1
    peak = max((n for per in counts.values() for n in per.values()), default=1)
    series = [
        (titles.get(c, c), [counts[c].get(f"{m:%Y-%m}", 0) for m in months]) for c in sorted(counts)
    ]
    return line_chart(
        "Breaches raised per contract and month",
        months,
        series,
        value_format=fmt_count,
        axis_label="breaches",
        subtitle="Every breach the register holds, by the month the delivery is for, "
        "whatever its status now.",
        plot_h=200,
        y_max=next(top for top in (5, 10, 20, 50, 100, 200, 500, 10**9) if top >= peak),
    )


def render_review(
    data: dict[str, list[dict]],
    home: Path,
    notices: dict[tuple[str, str], str],
    generated: dt.datetime,
) -> str:
    """The page for the register rows in `data`; `notices` links each contract-month to its
    notice (relative to the page)."""
    contracts = load_contracts()
    titles = {name: agreement_title(contract_document(c.path)) for name, c in contracts.items()}
    schedule = {name: c.schedule.period for name, c in contracts.items()}

    def when(b: dict) -> str:
        return period_words(b["period"], schedule.get(b["contract"], "monthly"))

    breaches = data["breaches"]
    open_ = [b for b in breaches if b["status"] in OPEN]
    today = generated.date()
    rank = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    open_.sort(key=lambda b: (rank.get(b["severity"], 3), b["raised_at"]))
    history: dict[str, list[dict]] = defaultdict(list)
    for event in data["events"]:
        history[event["breach_id"]].append(event)
    by_severity = {s: sum(b["severity"] == s for b in open_) for s in SEVERITY_ORDER}
    superseded = sum(b["status"] == "superseded" for b in breaches)

    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Breach review</title><style>{CSS}</style></head><body><main>",
        "<header><h1>Breach review</h1>",
        "<p>Every breach of the data-sharing agreements that is still open, what recurs, "
        "what was sent to the force, and the notice for each month.</p>",
        f"<p class=note>Generated {_e(time_words(generated))} from warehouse.duckdb in "
        f"{_e(home)}. Status changes are made with the commands shown (each is recorded in "
        "<code>governance.audit_log</code>); run <code>datashare review</code> again to see "
        "them here.</p></header>",
        "<p class=screen-only id=print-hint>Print this page for the month's review meeting: "
        "every history and command is kept, and each notice prints as a letter of its own."
        "</p>",
        "<div class=summary>",
        f"<div id=open-count><strong>{len(open_):,}</strong>open breaches</div>",
        *(f"<div class={s}><strong>{by_severity[s]:,}</strong>{s}</div>" for s in SEVERITY_ORDER),
        f"<div><strong>{len({b['contract'] for b in open_}):,}</strong>contracts</div>",
        "</div>",
        (
            f"<p class=note id=superseded-count>{superseded:,} more breach(es) closed on their "
            "own as superseded: the force re-sent the month and the re-send was published. "
            "Their history is kept (<code>datashare breaches list --status superseded</code>)."
            "</p>"
            if superseded
            else ""
        ),
        f"<figure>{_chart(breaches, titles)}</figure>",
    ]

    # Open breaches, most severe and oldest first.
    parts += [
        "<h2 id=open>Open breaches, by severity and age</h2>",
        "<table id=open-breaches><tr><th>Severity</th><th>Contract</th><th>Period</th>"
        "<th>Breach</th><th>What was found</th><th>Age</th><th>Seen in</th><th>Status</th>"
        "<th>Notice</th></tr>",
    ]
    for b in open_:
        age = (today - b["raised_at"].date()).days
        link = notices.get((b["contract"], b["period"]))
        notice = f"<a href='{_e(link)}'>notice</a>" if link else "—"
        steps = "".join(
            f"<li>{_e(time_words(ev['event_at']))}: "
            + (
                f"raised by {_e(ev['actor'])}"
                if ev["step"] == "raised"
                else f"{_e(ev['status'])} by {_e(ev['actor'])}"
                + (f" ({_e(ev['note'])})" if ev["note"] else "")
            )
            + "</li>"
            for ev in history.get(b["breach_id"], [])
        )
        commands = " ".join(f"<code>{_e(c)}</code>" for c in _actions(home, b))
        parts.append(
            f"<tr class=breach data-severity='{_e(b['severity'])}'>"
            f"<td class='{_e(b['severity'])}'>{_e(b['severity'])}</td>"
            f"<td>{_e(titles.get(b['contract'], b['contract']))}</td><td>{_e(when(b))}</td>"
            f"<td><code>{_e(b['breach_id'])}</code><br>{_e(b['rule'])}"
            + (
                f"<br><span class=note>clause {_e(b['clause_number'])}</span>"
                if b.get("clause_number")
                else ""
            )
            + "</td>"
            f"<td>{_e(b['detail'])}<br><span class=note>What we did: "
            f"{_e(what_we_did(b))}.</span></td><td class=n>{age:,} days</td>"
            f"<td class=n>{b['recurrence']:,} period(s)</td>"
            f"<td>{_e(b['status'])}<ol class=history>{steps}</ol>"
            f"</td><td>{notice}</td></tr>"
            f"<tr class=commands><td></td><td colspan=8>To act on it: {commands}</td></tr>"
        )
    parts.append("</table>")
    if not open_:
        parts.append("<p>No breach is open.</p>")

    # Recurrence: the same rule broken in more than one period.
    periods_by_rule: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for b in breaches:
        periods_by_rule[(b["contract"], b["rule"])].append(b)
    recurring = sorted(
        (
            (key, rows)
            for key, rows in periods_by_rule.items()
            if len({r["period"] for r in rows}) > 1
        ),
        key=lambda kv: -len(kv[1]),
    )
    parts += [
        "<h2 id=recurring>Broken month after month</h2>",
        "<p class=note>Rules broken in more than one period: the same fault coming back is "
        "for the provider to fix at source.</p>",
        "<table id=recurring-rules><tr><th>Contract</th><th>Rule</th><th>Periods</th>"
        "<th>In</th><th>Periods still open</th></tr>",
    ]
    for (contract, rule), rows in recurring:
        months = sorted({r["period"] for r in rows})
        # Periods, like the column beside it: a month with two breaches of the rule (a
        # file and its re-send) is one period, open while either breach is.
        still = len({r["period"] for r in rows if r["status"] in OPEN})
        named = ", ".join(period_words(m, schedule.get(contract, "monthly")) for m in months)
        parts.append(
            f"<tr><td>{_e(titles.get(contract, contract))}</td><td>{_e(rule)}</td>"
            f"<td class=n>{len(months)}</td>"
            f"<td>{_e(named)}</td><td class=n>{still}</td></tr>"
        )
    parts.append("</table>")
    if not recurring:
        parts.append("<p>No rule has been broken in more than one period.</p>")

    # What was sent to the force.
    parts += [
        "<h2 id=sent>Sent to the force</h2>",
        "<p class=note>Notices recorded by <code>datashare breaches notice</code> "
        "(<code>governance.exports</code>), and breaches marked as notified.</p>",
        "<table id=exports><tr><th>When</th><th>Contract</th><th>Period</th><th>What</th>"
        "<th>By</th></tr>",
    ]
    for x in data["exports"]:
        parts.append(
            f"<tr class=export><td>{_e(time_words(x['exported_at']))}</td>"
            f"<td>{_e(titles.get(x['contract'], x['contract']))}</td>"
            f"<td>{_e(period_words(x['period'], schedule.get(x['contract'], 'monthly')))}</td>"
            f"<td>{_e(x['what'])}</td><td>{_e(x['exported_by'])}</td></tr>"
        )
    parts.append("</table>")
    if not data["exports"]:
        parts.append("<p>No notice has been recorded as sent yet.</p>")
    notified = [e for e in data["events"] if e["status"] == "notified"]
    if notified:
        parts.append("<ul>")
        parts += [
            f"<li>{_e(date_words(e['event_at']))}: <code>{_e(e['breach_id'])}</code> marked "
            f"notified by {_e(e['actor'])}" + (f" ({_e(e['note'])})" if e["note"] else "") + "</li>"
            for e in notified
        ]
        parts.append("</ul>")

    # Each contract-month's notice.
    parts += [
        "<h2 id=notices>Notices, one per contract and month</h2>",
        "<p class=note>Drafts written with this page, as <code>datashare breaches notice</code> "
        "writes them; that command is the one that records a notice as sent.</p>",
        "<table id=notice-links><tr><th>Contract</th><th>Period</th><th>Open</th>"
        "<th>Notice</th><th>To send it</th></tr>",
    ]
    open_by_month: dict[tuple[str, str], int] = defaultdict(int)
    for b in open_:
        open_by_month[(b["contract"], b["period"])] += 1
    for (contract, period), link in sorted(notices.items()):
        md = link.removesuffix(".html") + ".md"
        command = _command(home, "breaches", "notice", "--contract", contract, "--period", period)
        parts.append(
            f"<tr class=notice><td>{_e(titles.get(contract, contract))}</td>"
            f"<td>{_e(period_words(period, schedule.get(contract, 'monthly')))}</td>"
            f"<td class=n>{open_by_month[(contract, period)]}</td>"
            f"<td><a href='{_e(link)}'>HTML</a> · <a href='{_e(md)}'>Markdown</a></td>"
            f"<td><code>{_e(command)}</code></td></tr>"
        )
    parts.append("</table>")
    parts.append(
        "<p class=note>Details never show the values of personal, special-category, "
        "restricted or pseudonymised fields: breach texts are built without them.</p>"
    )
    parts.append("</main></body></html>")
    return "".join(parts)


# What `notice_from_warehouse` reads for a letter.
LETTERS_READ = ("deliveries", "breach_register", "breaches")


def _letters_tables(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The governance views a letter reads, copied once into an in-memory database under
    the same names: each view reads the lake's files afresh (about a second each on the
    demo's home), and a page of a hundred letters would read them hundreds of times."""
    letters = duckdb.connect()
    letters.execute("CREATE SCHEMA governance")
    for name in LETTERS_READ:
        rows = con.sql(f"SELECT * FROM governance.{name}").to_arrow_table()
        letters.register("rows", rows)
        letters.execute(f"CREATE TABLE governance.{name} AS SELECT * FROM rows")
        letters.unregister("rows")
    return letters


def write_review(settings: Settings, output: Path, today: dt.date | None = None) -> ReviewWritten:
    """Write the review page to `output` and a notice for each contract-month with an open
    breach beside it (`<output folder>/notices/`); atomically, page last."""
    from pipelines.lake.store import open_lake
    from pipelines.warehouse.catalog import build_warehouse

    contracts = load_contracts()
    if not has_breach_views(settings.warehouse):
        # None yet, or one built by an earlier version (before breach_history): the page
        # reads what the lake says now.
        build_warehouse(open_lake(settings.lake), contracts, settings.warehouse)
    generated = dt.datetime.now().astimezone()
    folder = output.parent / NOTICES_FOLDER
    links: dict[tuple[str, str], str] = {}
    written: list[Path] = []
    with connect(settings.warehouse) as con, _letters_tables(con) as letters:
        data = read_register(con)
        months = sorted(
            {(b["contract"], b["period"]) for b in data["breaches"] if b["status"] in OPEN}
        )
        for contract, period in months:
            if contract not in contracts:
                continue  # files outside the layout (`unfiled`): no agreement to write under
            try:
                notice = notice_from_warehouse(letters, contracts[contract], period, today)
            except NothingToSend:
                continue
            written += write_notice(notice, folder, contract, period)
            links[(contract, period)] = f"{NOTICES_FOLDER}/{notice_stem(contract, period)}.html"
    page = render_review(data, settings.home, links, generated)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(output)
    return ReviewWritten(output, written, sum(b["status"] in OPEN for b in data["breaches"]))
