"""The oversight pack: one self-contained HTML page with a section and chart per measure.

`write_report(warehouse_path, output_html)` reads the marts (`oversight.<mart>` views of
warehouse.duckdb, read-only) and writes a page a board member can read: a first page of
headline figures (`pack_summary.py`), then for each measure its charts (drawn from the
mart's rows by `pack_charts.py`, as inline SVG from `charts.py`: no script, no web font,
nothing fetched, so it opens offline and prints), its latest figures, and its definition
and caveats as the mart defines them. A mart not computed yet, or with no rows, says so
instead of a chart. Withheld (suppressed) figures are shown as "withheld", never as zero.

Categories are the agreed ones: a value the agreement keeps with a breach is in the marts'
one group "Not an agreed value" (`pipelines/validation/agreed_values.py`), drawn apart in
grey with a note under the chart saying how many rows it holds and which rule they break.
Every monthly chart's axis ends at the same month, the latest delivered, so the charts line up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pipelines.oversight.charts import (
    FONT,
    WITHHELD,
    fmt_number,
    fmt_rate,
    fmt_ratio,
    fmt_share,
)
from pipelines.oversight.mart_runner import MARTS, Mart, current_contracts
from pipelines.oversight.pack_archive import read_sources
from pipelines.oversight.pack_charts import (
    Chart,
    MartData,
    Pack,
    chart_complaints,
    chart_crime_outcomes,
    chart_crime_trends,
    chart_data_quality,
    chart_disproportionality,
    chart_emergency,
    chart_stop_search_outcomes,
    chart_trust,
    chart_use_of_force_subjects,
    chart_use_of_force_tactics,
    chart_workforce,
    first_of,
    inline,
    withheld,
)
from pipelines.oversight.pack_charts import (
    escape_html as _e,
)
from pipelines.oversight.pack_summary import summary_html
from pipelines.validation.agreed_values import NOT_AGREED
from pipelines.warehouse.catalog import connect
from schemas.contract import Contract


@dataclass(frozen=True)
class Section:
    charts: Callable[[MartData, Pack], list[Chart]]
    columns: tuple[str, ...]  # shown in the latest-figures table


SECTIONS: dict[str, Section] = {
    "stop_search_disproportionality": Section(
        chart_disproportionality,
        ("basis", "ethnic_group", "searches", "share_of_searches", "population",
         "rate_per_1000", "ratio_to_white"),
    ),
    "stop_search_outcomes": Section(
        chart_stop_search_outcomes,
        ("ethnic_group", "searches", "action_taken", "action_taken_share"),
    ),
    "crime_trends": Section(
        chart_crime_trends,
        ("borough", "major_category", "crimes", "last_12_months", "previous_12_months",
         "change_percent"),
    ),
    "crime_outcome_rates": Section(
        chart_crime_outcomes,
        ("force", "crime_type", "outcome_group", "crimes", "crimes_of_type", "outcome_rate"),
    ),
    "use_of_force_subjects": Section(
        chart_use_of_force_subjects,
        ("ethnic_group", "age_band", "records", "population", "rate_per_1000", "ratio_to_white"),
    ),
    "use_of_force_tactics": Section(
        chart_use_of_force_tactics, ("tactic", "records_with_tactic", "share_of_records")
    ),
    "complaints_timeliness": Section(
        chart_complaints,
        ("handling", "allegations_finalised", "median_days_to_finalise",
         "p90_days_to_finalise", "open_at_month_end"),
    ),
    "emergency_response": Section(
        chart_emergency,
        ("borough", "grade", "calls", "calls_attended", "share_within_target",
         "median_minutes_to_arrival"),
    ),
    "trust_and_confidence": Section(
        chart_trust, ("borough", "measure", "proportion", "change_points", "rank_among_boroughs")
    ),
    "workforce_representation": Section(
        chart_workforce,
        ("ethnic_group", "headcount", "share_of_stated", "london_share",
         "representation_ratio"),
    ),
    "data_quality": Section(
        chart_data_quality,
        ("contract", "period", "field", "curated_rows", "completeness_percent",
         "agreed_max_missing_percent", "within_agreement"),
    ),
}  # fmt: skip

_FORMATS: dict[str, Callable[[object], str]] = {
    "rate_per_1000": fmt_rate,
    "white_rate_per_1000": fmt_rate,
    "ratio_to_white": fmt_ratio,
    "representation_ratio": fmt_ratio,
}


def _cell(mart: Mart, row: dict, column: str) -> str:
    if withheld(mart, row, column):
        threshold = mart.threshold or 0
        return f'<span class="withheld" title="fewer than {threshold}">{WITHHELD}</span>'
    value = row.get(column)
    if value == NOT_AGREED:
        return f'<span class="rest">{_e(value)}</span>'
    if column in _FORMATS:
        return _e(_FORMATS[column](value))
    if column.endswith(("share", "_share", "_rate")) or column.startswith("share_"):
        return _e(fmt_share(value))
    return _e(fmt_number(value))


LATEST_ROWS = 24


def _latest_table(mart: Mart, data: MartData, columns: tuple[str, ...]) -> str:
    rows = data.rows(f"SELECT * FROM ({mart.latest}) LIMIT {LATEST_ROWS}")
    if not rows:
        return ""
    head = "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(mart, r, c)}</td>" for c in columns) + "</tr>" for r in rows
    )
    total = data.rows(f"SELECT count(*) AS n FROM ({mart.latest})")[0]["n"]
    more = f"<p class=note>First {LATEST_ROWS} of {total:,} rows.</p>" if total > len(rows) else ""
    return (
        f"<details><summary>Latest figures</summary><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>{more}</details>"
    )


def _definition(mart: Mart) -> str:
    caveats = "".join(f"<li>{inline(c)}</li>" for c in mart.caveats)
    return (
        "<dl class=definition>"
        f"<dt>Numerator</dt><dd>{inline(mart.numerator)}</dd>"
        f"<dt>Denominator</dt><dd>{inline(mart.denominator)}</dd>"
        f"<dt>Grain</dt><dd>{inline(mart.grain)}</dd>"
        f"<dt>Source fields</dt><dd>{inline(', '.join(mart.source_fields))}</dd>"
        f"<dt>Disclosure control</dt><dd>{inline(mart.disclosure_text)}</dd>"
        f"<dt>Caveats</dt><dd><ul>{caveats}</ul></dd>"
        f"<dt>Table</dt><dd><code>oversight.{_e(mart.name)}</code> in warehouse.duckdb</dd>"
        "</dl>"
    )


def _figure(chart: Chart) -> str:
    notes = "".join(f"<p>{inline(n)}</p>" for n in chart.notes)
    fields = "".join(f"<dt>{_e(t)}</dt><dd>{inline(d)}</dd>" for t, d in chart.fields)
    fields = f"<dl class=fields>{fields}</dl>" if fields else ""
    caption = f"<figcaption>{notes}{fields}</figcaption>" if notes or fields else ""
    return f"<figure>{chart.svg}{caption}</figure>"


def _section(mart: Mart, table: pa.Table | None, pack: Pack) -> str:
    # A mart an analyst added as files has no charts of its own yet: its latest figures.
    spec = SECTIONS.get(mart.name) or Section(
        lambda _data, _pack: [], tuple(c.name for c in mart.output_columns)
    )
    parts = [f'<section id="{_e(mart.name)}"><h2>{_e(mart.title)}</h2>']
    parts.append(f"<p class=lead>{inline(mart.definition)}</p>")
    if table is None:
        parts.append(
            "<p class=empty>Not computed yet: materialise the oversight assets "
            "(<code>datashare run</code>) to produce this measure.</p>"
        )
    elif table.num_rows == 0:
        parts.append(
            "<p class=empty>No figures yet: the curated tables this measure reads have no "
            "data delivered.</p>"
        )
    else:
        data = MartData(mart, table)
        try:
            charts = spec.charts(data, pack)
            parts += [_figure(c) for c in charts] or [
                "<p class=empty>No figures to draw for the latest period.</p>"
            ]
            parts.append(_latest_table(mart, data, spec.columns))
        finally:
            data.close()
    parts.append(_sources_line(mart, pack))
    parts.append(_revisions_box(mart, pack))
    parts.append(_definition(mart))
    parts.append("</section>")
    return "".join(parts)


def _day(value: dt.datetime | None) -> str:
    return value.strftime("%d %b %Y") if value else "date not recorded"


def _sources_line(mart: Mart, pack: Pack) -> str:
    """One line: which contracts, months and delivered files the section's figures come
    from (governance.mart_sources), and the command that lists every file."""
    rows = [s for s in pack.sources if s["mart"] == mart.name]
    if not rows:
        return (
            "<p class=sources><strong>Sources:</strong> not recorded (computed before the "
            "pipeline recorded provenance, or no data yet).</p>"
        )
    parts = []
    for contract in sorted({r["contract"] for r in rows}):
        mine = [r for r in rows if r["contract"] == contract]
        months = sorted({r["period"] for r in mine})
        span = months[0] if len(months) == 1 else f"{months[0]} to {months[-1]}"
        versions = sorted({r["contract_version"] for r in mine if r["contract_version"]})
        restated = sum(1 for r in mine if r["restated_delivery_id"])
        if len(mine) == 1:
            files = f"{_e(mine[0]['file_name'] or mine[0]['delivery_id'][:12])}"
        else:
            files = f"{len(mine)} delivered files"
        latest = max((r["received_at"] for r in mine if r["received_at"]), default=None)
        text = (
            f"<code>{_e(contract)}</code> {_e(span)}: {files}, last received {_day(latest)}"
            f"{', contract ' + _e(', '.join(versions)) if versions else ''}"
            f"{f', {restated} a restatement of an earlier file' if restated else ''}"
        )
        parts.append(text)
    return (
        "<p class=sources><strong>Sources:</strong> "
        + "; ".join(parts)
        + f". Every file: <code>datashare explain {_e(mart.name)}</code>.</p>"
    )


REVISIONS_SHOWN = 24


def _revisions_box(mart: Mart, pack: Pack) -> str:
    """The figures revised since the previous pack: old value, new value, and the
    restatement that changed them."""
    revised = pack.revisions.get(mart.name) or []
    if not revised:
        return ""
    head = "<tr><th>figure</th><th>was</th><th>now</th><th>changed by</th></tr>"
    body = []
    for r in revised[:REVISIONS_SHOWN]:
        where = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r.where.items() if v is not None)
        by = (
            "; ".join(
                f"{_e(d['file_name'] or d['delivery_id'][:12])} ({_e(d['contract'])} "
                f"{_e(d['period'])}, delivery {_e(d['delivery_id'][:12])}, restating "
                f"{_e(d['restated_file_name'] or d['restated_delivery_id'][:12])})"
                for d in r.deliveries
            )
            or "no restatement recorded (a change of definition or mapping)"
        )
        body.append(
            f"<tr><td>{_e(where)}: {_e(r.column.replace('_', ' '))}</td>"
            f"<td>{_cell(mart, {r.column: r.old}, r.column)}</td>"
            f"<td>{_cell(mart, {r.column: r.new}, r.column)}</td><td>{by}</td></tr>"
        )
    more = (
        f"<p class=note>First {REVISIONS_SHOWN} of {len(revised):,} revised figures.</p>"
        if len(revised) > REVISIONS_SHOWN
        else ""
    )
    since = pack.previous_at.strftime("%d %B %Y, %H:%M") if pack.previous_at else "before"
    return (
        f'<div class=revised id="{_e(mart.name)}-revised"><p><strong>Revised.</strong> '
        f"{len(revised):,} figure(s) differ from the pack of {_e(since)}:</p>"
        f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>{more}</div>"
    )


CSS = (
    f"body {{ font-family: {FONT}; }}"
    + """
body { color: #1b1b1b; margin: 0; background: #fafafa; line-height: 1.45; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; }
h1 { font-size: 28px; margin: 8px 0 4px; } h2 { font-size: 21px; margin: 0 0 6px; }
header p { color: #444; margin: 2px 0; }
nav ol { columns: 2; padding-left: 20px; } nav a { color: #0b4f8a; }
section { border-top: 3px solid #0b4f8a; margin-top: 34px; padding-top: 12px; }
p.lead { font-size: 15px; } p.empty { color: #6a6a6a; font-style: italic; }
figure { margin: 16px 0; } .note { color: #555; font-size: 12px; }
figure svg { display: block; height: auto; }
figcaption { font-size: 12.5px; color: #333; max-width: 760px; }
figcaption p { margin: 6px 0; padding-left: 10px; border-left: 3px solid #8a8a8a; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0; }
dl.fields dt { font-weight: 600; } dl.fields dd { margin: 0; }
table { border-collapse: collapse; font-size: 12.5px; margin: 8px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td { font-variant-numeric: tabular-nums; }
.withheld { color: #8a5a00; font-style: italic; } .rest { color: #555; font-style: italic; }
code { font-size: 0.95em; background: #eef1f4; padding: 0 3px; border-radius: 2px; }
dl.definition { background: #f3f6f9; padding: 10px 14px; font-size: 13px; margin-top: 12px; }
dl.definition dt { font-weight: 600; margin-top: 6px; } dl.definition dd { margin-left: 0; }
dl.definition ul { margin: 2px 0; padding-left: 18px; }
summary { cursor: pointer; color: #0b4f8a; }
.reading { background: #fff8e5; padding: 8px 14px; border-left: 4px solid #e69f00; }
p.sources { font-size: 12.5px; color: #333; }
.revised { background: #fdecea; padding: 6px 12px; border-left: 4px solid #b3261e; }
section.summary { border-top: 3px solid #1b1b1b; }
.headlines { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr));
             gap: 10px; margin-top: 10px; }
a.headline { display: flex; flex-direction: column; gap: 2px; padding: 10px 12px;
             border: 1px solid #c9d3dd; border-left: 5px solid #0b4f8a; color: inherit;
             text-decoration: none; background: #fff; }
a.headline:hover { background: #f3f6f9; }
a.headline .value { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
a.headline .label { font-size: 13.5px; } a.headline .period { font-size: 12px; color: #444; }
a.headline .section { font-size: 12px; color: #0b4f8a; margin-top: auto; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { background: #fff; color: #000; }
  main { max-width: none; padding: 0; }
  nav, summary { display: none; }
  section { break-before: page; border-top: 2px solid #000; margin-top: 0; }
  section.summary { break-before: avoid; break-after: page; }
  figure, figcaption, dl.definition, a.headline, tr { break-inside: avoid; }
  h2 { break-after: avoid; }
  figure svg { width: 100% !important; max-width: 100% !important; }
  a { color: inherit; text-decoration: none; } nav a, a.headline .section { color: #000; }
  .reading, dl.definition, code { background: none; }
  .reading { border: 1px solid #000; } dl.definition { border: 1px solid #777; }
  a.headline { border: 1px solid #000; border-left-width: 5px; }
  .headlines { grid-template-columns: repeat(3, 1fr); gap: 6px; }
  a.headline .value { font-size: 20px; }
  .withheld, .rest { color: #000; }
  details:not([open]) { display: none; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""
)


def render_report(
    tables: dict[str, pa.Table | None], generated: dt.datetime, pack: Pack | None = None
) -> str:
    """The page for the marts' tables (None: not computed)."""
    pack = pack or Pack(current_contracts(), {}, _last_month(tables))
    toc = "".join(f'<li><a href="#{_e(m.name)}">{_e(m.title)}</a></li>' for m in MARTS.values())
    summary = summary_html(tables, {m.name: m.title for m in MARTS.values()})
    sections = "".join(_section(m, tables.get(m.name), pack) for m in MARTS.values())
    revised = {name: len(r) for name, r in pack.revisions.items() if r}
    revisions = (
        "<p class=revised><strong>Revised figures.</strong> "
        + ", ".join(
            f'<a href="#{_e(n)}-revised">{_e(MARTS[n].title)}</a> ({c:,})'
            for n, c in revised.items()
            if n in MARTS
        )
        + " differ from the previous pack"
        + (f" of {_e(pack.previous_at.strftime('%d %B %Y, %H:%M'))}" if pack.previous_at else "")
        + ": each section lists them, with the restatement that changed them.</p>"
        if revised
        else ""
    )
    note = f"<p class=note><strong>{_e(pack.note)}</strong></p>" if pack.note else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MOPAC oversight pack</title><style>{CSS}</style></head>
<body><main>
<header><h1>MOPAC oversight pack</h1>
<p>The Metropolitan Police Service's performance, from the data it shares with MOPAC.</p>
<p class=note>Generated {_e(generated.strftime("%d %B %Y, %H:%M"))} from warehouse.duckdb.</p>
<p class=note>Breaches and notices for data-sharing leads: <a href="breach-review.html">the
breach review page</a> (<code>datashare review</code> writes it beside this pack).</p>
{note}{revisions}
</header>
{summary}
<div class=reading><p><strong>Reading this pack.</strong> Rates per 1,000 are per 1,000 London
residents of the group on Census day 2021. "Times the White rate" compares each group with
White Londoners: 3.0× means three times as likely. Figures based on very few people are
<span class=withheld>withheld</span> in published measures, never shown as zero. Categories
are the ones the data-sharing agreements list: any other value the force sent is counted in
one group, <span class=rest>{NOT_AGREED}</span>, drawn in grey, with a note saying how many
rows it holds. Each section ends with the measure's definition and its caveats.</p></div>
<nav><h2>Measures</h2><ol>{toc}</ol></nav>
{sections}
</main></body></html>
"""


# Marts by month: (mart, its month column). Trust is quarterly and has an axis of its own.
_MONTHLY = {
    "stop_search_disproportionality": "month", "stop_search_outcomes": "month",
    "crime_trends": "month", "use_of_force_subjects": "month",
    "use_of_force_tactics": "month", "complaints_timeliness": "month",
    "emergency_response": "month", "workforce_representation": "month",
}  # fmt: skip


def _last_month(tables: dict[str, pa.Table | None]) -> dt.date | None:
    """The latest month of any monthly mart (when the delivered periods are not known)."""
    months = [
        m
        for name, column in _MONTHLY.items()
        if (t := tables.get(name)) is not None and t.num_rows
        for m in [max(v for v in t.column(column).to_pylist() if v is not None)]
    ]
    return max(months, default=None)


def read_marts(warehouse_path: Path) -> dict[str, pa.Table | None]:
    """Each mart's rows from the warehouse (None when its view does not exist yet)."""
    tables: dict[str, pa.Table | None] = {}
    with connect(warehouse_path) as con:
        present = {
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE schema_name = 'oversight'"
            ).fetchall()
        }
        for name in MARTS:
            tables[name] = (
                con.sql(f"SELECT * FROM oversight.{name}").to_arrow_table()
                if name in present
                else None
            )
    return tables


def read_pack(
    warehouse_path: Path, tables: dict[str, pa.Table | None], contracts: dict[str, Contract]
) -> Pack:
    """The agreements, the latest period curated for each contract, and the month every
    monthly chart ends with: the latest month delivered of a monthly contract."""
    periods: dict[str, str] = {}
    with connect(warehouse_path) as con:
        present = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'curated' UNION "
                "SELECT view_name FROM duckdb_views() WHERE schema_name = 'curated'"
            ).fetchall()
        }
        for name in sorted(set(contracts) & present):
            (latest,) = con.execute(f"SELECT max(_period) FROM curated.{name}").fetchone()
            if latest:
                periods[name] = latest
    monthly = [
        first_of(p) for name, p in periods.items() if contracts[name].schedule.period == "monthly"
    ]
    last = max(monthly, default=None) or _last_month(tables)
    return Pack(contracts, periods, last, read_sources(warehouse_path))


def write_report(
    warehouse_path: Path | str,
    output_html: Path | str,
    revisions: dict[str, list] | None = None,
    previous_at: dt.datetime | None = None,
    note: str = "",
) -> Path:
    """Write the oversight pack for `warehouse_path` to `output_html` (atomically); the
    figures `revisions` (by mart) are marked revised since the pack of `previous_at`."""
    output = Path(output_html)
    output.parent.mkdir(parents=True, exist_ok=True)
    tables = read_marts(Path(warehouse_path))
    pack = read_pack(Path(warehouse_path), tables, current_contracts())
    pack = dataclasses.replace(pack, revisions=revisions or {}, previous_at=previous_at, note=note)
    page = render_report(tables, dt.datetime.now(), pack)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(output)
    return output
