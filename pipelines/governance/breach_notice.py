"""A notice to the force: what was agreed, what arrived, what must be fixed, by when.

A letter a data-sharing lead sends as it is, in Markdown and in HTML that say the same
(both are rendered from one `Letter`). It cites the clauses of the agreement page
(`datashare contracts show`), says periods and dates in words, and asks for an
acknowledgement by the date the agreement sets (`noticeResponseDays`). Every open breach
of the month is in it: the file breaches, the late delivery, and a month with no delivery
at all. It names rules, clauses, counts and row numbers, and the few failing values a
breach names for a column the agreement does not classify; never a classified field's
values (breach details are built without them), and nothing from the quarantined records
is read here. Whatever came from a delivery (file names, headers, values in a detail) is
escaped.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

from schemas.contract import Contract
from schemas.contract_page import (
    SECTIONS,
    agreement_title,
    clause_for,
    contract_document,
    file_sentence,
    notice_response_days,
    schedule_sentence,
)
from schemas.period_words import date_words, period_words, time_words

ASK = {
    "rows quarantined": "Correct these rows at source and re-send the month as a whole.",
    "rows kept": "Correct these rows at source; the rows were published as sent.",
    "delivery rejected": "Re-send the month in the agreed layout.",
    "delivery held": "Correct this at source and re-send the month as a whole.",
    "columns withheld": "Stop sending these columns: the agreement does not cover them.",
    "delivery published": "Improve this from the next delivery.",
    "delivery chased": "Send the month's file, or tell us when it will come.",
}
DID = {
    "rows quarantined": "the failing rows were held back; the rest were published",
    "rows kept": "the rows were published as sent, with this breach recorded",
    "delivery rejected": "the file was not read; nothing from it was published",
    "delivery held": "the delivery was held back; nothing from it was published",
    "columns withheld": "these columns were withheld; the agreed columns were published",
    "delivery published": "the delivery was published, with this breach recorded",
    "delivery chased": "the month was recorded as late",
}
# Headings for breaches of a clause rather than of a listed rule.
TITLES = {
    "delivery.late": "Late delivery",
    "delivery.nothing_usable": "Nothing in the delivery could be published",
    "delivery.file_name": "The file name names another period",
    "delivery.multiple_files": "More than one file for the month",
    "delivery.restated": "The month was sent again",
    "delivery.periods_carried": "The months the release carries",
    "file.format": "The file is not in an agreed format",
    "file.empty": "The file is empty",
    "file.encoding": "The file is not in the agreed text encoding",
    "file.compression": "The compressed file is damaged",
    "file.decompressed_size": "The compressed file expands too far",
    "file.readable": "The file could not be read",
    "file.header": "The header does not name each column once",
    "file.columns": "Agreed columns are missing",
    "file.unagreed_columns": "Columns the agreement does not cover",
    "file.row_shape": "Rows that do not match the header",
    "file.manifest": "The file and its manifest disagree",
    "dataset.volume": "An unusual number of rows",
}
OUTCOME = {
    "published": "published",
    "held": "held back",
    "rejected": "rejected, not read",
    "superseded": "replaced by a later file",
    "validated": "checked, not yet published",
    "received": "received, not yet checked",
}
CLOSED = ("resolved", "waived", "superseded")
WHOLE_DELIVERY = {
    "held": "the delivery was held back; nothing from it was published",
    "rejected": "the file was not read; nothing from it was published",
}


def _later(entry: dict) -> str:
    """The later published delivery of the breach's month, in words."""
    name = entry.get("later_delivery_path") or f"delivery {entry['later_delivery_id'][:12]}"
    return f"{name}, published on {date_words(entry['later_published_at'])}"


def what_we_did(entry: dict) -> str:
    """What really happened to the breach's delivery, from its status now (a row of
    `governance.breach_register`), whatever action was recorded when it was validated:
    the action of a held-back delivery's minor breach once read "delivery published"."""
    status = entry.get("delivery_status")
    later = bool(entry.get("later_delivery_id"))
    if entry.get("delivery_id") is None:  # a breach of the schedule: no delivery of its own
        if later:
            return f"the month was recorded as late; its file came later: {_later(entry)}"
        return DID["delivery chased"]
    if status in WHOLE_DELIVERY:
        did = WHOLE_DELIVERY[status]
    elif status == "superseded":
        did = (
            f"{DID.get(entry['action'], entry['action'])}, until the delivery was replaced"
            if entry.get("delivery_published_at")
            else "the delivery was not published"
        )
        did += "; nothing from it is published now"
    elif status == "validated":
        did = "the delivery was checked and waits to be published"
    elif status == "received":
        did = "the delivery was received and is not checked yet"
    else:
        did = DID.get(entry["action"], entry["action"])
    if later and status in ("held", "rejected", "superseded"):
        did += f". The month was re-sent: {_later(entry)}"
    return did


def what_we_ask(entry: dict) -> str:
    """What the force is asked to do about the breach, from what happened to its delivery."""
    if entry.get("delivery_id") is None and entry.get("later_delivery_id"):
        return "Send each month by its due date."
    if entry.get("delivery_status") == "held" and entry.get("rule") == "file.manifest":
        return "Re-send the month with a file and manifest that agree."
    action = {"held": "delivery held", "rejected": "delivery rejected"}.get(
        entry.get("delivery_status"), entry["action"]
    )
    return ASK.get(action, "Please correct this at source.")


CSS = """
body { font: 15px/1.5 Georgia, 'Times New Roman', serif; color: #1a1a1a; max-width: 46em;
       margin: 2.5em auto; padding: 0 1.5em; }
h1 { font-size: 1.55em; margin-bottom: .3em; } h2 { font-size: 1.15em; margin-top: 1.6em;
     border-bottom: 1px solid #bbb; } h3 { font-size: 1em; margin: 1.2em 0 .3em; }
ul.facts { list-style: none; padding: 0; } ul.facts li { margin: .1em 0; }
table { border-collapse: collapse; margin: .5em 0; } th, td { border: 1px solid #999;
        padding: .25em .6em; text-align: left; vertical-align: top; }
.critical { color: #9b0000; } .major { color: #8a4b00; } .minor { color: #444; }
code { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: .9em; }
@page { size: A4; margin: 18mm 16mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 11pt; }
  h2, h3 { break-after: avoid; } ul, table { break-inside: avoid; }
  .critical, .major, .minor { color: #000; }
}
"""


@dataclass
class Item:
    """One breach in the letter: a heading and its facts (label, text)."""

    heading: str
    severity: str
    facts: list[tuple[str, str]]


@dataclass
class Letter:
    """The notice, as blocks both renderers write in the same order."""

    title: str
    facts: list[tuple[str, str]]
    opening: list[str]
    agreed: list[str]
    arrived: list[list[str]]  # rows of file, received, rows, outcome (empty: nothing came)
    nothing_arrived: str
    items: list[Item] = field(default_factory=list)
    closing: list[str] = field(default_factory=list)


@dataclass
class Notice:
    markdown: str
    html: str
    breach_ids: list[str]
    reply_by: date | None


class NothingToSend(ValueError):
    """A period with no delivery and no open breach: there is nothing to write about."""


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _rows(entry: dict) -> str:
    sample = list(entry.get("sample_rows") or [])
    if not sample:
        return "none in particular (it concerns the delivery as a whole)"
    shown = ", ".join(str(n) for n in sample)
    more = (entry.get("failing_rows") or 0) - len(sample)
    return shown + (f" and {more:,} more" if more > 0 else "")


def _affected(entry: dict) -> str:
    if entry.get("delivery_id") is None:
        return "the whole month (no file arrived)"
    if not entry.get("rows_checked"):
        return "the whole file"
    share = entry["failing_rows"] / entry["rows_checked"]
    return f"{entry['failing_rows']:,} of {entry['rows_checked']:,} ({share:.1%})"


def _seen_before(earlier: list[str], schedule_period: str) -> str:
    if not earlier:
        return "not before: this is the first period with this breach"
    named = ", ".join(period_words(p, schedule_period) for p in earlier[-3:])
    more = f" (the latest: {named})" if len(earlier) > 3 else f" ({named})"
    return f"in {_plural(len(earlier), 'earlier period')}{more}"


def _status(entry: dict) -> str:
    status = entry.get("status") or "open"
    if status == "open" or not entry.get("updated_at"):
        return status
    return f"{status} on {date_words(entry['updated_at'])}"


def build_letter(
    contract: Contract,
    period: str,
    deliveries: list[dict],
    entries: list[dict],
    earlier: dict[str, list[str]],
    today: date,
) -> tuple[Letter, date | None]:
    """The letter for one contract and period; `earlier[rule]` lists the earlier periods
    with a breach of the same rule. Returns it with its reply-by date."""
    doc = contract_document(contract.path)
    agreement = contract.agreement
    owners = agreement.get("owners") or {}
    provider = owners.get("provider", "the provider")
    recipient = owners.get("recipient", "MOPAC")
    reference = agreement.get("reference") or agreement_title(doc)
    when = period_words(period, contract.schedule.period)
    days = notice_response_days(agreement)
    reply_by = today + timedelta(days=days) if days else None
    notices = SECTIONS["notices"][0]
    title = f"{agreement_title(doc)}: notice of breaches for {when}"
    facts = [
        ("To", provider),
        ("From", recipient),
        ("Agreement", reference),
        ("Data", f"{agreement_title(doc)}, contract version {contract.version}"),
        ("Period", when),
        ("Date of this notice", date_words(today)),
        (
            "Reply by",
            f"{date_words(reply_by)} ({days} days, clause {notices})"
            if reply_by
            else "the agreement sets no date; please reply as soon as you can",
        ),
    ]
    n = len(entries)
    opening = [
        f"Dear {provider},",
        (
            f"This notice sets out {_plural(n, 'item')} in which the data for {when} did not "
            f"meet the data-sharing agreement {reference}. The clause numbers are those of "
            f"the agreement page (datashare contracts show {contract.name})."
            if n
            else f"The data for {when} met the data-sharing agreement {reference}: nothing "
            "needs correcting."
        ),
    ]
    if n:
        opening.append(
            f"Please acknowledge this notice by {date_words(reply_by)}, as clause {notices} "
            "asks, and say by when each item will be corrected."
            if reply_by
            else "Please acknowledge this notice and say by when each item will be corrected."
        )
    purpose = " ".join(str(agreement.get("purpose") or contract.description).split())
    schema = (doc.get("schema") or [{}])[0]
    custom = {p.get("property"): p.get("value") for p in doc.get("customProperties") or []}
    headers = ", ".join(contract.source_names)
    agreed = [
        purpose,
        f"Schedule (clause {SECTIONS['schedule'][0]}): "
        f"{schedule_sentence(custom.get('deliverySchedule') or {})}",
        f"The file (clause {SECTIONS['file'][0]}): "
        f"{file_sentence(schema, custom.get('fileFormat') or {})}".replace("`", ""),
        f"The agreed layout (clause {SECTIONS['columns'][0]}): "
        f"{_plural(len(contract.columns), 'column')}, headed {headers}"
        + (
            f", then one column per {contract.layout.period_name}."
            if contract.layout
            else ", in any order."
        ),
    ]
    arrived = [
        [
            d.get("source_path") or "(no name recorded)",
            time_words(d["received_at"]),
            f"{d.get('rows_delivered') or 0:,}",
            OUTCOME.get(d.get("status"), str(d.get("status"))),
        ]
        for d in deliveries
    ]
    letter = Letter(
        title=title,
        facts=facts,
        opening=opening,
        agreed=agreed,
        arrived=arrived,
        nothing_arrived=f"Nothing was delivered for {when}.",
    )
    for e in entries:
        clause = clause_for(doc, e["rule"])
        heading = TITLES.get(e["rule"]) or clause.words.split(": ", 1)[-1].rstrip(".")
        letter.items.append(
            Item(
                heading=heading,
                severity=e["severity"],
                facts=[
                    ("Breach reference", e["breach_id"]),
                    ("Clause", f"{clause.number}: {clause.words}"),
                    ("Found", e["detail"]),
                    ("Rows affected", _affected(e)),
                    ("Row numbers in the file", _rows(e)),
                    ("What we did", what_we_did(e)),
                    (
                        "Seen before",
                        _seen_before(earlier.get(e["rule"], []), contract.schedule.period),
                    ),
                    ("Status", _status(e)),
                    ("What we ask", what_we_ask(e)),
                ],
            )
        )
    letter.closing = [
        "Row numbers count data rows from 1, after the header.",
        f"Yours sincerely, {recipient}",
    ]
    return letter, reply_by


# --- the two renderings --------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|#])")


def _md(text: object) -> str:
    """Text as Markdown shows it literally (markup from a delivery stays text)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def markdown(letter: Letter) -> str:
    """The letter in Markdown."""
    out = [f"# {_md(letter.title)}", ""]
    out += [f"- **{_md(k)}:** {_md(v)}" for k, v in letter.facts]
    out += [""] + [x for p in letter.opening for x in (_md(p), "")]
    out += ["## What was agreed", ""] + [x for p in letter.agreed for x in (_md(p), "")]
    out += ["## What arrived", ""]
    if letter.arrived:
        out += ["| File | Received | Rows | Outcome |", "|---|---|---|---|"]
        out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in letter.arrived]
    else:
        out.append(_md(letter.nothing_arrived))
    out += ["", f"## What must be fixed ({_plural(len(letter.items), 'item')})", ""]
    if not letter.items:
        out += ["Nothing: the deliveries for this period met the agreement.", ""]
    for n, item in enumerate(letter.items, 1):
        out += [f"### {n}. {_md(item.heading)} ({item.severity})", ""]
        out += [f"- **{_md(k)}:** {_md(v)}" for k, v in item.facts]
        out.append("")
    out += [x for p in letter.closing for x in (_md(p), "")]
    return "\n".join(out)


def html_page(letter: Letter) -> str:
    """The letter as one printable HTML page (no script, nothing fetched)."""
    e = html.escape

    def facts(pairs: list[tuple[str, str]]) -> str:
        rows = "".join(f"<li><strong>{e(k)}:</strong> {e(str(v))}</li>" for k, v in pairs)
        return f"<ul class='facts'>{rows}</ul>"

    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{e(letter.title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{e(letter.title)}</h1>",
        facts(letter.facts),
        *(f"<p>{e(p)}</p>" for p in letter.opening),
        "<h2>What was agreed</h2>",
        *(f"<p>{e(p)}</p>" for p in letter.agreed),
        "<h2>What arrived</h2>",
    ]
    if letter.arrived:
        parts.append("<table><tr><th>File</th><th>Received</th><th>Rows</th><th>Outcome</th></tr>")
        parts += [
            "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in letter.arrived
        ]
        parts.append("</table>")
    else:
        parts.append(f"<p>{e(letter.nothing_arrived)}</p>")
    parts.append(f"<h2>What must be fixed ({_plural(len(letter.items), 'item')})</h2>")
    if not letter.items:
        parts.append("<p>Nothing: the deliveries for this period met the agreement.</p>")
    for n, item in enumerate(letter.items, 1):
        severity = e(item.severity)
        parts.append(f"<h3 class='{severity}'>{n}. {e(item.heading)} ({severity})</h3>")
        parts.append(facts(item.facts))
    parts += [f"<p>{e(p)}</p>" for p in letter.closing]
    parts.append("</main></body></html>")
    return "".join(parts)


# --- from the warehouse ----------------------------------------------------------------------


def notice_from_warehouse(
    con: duckdb.DuckDBPyConnection, contract: Contract, period: str, today: date | None = None
) -> Notice:
    """The notice for one contract and period, from `governance` in the warehouse.

    Every open breach of the period is in it: those of its deliveries (a breach of one
    replaced by a published re-send is superseded, not open) and those of the schedule (a
    late or missing month). Raises
    NothingToSend when nothing was delivered and no breach is open.
    """
    today = today or datetime.now().date()
    deliveries = _dicts(
        con,
        "SELECT delivery_id, source_path, received_at, rows_delivered, status "
        "FROM governance.deliveries WHERE contract = ? AND period = ? AND status <> 'duplicate' "
        "ORDER BY received_at",
        [contract.name, period],
    )
    order = {"critical": 0, "major": 1, "minor": 2}
    # Every breach of the month still open: those of a delivery replaced by a published
    # re-send are superseded (pipelines.governance.views), and closed like resolved ones.
    entries = [
        e
        for e in _dicts(
            con,
            "SELECT * FROM governance.breach_register WHERE contract = ? AND period = ? "
            "ORDER BY raised_at, rule",
            [contract.name, period],
        )
        if e["status"] not in CLOSED
    ]
    entries.sort(key=lambda e: order.get(e["severity"], 3))
    if not deliveries and not entries:
        raise NothingToSend(
            f"nothing was delivered for {contract.name} {period} and no breach is open for "
            "it (a missing month is flagged once it is past its late date, by `datashare "
            "run` or the daily check): there is nothing to send"
        )
    earlier: dict[str, list[str]] = {}
    for rule, p in con.execute(
        "SELECT DISTINCT rule, period FROM governance.breaches "
        "WHERE contract = ? AND period < ? ORDER BY period",
        [contract.name, period],
    ).fetchall():
        earlier.setdefault(rule, []).append(p)
    letter, reply_by = build_letter(contract, period, deliveries, entries, earlier, today)
    return Notice(markdown(letter), html_page(letter), [e["breach_id"] for e in entries], reply_by)


def notice_stem(contract: str, period: str) -> str:
    """The notice's file name without its suffix."""
    return f"notice-{contract}-{period}"


def write_notice(notice: Notice, folder: Path, contract: str, period: str) -> tuple[Path, Path]:
    """Write the notice's Markdown and HTML into `folder`; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"{notice_stem(contract, period)}.md"
    page = md.with_suffix(".html")
    md.write_text(notice.markdown, encoding="utf-8")
    page.write_text(notice.html, encoding="utf-8")
    return md, page


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[dict]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
