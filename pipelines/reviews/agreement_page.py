"""The agreement review as a page and its Markdown twin (the same sections, tables and points),
and where they are written: `datashare agreement review` and the desk call this."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import jinja2
from markupsafe import Markup

from pipelines.lake.store import Lake
from pipelines.reviews.agreement_review import (
    LONDON,
    AgreementReview,
    Section,
    build_review,
    review_tables,
)
from schemas.contract import Contract

# ---------------------------------------------------------------------------------------
# The page and its Markdown twin: the same sections, tables and points.
# ---------------------------------------------------------------------------------------

PAGE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Agreement review: {{ r.title }} ({{ r.first }} to {{ r.last }})</title>
<style>
body { font: 11pt/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #111;
       max-width: 62rem; margin: 1.5rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #999; margin-top: 1.8rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #bbb; padding: .2rem .45rem; text-align: left; vertical-align: top; }
th { background: #eee; }
.meta { color: #444; }
.points li { margin: .3rem 0; }
svg { max-width: 100%; height: auto; }
@page { size: A4; margin: 15mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; }
  table, svg, li { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
</style>
</head>
<body>
<h1>Agreement review: {{ r.title }}</h1>
<p class="meta">Contract {{ r.contract }}{% if r.reference %}, agreement {{ r.reference }}{%
endif %}. Periods {{ r.first }} to {{ r.last }}; figures from the warehouse on
{{ r.today.strftime("%d %B %Y") }}.</p>
<h2 id="points">Points for the review meeting</h2>
<ol class="points">
{% for p in r.points %}<li>{{ p.text }} <a href="#{{ p.anchor }}">Evidence</a></li>
{% endfor %}</ol>
{% for s in r.sections %}
<h2 id="{{ s.anchor }}">{{ s.title }}</h2>
{% for text in s.paragraphs %}<p>{{ text }}</p>
{% endfor %}{% if s.chart %}<figure>{{ s.chart }}</figure>{% endif %}
{% for t in s.tables %}<table>
<thead><tr>{% for h in t.headers %}<th scope="col">{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in t.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% endfor %}{% endfor %}
</body>
</html>
"""
)


def render_html(review: AgreementReview) -> str:
    """The review as one self-contained HTML page: print styles, no script, nothing fetched.
    Every text is escaped (Jinja's autoescape); only the charts' SVG is markup, and
    pipelines/oversight/charts escapes the text in it."""
    sections = [
        Section(s.anchor, s.title, s.paragraphs, s.tables, Markup(s.chart) if s.chart else "")
        for s in review.sections
    ]
    shown = AgreementReview(**{**review.__dict__, "sections": sections})
    return PAGE.render(r=shown)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md(text: object) -> str:
    """Text as Markdown shows it literally: markup from a delivery stays text."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def render_markdown(review: AgreementReview) -> str:
    """The review in Markdown: the same points, sections and tables as the page."""
    r = review
    lines = [
        f"# Agreement review: {_md(r.title)}",
        "",
        f"Contract {_md(r.contract)}"
        + (f", agreement {_md(r.reference)}" if r.reference else "")
        + f". Periods {r.first} to {r.last}; figures from the warehouse on "
        f"{r.today:%d %B %Y}.",
        "",
        "## Points for the review meeting",
        "",
    ]
    lines += [f"{i}. {_md(p.text)} ([evidence](#{p.anchor}))" for i, p in enumerate(r.points, 1)]
    for s in r.sections:
        lines += ["", f'<a id="{s.anchor}"></a>', "", f"## {_md(s.title)}", ""]
        for text in s.paragraphs:
            lines += [_md(text), ""]
        for t in s.tables:
            lines.append("| " + " | ".join(_md(h) for h in t.headers) + " |")
            lines.append("|" + "---|" * len(t.headers))
            lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in t.rows]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def review_paths(home: Path, contract: str) -> tuple[Path, Path]:
    """Where the review of `contract` is written: `<home>/reports/agreement-review-<contract>`
    `.html` and `.md` (the desk can link or serve the HTML one)."""
    stem = home / "reports" / f"agreement-review-{contract}"
    return stem.with_suffix(".html"), stem.with_suffix(".md")


# What the review reads; a warehouse built by an earlier version may lack some of it.
READS = (("governance", "deliveries"), ("governance", "breach_register"),
         ("governance", "breach_history"), ("governance", "erasures"),
         ("governance", "quarantine"))  # fmt: skip


def reads_as_review_needs(warehouse: Path) -> bool:
    """Whether `warehouse` has every view the review reads, with the clause numbers
    (a warehouse built before them is rebuilt from the lake by `ensure_current`)."""
    if not warehouse.exists():
        return False
    with duckdb.connect(str(warehouse), read_only=True) as con:
        found = set(con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() UNION ALL "
            "SELECT schema_name, table_name FROM duckdb_tables()").fetchall())  # fmt: skip
        columns = {c for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'governance' "
            "AND table_name = 'breach_register'").fetchall()}  # fmt: skip
    return set(READS) <= found and "clause_number" in columns


def ensure_current(warehouse: Path, lake: Lake, contracts: dict[str, Contract]) -> None:
    """Rebuild `warehouse` from the lake when it lacks what the review reads (none yet, or
    one an earlier version built): the review then says what the lake says now."""
    if not reads_as_review_needs(warehouse):
        from pipelines.warehouse.catalog import build_warehouse

        build_warehouse(lake, contracts, warehouse)


def agreement_review_html(
    warehouse: Path,
    lake: Lake | None,
    contract: Contract,
    today: dt.date | None = None,
    first: str | None = None,
    last: str | None = None,
) -> str:
    """The review page of `contract` as HTML, written nowhere: for a server (the desk) to
    answer with, the same page `datashare agreement review` writes. Built from the
    governance views copied once (`review_tables`): even one review queries them about ten
    times, each a fresh read of the lake (1.2 s against 0.66 s on the demo's home)."""
    today = today or dt.datetime.now(LONDON).date()
    with review_tables(warehouse) as tables:
        return render_html(build_review(tables, contract, lake, today, first, last))


def write_agreement_review(
    warehouse: Path,
    lake: Lake | None,
    contract: Contract,
    home: Path,
    today: dt.date | None = None,
    first: str | None = None,
    last: str | None = None,
    tables: duckdb.DuckDBPyConnection | None = None,
) -> tuple[AgreementReview, Path, Path]:
    """Build the review of `contract` from `warehouse` and write both forms under `home`
    (`tables`: `review_tables(warehouse)`, read once for several reviews, if given)."""
    from pipelines.warehouse.catalog import connect  # DuckDB's S3 reader: only when reading

    today = today or dt.datetime.now(LONDON).date()
    if tables is not None:
        review = build_review(tables, contract, lake, today, first, last)
    else:
        with connect(warehouse) as con:
            review = build_review(con, contract, lake, today, first, last)
    html_path, md_path = review_paths(home, contract.name)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((md_path, render_markdown(review)), (html_path, render_html(review))):
        # Written whole and renamed into place: a page being read is never half written.
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return review, html_path, md_path
