"""The oversight pack: one self-contained HTML page with a section and chart per measure.

`write_report(warehouse_path, output_html)` reads the marts (`oversight.<mart>` views of
warehouse.duckdb, read-only) and writes a page a board member can read: for each measure,
its charts (inline SVG drawn here: no script, no web font, nothing fetched, so it opens
offline and prints), its latest figures, and its definition and caveats as the mart
defines them. A mart not computed yet, or with no rows, says so instead of a chart.
Withheld (suppressed) figures are shown as "withheld", never as zero.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.oversight_marts import MARTS, Mart, plain_value
from pipelines.warehouse import connect

# Okabe-Ito, readable by people with colour-blindness; then darker tones for more series.
PALETTE = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
    "#7F7F7F", "#8C510A", "#01665E", "#762A83", "#B2182B",
)  # fmt: skip
WHITE_REFERENCE = "#444444"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"
WITHHELD = "withheld"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# --- number formats -------------------------------------------------------------------


def fmt_count(v: object) -> str:
    return "" if v is None else f"{int(v):,}"


def fmt_rate(v: object) -> str:
    return "" if v is None else f"{float(v):,.2f}"


def fmt_ratio(v: object) -> str:
    return "" if v is None else f"{float(v):.2f}×"


def fmt_share(v: object) -> str:
    return "" if v is None else f"{float(v) * 100:.1f}%"


def fmt_number(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, dt.date):
        return v.strftime("%b %Y") if v.day == 1 else v.isoformat()
    return str(v)


def month_label(v: dt.date) -> str:
    return v.strftime("%b %Y")


# --- SVG charts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    label: str
    value: float
    colour: str = WHITE_REFERENCE


def _nice_max(value: float) -> float:
    if value <= 0 or math.isnan(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        top = step * 10**exponent
        if top >= value * 1.02:
            return top
    return 10 ** (exponent + 1)


def _ticks(top: float) -> list[float]:
    """Grid values from 0 to `top` in round steps (1, 2, 2.5 or 5 times a power of 10)."""
    for count in (5, 4, 6, 3, 8):
        step = top / count
        mantissa = step / 10 ** math.floor(math.log10(step))
        if any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5)):
            return [step * i for i in range(count + 1)]
    return [top * i / 5 for i in range(6)]


def _wrap(text: str, chars: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _heading(title: str, subtitle: str, width: int = 760) -> tuple[list[str], int]:
    """The chart's title and wrapped subtitle; returns the parts and the height used."""
    parts = [f'<text x="0" y="16" font-size="15" font-weight="600">{_e(title)}</text>']
    y = 16
    for line in _wrap(subtitle, width // 7):
        y += 17
        parts.append(f'<text x="0" y="{y}" fill="#444">{_e(line)}</text>')
    return parts, y + 18


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" role="img" aria-label="{_e(title)}" '
        f'font-family="{FONT}" font-size="12">'
        f"<title>{_e(title)}</title>" + "".join(body) + "</svg>"
    )


def _legend(names: Sequence[str], colours: Sequence[str], x: int, y: int, width: int) -> tuple:
    """Legend items in rows; returns (svg parts, height used)."""
    parts, cx, cy = [], x, y
    for name, colour in zip(names, colours, strict=True):
        w = 22 + 7 * len(name)
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 18
        parts.append(f'<rect x="{cx}" y="{cy - 9}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{cx + 16}" y="{cy + 1}">{_e(name)}</text>')
        cx += w
    return parts, cy - y + 18


class _Withheld:
    """A figure withheld by disclosure control (drawn and printed as such, never as 0)."""

    def __repr__(self) -> str:
        return WITHHELD


WITHHELD_VALUE = _Withheld()


def _label(x: float, y: float, text: str, anchor: str = "start", fill: str = "#222") -> str:
    """A value label with a white halo, readable over grid and reference lines."""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" dy=".35em" text-anchor="{anchor}" fill="{fill}" '
        f'stroke="#fff" stroke-width="3" paint-order="stroke">{_e(text)}</text>'
    )


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[object]]],
    value_format: Callable[[object], str] = fmt_rate,
    axis_label: str = "",
    references: Sequence[Reference] = (),
    subtitle: str = "",
    notes: dict[tuple[str, str], str] | None = None,
    width: int = 760,
) -> str:
    """Horizontal bars, a group per category and a bar per series.

    A value of None is "not available" (or `notes[(series, category)]`); WITHHELD_VALUE
    is "withheld" (disclosure control).
    """
    notes = notes or {}
    label_w = min(300, 20 + 7 * max((len(c) for c in categories), default=5))
    plot_x, plot_w = label_w, width - label_w - 80
    bar_h = 16 if len(series) > 1 else 20
    group_h = bar_h * len(series) + 10
    body, top = _heading(title, subtitle, width)
    legend_h = 0
    if len(series) > 1 or references:
        names = [s[0] for s in series] + [r.label for r in references]
        colours = list(PALETTE[: len(series)]) + [r.colour for r in references]
        legend, legend_h = _legend(names, colours, plot_x, top, plot_w)
        body += legend
    plot_y = top + legend_h + 4
    plot_h = group_h * len(categories)
    height = plot_y + plot_h + 40
    values = [float(v) for _, vs in series for v in vs if isinstance(v, int | float)]
    values += [r.value for r in references]
    vmax = _nice_max(max(values, default=1.0))

    def sx(v: float) -> float:
        return plot_x + plot_w * v / vmax

    for t in _ticks(vmax):
        x = sx(t)
        body.append(
            f'<line x1="{x:.1f}" y1="{plot_y}" x2="{x:.1f}" y2="{plot_y + plot_h}" '
            'stroke="#e3e3e3"/>'
        )
        body.append(
            f'<text x="{x:.1f}" y="{plot_y + plot_h + 14}" text-anchor="middle" '
            f'fill="#555">{_e(value_format(t))}</text>'
        )
    for ref in references:
        x = sx(ref.value)
        body.append(
            f'<line x1="{x:.1f}" y1="{plot_y - 2}" x2="{x:.1f}" y2="{plot_y + plot_h}" '
            f'stroke="{ref.colour}" stroke-width="2" stroke-dasharray="6 4">'
            f"<title>{_e(ref.label)}: {_e(value_format(ref.value))}</title></line>"
        )
    for i, category in enumerate(categories):
        gy = plot_y + i * group_h + 5
        body.append(
            f'<text x="{plot_x - 8}" y="{gy + (group_h - 10) / 2:.1f}" dy=".35em" '
            f'text-anchor="end">{_e(category)}</text>'
        )
        for j, (name, vs) in enumerate(series):
            v, y = vs[i], gy + j * bar_h
            prefix = f"{name}: " if len(series) > 1 else ""
            if not isinstance(v, int | float):
                missing = notes.get((name, category), f"{prefix}not available")
                text = f"{prefix}{WITHHELD} (too few to show)" if v is WITHHELD_VALUE else missing
                body.append(_label(plot_x + 4, y + (bar_h - 3) / 2, text, fill="#8a5a00"))
                continue
            w = max(sx(float(v)) - plot_x, 0.5)
            body.append(
                f'<rect x="{plot_x}" y="{y:.1f}" width="{w:.1f}" height="{bar_h - 3}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{_e(prefix)}{_e(category)}: '
                f"{_e(value_format(v))}</title></rect>"
            )
            body.append(_label(plot_x + w + 4, y + (bar_h - 3) / 2, value_format(v)))
    body.append(
        f'<line x1="{plot_x}" y1="{plot_y}" x2="{plot_x}" y2="{plot_y + plot_h}" stroke="#333"/>'
    )
    if axis_label:
        body.append(
            f'<text x="{plot_x + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" '
            f'fill="#333">{_e(axis_label)}</text>'
        )
    return _svg(width, height, title, body)


def line_chart(
    title: str,
    x_values: Sequence[dt.date],
    series: Sequence[tuple[str, Sequence[object]]],
    value_format: Callable[[object], str] = fmt_number,
    axis_label: str = "",
    references: Sequence[Reference] = (),
    subtitle: str = "",
    y_max: float | None = None,
    width: int = 760,
    plot_h: int = 260,
) -> str:
    """Trend lines over months; a value that is not a number (withheld, not delivered)
    leaves a gap."""
    body, top = _heading(title, subtitle, width)
    names = [s[0] for s in series] + [r.label for r in references]
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(series))]
    colours += [r.colour for r in references]
    legend, legend_h = _legend(names, colours, 70, top, width - 90)
    body += legend
    plot_x, plot_y = 78, top + legend_h + 8
    plot_w = width - plot_x - 40
    height = plot_y + plot_h + 40
    values = [float(v) for _, vs in series for v in vs if isinstance(v, int | float)]
    values += [r.value for r in references]
    vmax = y_max or _nice_max(max(values, default=1.0))
    n = len(x_values)
    # Positions follow the calendar, so a month with no delivery leaves its space.
    days = [(x - x_values[0]).days for x in x_values]
    span = days[-1] if n > 1 and days[-1] > 0 else 0

    def sx(i: int) -> float:
        return plot_x + (plot_w * days[i] / span if span else plot_w / 2)

    def sy(v: float) -> float:
        return plot_y + plot_h - plot_h * v / vmax

    for t in _ticks(vmax):
        y = sy(t)
        body.append(
            f'<line x1="{plot_x}" y1="{y:.1f}" x2="{plot_x + plot_w}" y2="{y:.1f}" '
            'stroke="#e3e3e3"/>'
        )
        body.append(
            f'<text x="{plot_x - 6}" y="{y:.1f}" dy=".35em" text-anchor="end" '
            f'fill="#555">{_e(value_format(t))}</text>'
        )
    step = max(1, math.ceil(n / 10))
    shown = [i for i in range(n) if i % step == 0]
    if n - 1 not in shown:
        if shown and (n - 1 - shown[-1]) < step * 0.75:
            shown.pop()
        shown.append(n - 1)
    for i in shown:
        body.append(
            f'<text x="{sx(i):.1f}" y="{plot_y + plot_h + 16}" text-anchor="middle" '
            f'fill="#555">{_e(month_label(x_values[i]))}</text>'
        )
    for ref in references:
        y = sy(ref.value)
        body.append(
            f'<line x1="{plot_x}" y1="{y:.1f}" x2="{plot_x + plot_w}" y2="{y:.1f}" '
            f'stroke="{ref.colour}" stroke-width="2" stroke-dasharray="6 4">'
            f"<title>{_e(ref.label)}</title></line>"
        )
    for j, (name, vs) in enumerate(series):
        colour = PALETTE[j % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(vs):
            if isinstance(v, int | float):
                runs[-1].append((sx(i), sy(float(v))))
            else:
                runs.append([])
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                body.append(
                    f'<polyline points="{points}" fill="none" stroke="{colour}" '
                    'stroke-width="2.2"/>'
                )
        for i, v in enumerate(vs):
            if isinstance(v, int | float):
                body.append(
                    f'<circle cx="{sx(i):.1f}" cy="{sy(float(v)):.1f}" r="3" fill="{colour}">'
                    f"<title>{_e(name)}, {_e(month_label(x_values[i]))}: "
                    f"{_e(value_format(v))}</title></circle>"
                )
    body.append(
        f'<line x1="{plot_x}" y1="{plot_y + plot_h}" x2="{plot_x + plot_w}" '
        f'y2="{plot_y + plot_h}" stroke="#333"/>'
    )
    if axis_label:
        mid = plot_y + plot_h / 2
        body.append(
            f'<text x="14" y="{mid:.1f}" text-anchor="middle" fill="#333" '
            f'transform="rotate(-90 14 {mid:.1f})">{_e(axis_label)}</text>'
        )
    return _svg(width, height, title, body)


# --- reading the marts ----------------------------------------------------------------


def withheld(mart: Mart, row: dict, column: str) -> bool:
    """Whether `column` of `row` is withheld: its own count, or the count it derives from,
    was suppressed."""
    counts = [s.count for s in mart.suppressions if s.flag and column in s.withheld]
    return any(row.get(f"{c}_suppressed") for c in counts) or bool(row.get(f"{column}_suppressed"))


class MartData:
    """A mart's rows, queryable with SQL as `mart`."""

    def __init__(self, mart: Mart, table: pa.Table) -> None:
        self.mart = mart
        self.table = table
        self.con = duckdb.connect()
        self.con.register("mart", table)

    def rows(self, sql: str) -> list[dict]:
        rows = self.con.sql(sql).to_arrow_table().to_pylist()
        return [{k: plain_value(v) for k, v in r.items()} for r in rows]

    def value(self, row: dict | None, column: str) -> object:
        """The figure to draw: the value, WITHHELD_VALUE, or None (not available)."""
        if not row:
            return None
        if withheld(self.mart, row, column):
            return WITHHELD_VALUE
        return row.get(column)

    def close(self) -> None:
        self.con.close()


def _series_by(
    d: MartData,
    rows: list[dict],
    x: str,
    name: str,
    value: str,
    names: Sequence[str] | None = None,
) -> tuple[list, list[tuple[str, list]]]:
    xs = sorted({r[x] for r in rows})
    names = list(names) if names else list(dict.fromkeys(r[name] for r in rows))
    index = {(r[x], r[name]): r for r in rows}
    return xs, [(n, [d.value(index.get((xv, n)), value) for xv in xs]) for n in names]


GROUPS = ("White", "Asian", "Black", "Mixed", "Other")


# --- one chart function per mart -------------------------------------------------------


def _latest_12(d: MartData, extra: str = "") -> list[dict]:
    return d.rows(
        "SELECT * FROM mart WHERE time_window = '12 months' "
        f"AND month = (SELECT max(month) FROM mart) {extra}"
    )


def _window_note(rows: list[dict]) -> str:
    if not rows:
        return ""
    r = rows[0]
    span = f"12 months {month_label(r['window_start'])} to {month_label(r['month'])}"
    months = r["months_with_data"]
    if months < 12:
        return f"{span}: {months} of the 12 months delivered so far"
    return span


def chart_disproportionality(d: MartData) -> list[str]:
    rows = _latest_12(d)
    by = {(r["basis"], r["ethnic_group"]): r for r in rows}
    series = [
        (basis, [d.value(by.get((basis, g)), "rate_per_1000") for g in GROUPS])
        for basis in ("self-defined", "officer-defined")
    ]
    refs = [
        Reference(f"White rate ({basis})", by[(basis, "White")]["white_rate_per_1000"], colour)
        for basis, colour in (("self-defined", "#003f66"), ("officer-defined", "#8a3300"))
        if isinstance(by.get((basis, "White"), {}).get("white_rate_per_1000"), float)
    ]
    charts = [
        bar_chart(
            "Stop and search: searches per 1,000 residents, by ethnic group",
            GROUPS,
            series,
            fmt_rate,
            "searches per 1,000 London residents of the group (Census 2021)",
            refs,
            subtitle=f"{_window_note(rows)}. Dashed lines: the White rate.",
            notes={("officer-defined", "Mixed"): "officer-defined: officers cannot record Mixed"},
        )
    ]
    trend = d.rows(
        "SELECT * FROM mart WHERE time_window = 'month' AND basis = 'self-defined' "
        "AND ethnic_group IN ('Asian', 'Black', 'Mixed', 'Other')"
    )
    if trend:
        xs, ser = _series_by(d, trend, "month", "ethnic_group", "ratio_to_white", GROUPS[1:])
        charts.append(
            line_chart(
                "Times the White rate, month by month",
                xs,
                ser,
                fmt_ratio,
                "ratio to the White rate",
                [Reference("White = 1", 1.0)],
                subtitle="Self-defined ethnicity; above the dashed line: searched more often "
                "than White Londoners.",
            )
        )
    return charts


def chart_stop_search_outcomes(d: MartData) -> list[str]:
    rows = _latest_12(
        d, "AND basis = 'self-defined' AND legislation = 'All' AND object_of_search = 'All'"
    )
    by = {r["ethnic_group"]: r for r in rows}
    cats = [g for g in (*GROUPS, "Not stated", "Not recorded") if g in by]
    refs = []
    if isinstance(by.get("All", {}).get("action_taken_share"), float):
        refs.append(Reference("All searches", by["All"]["action_taken_share"]))
    charts = [
        bar_chart(
            "Searches with an outcome other than no further action",
            cats,
            [("share", [d.value(by[g], "action_taken_share") for g in cats])],
            fmt_share,
            "share of searches",
            refs,
            subtitle=f"{_window_note(rows)}, by self-defined ethnic group. Dashed: all searches.",
        )
    ]
    legislation = _latest_12(
        d, "AND basis = 'self-defined' AND ethnic_group = 'All' AND legislation <> 'All' "
        "AND object_of_search = 'All' ORDER BY searches DESC NULLS LAST",
    )  # fmt: skip
    if legislation:
        charts.append(
            bar_chart(
                "By the power used",
                [r["legislation"] for r in legislation],
                [("share", [d.value(r, "action_taken_share") for r in legislation])],
                fmt_share,
                "share of searches under the power",
                refs,
            )
        )
    return charts


def chart_crime_trends(d: MartData) -> list[str]:
    rows = d.rows(
        "SELECT month, major_category, sum(crimes) AS crimes FROM mart "
        "GROUP BY ALL HAVING count(crimes) > 0"
    )
    xs, ser = _series_by(d, rows, "month", "major_category", "crimes")
    ser.sort(key=lambda s: -max((v for v in s[1] if isinstance(v, int | float)), default=0))
    charts = [
        line_chart(
            "Recorded crime in London by major category",
            xs,
            ser,
            lambda v: f"{float(v):,.0f}",
            "crimes recorded per month",
            subtitle="All boroughs; each month from the latest release that carries it.",
        )
    ]
    change = d.rows(
        "SELECT major_category, sum(last_12_months) AS last, sum(previous_12_months) AS prev, "
        "max(month) AS month FROM mart WHERE month = (SELECT max(month) FROM mart) GROUP BY ALL "
        "HAVING count(previous_12_months) > 0 ORDER BY last DESC"
    )
    if change:
        end = change[0]["month"]
        labels = [
            f"{r['major_category']} ({(r['last'] - r['prev']) * 100 / r['prev']:+.1f}%)"
            if r["prev"]
            else r["major_category"]
            for r in change
        ]
        charts.append(
            bar_chart(
                "Last 12 months against the 12 before, London",
                labels,
                [
                    ("previous 12 months", [r["prev"] for r in change]),
                    (f"12 months to {month_label(end)}", [r["last"] for r in change]),
                ],
                lambda v: f"{float(v):,.0f}",
                "crimes recorded",
                subtitle="The change is in brackets.",
            )
        )
    return charts


def chart_crime_outcomes(d: MartData) -> list[str]:
    rows = d.rows(
        "SELECT outcome_group, sum(crimes) AS crimes, any_value(_total) AS total, "
        "any_value(month) AS month FROM ("
        " SELECT *, sum(crimes) OVER () AS _total FROM mart"
        " WHERE month = (SELECT max(month) FROM mart)) GROUP BY ALL ORDER BY crimes DESC"
    )
    if not rows:
        return []
    return [
        bar_chart(
            f"What happened to the crimes recorded in {month_label(rows[0]['month'])}",
            [r["outcome_group"] for r in rows],
            [("share of crimes", [r["crimes"] / r["total"] for r in rows])],
            fmt_share,
            "share of crimes",
            subtitle="All crime types; each crime counted once, under its latest known outcome.",
        )
    ]


def chart_use_of_force_subjects(d: MartData) -> list[str]:
    rows = _latest_12(d, "AND age_band_level = 'all ages'")
    by = {r["ethnic_group"]: r for r in rows}
    refs = []
    if isinstance(by.get("White", {}).get("white_rate_per_1000"), float):
        refs.append(Reference("White rate", by["White"]["white_rate_per_1000"]))
    return [
        bar_chart(
            "Use of force per 1,000 residents, by perceived ethnic group",
            GROUPS,
            [("all ages", [d.value(by.get(g), "rate_per_1000") for g in GROUPS])],
            fmt_rate,
            "use of force records per 1,000 London residents of the group (Census 2021)",
            refs,
            subtitle=f"{_window_note(rows)}. Dashed: the White rate.",
        )
    ]


def chart_use_of_force_tactics(d: MartData) -> list[str]:
    rows = _latest_12(d, "AND ethnic_group = 'All' ORDER BY records_with_tactic DESC NULLS LAST")
    rows = rows[:15]
    return [
        bar_chart(
            "Tactics used",
            [r["tactic"] for r in rows],
            [("records", [d.value(r, "records_with_tactic") for r in rows])],
            fmt_count,
            "use of force records listing the tactic",
            subtitle=f"{_window_note(rows)}; the 15 most used.",
        )
    ]


def chart_complaints(d: MartData) -> list[str]:
    rows = d.rows("SELECT * FROM mart")
    xs, ser = _series_by(
        d, rows, "month", "handling", "median_days_to_finalise",
        ("Schedule 3", "Outside Schedule 3"),
    )  # fmt: skip
    return [
        line_chart(
            "Complaints: median days from receipt to finalisation",
            xs,
            ser,
            lambda v: f"{float(v):,.0f}",
            "days",
            subtitle="Allegations finalised in each month; gaps are withheld (too few).",
        )
    ]


def chart_emergency(d: MartData) -> list[str]:
    rows = d.rows(
        "SELECT month, grade || ' calls within ' || any_value(target_minutes) || ' minutes' "
        "AS series, sum(attended_within_target) / sum(calls_attended) AS share "
        "FROM mart GROUP BY month, grade"
    )
    xs, ser = _series_by(d, rows, "month", "series", "share")
    return [
        line_chart(
            "Emergency calls attended within target, London",
            xs,
            ser,
            fmt_share,
            "share of attended calls",
            subtitle="I (immediate): 15 minutes; S (significant): 60 minutes.",
            y_max=1.0,
        )
    ]


def chart_trust(d: MartData) -> list[str]:
    rows = d.rows(
        "SELECT date AS month, measure, any_value(mean_of_boroughs) AS mean FROM mart GROUP BY ALL"
    )
    xs, ser = _series_by(d, rows, "month", "measure", "mean")
    return [
        line_chart(
            "Trust and confidence: Public Attitude Survey",
            xs,
            ser,
            fmt_share,
            "share of respondents",
            subtitle="Mean of the boroughs, rolling 12 months to each quarter's end.",
        )
    ]


def chart_workforce(d: MartData) -> list[str]:
    rows = d.rows(
        "SELECT * FROM mart WHERE worker_type = 'All' AND month = (SELECT max(month) FROM mart)"
    )
    by = {r["ethnic_group"]: r for r in rows}
    month = rows[0]["month"] if rows else None
    return [
        bar_chart(
            "Workforce against London's population, by ethnic group",
            GROUPS,
            [
                (
                    "workforce (stated ethnicity)",
                    [d.value(by.get(g), "share_of_stated") for g in GROUPS],
                ),
                ("London residents", [d.value(by.get(g), "london_share") for g in GROUPS]),
            ],
            fmt_share,
            "share of people",
            subtitle=f"All worker types in the 12 BCUs, {month_label(month) if month else ''}.",
        )
    ]


def chart_data_quality(d: MartData) -> list[str]:
    rows = d.rows(
        "SELECT contract || '.' || field AS series, strptime(period, '%Y-%m')::DATE AS month, "
        "completeness_percent FROM mart WHERE agreed_max_missing_percent IS NOT NULL"
    )
    if not rows:
        return []
    xs, ser = _series_by(d, rows, "month", "series", "completeness_percent")
    return [
        line_chart(
            "Completeness of the fields with an agreed threshold",
            xs,
            ser,
            lambda v: f"{float(v):.0f}%",
            "% of curated rows with the field",
            subtitle="By delivery period.",
            y_max=100.0,
        )
    ]


@dataclass(frozen=True)
class Section:
    charts: Callable[[MartData], list[str]]
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
    caveats = "".join(f"<li>{_e(c)}</li>" for c in mart.caveats)
    return (
        "<dl class=definition>"
        f"<dt>Numerator</dt><dd>{_e(mart.numerator)}</dd>"
        f"<dt>Denominator</dt><dd>{_e(mart.denominator)}</dd>"
        f"<dt>Grain</dt><dd>{_e(mart.grain)}</dd>"
        f"<dt>Source fields</dt><dd>{_e(', '.join(mart.source_fields))}</dd>"
        f"<dt>Disclosure control</dt><dd>{_e(mart.disclosure_text)}</dd>"
        f"<dt>Caveats</dt><dd><ul>{caveats}</ul></dd>"
        f"<dt>Table</dt><dd><code>oversight.{_e(mart.name)}</code> in warehouse.duckdb</dd>"
        "</dl>"
    )


def _section(mart: Mart, table: pa.Table | None) -> str:
    spec = SECTIONS[mart.name]
    parts = [f'<section id="{_e(mart.name)}"><h2>{_e(mart.title)}</h2>']
    parts.append(f"<p class=lead>{_e(mart.definition)}</p>")
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
            charts = spec.charts(data)
            parts += [f"<figure>{svg}</figure>" for svg in charts] or [
                "<p class=empty>No figures to draw for the latest period.</p>"
            ]
            parts.append(_latest_table(mart, data, spec.columns))
        finally:
            data.close()
    parts.append(_definition(mart))
    parts.append("</section>")
    return "".join(parts)


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
table { border-collapse: collapse; font-size: 12.5px; margin: 8px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td { font-variant-numeric: tabular-nums; }
.withheld { color: #8a5a00; font-style: italic; }
dl.definition { background: #f3f6f9; padding: 10px 14px; font-size: 13px; margin-top: 12px; }
dl.definition dt { font-weight: 600; margin-top: 6px; } dl.definition dd { margin-left: 0; }
dl.definition ul { margin: 2px 0; padding-left: 18px; }
summary { cursor: pointer; color: #0b4f8a; }
.reading { background: #fff8e5; padding: 8px 14px; border-left: 4px solid #e69f00; }
@media print { details { display: block; } body { background: #fff; } }
"""
)


def render_report(tables: dict[str, pa.Table | None], generated: dt.datetime) -> str:
    """The page for the marts' tables (None: not computed)."""
    toc = "".join(f'<li><a href="#{_e(m.name)}">{_e(m.title)}</a></li>' for m in MARTS.values())
    sections = "".join(_section(m, tables.get(m.name)) for m in MARTS.values())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MOPAC oversight pack</title><style>{CSS}</style></head>
<body><main>
<header><h1>MOPAC oversight pack</h1>
<p>The Metropolitan Police Service's performance, from the data it shares with MOPAC.</p>
<p class=note>Generated {_e(generated.strftime("%d %B %Y, %H:%M"))} from warehouse.duckdb.</p>
</header>
<div class=reading><p><strong>Reading this pack.</strong> Rates per 1,000 are per 1,000 London
residents of the group on Census day 2021. "Times the White rate" compares each group with
White Londoners: 3.0× means three times as likely. Figures based on very few people are
<span class=withheld>withheld</span> in published measures, never shown as zero. Each
section ends with the measure's definition and its caveats.</p></div>
<nav><h2>Measures</h2><ol>{toc}</ol></nav>
{sections}
</main></body></html>
"""


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


def write_report(warehouse_path: Path | str, output_html: Path | str) -> Path:
    """Write the oversight pack for `warehouse_path` to `output_html` (atomically)."""
    output = Path(output_html)
    output.parent.mkdir(parents=True, exist_ok=True)
    page = render_report(read_marts(Path(warehouse_path)), dt.datetime.now())
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(output)
    return output
