"""The oversight pack: one self-contained HTML page with a section and chart per measure.

`write_report(warehouse_path, output_html)` reads the marts (`oversight.<mart>` views of
warehouse.duckdb, read-only) and writes a page a board member can read: a first page of
headline figures (`pipelines/oversight/pack_summary.py`), then for each measure its charts (inline
SVG from `pipelines/oversight/charts.py`: no script, no web font, nothing fetched, so it opens
offline and prints), its latest figures, and its definition and caveats as the mart
defines them. A mart not computed yet, or with no rows, says so instead of a chart.
Withheld (suppressed) figures are shown as "withheld", never as zero.

Categories are the agreed ones: a value the agreement keeps with a breach is in the marts'
one group "Not an agreed value" (`pipelines/validation/agreed_values.py`), drawn apart in
grey with a note under the chart saying how many rows it holds and which rule they break. Every
monthly chart's axis ends at the same month, the latest delivered, so the charts line up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.oversight.charts import (  # noqa: F401 (re-exported: the pack's charting approach)
    FONT,
    PALETTE,
    WITHHELD,
    WITHHELD_VALUE,
    Reference,
    bar_chart,
    fmt_count,
    fmt_number,
    fmt_rate,
    fmt_ratio,
    fmt_share,
    line_chart,
    month_label,
)
from pipelines.oversight.mart_runner import MARTS, Mart, current_contracts, plain_value
from pipelines.oversight.pack_archive import read_sources
from pipelines.oversight.pack_summary import summary_html
from pipelines.validation.agreed_values import NOT_AGREED
from pipelines.warehouse.catalog import connect
from schemas.contract import Contract


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def inline(text: str) -> str:
    """Escaped text with `code` spans as <code> (mart texts are written for Markdown too)."""
    escaped = _e(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped).replace("`", "'")


def contract_title(name: str) -> str:
    """A contract as people name it ("Stop and search"), as its agreement page does."""
    return name.replace("_", " ").capitalize()


def column_title(contract: Contract | None, column: str) -> str:
    """A contract column as people name it: its published header when that is words
    ("officer-defined ethnicity"), else its name in words ("subject ethnicity")."""
    words = column.replace("_", " ")
    if contract is None:
        return words
    try:
        source = contract.column(column).source_name
    except KeyError:
        return words
    return source.lower() if source.lower().replace("-", " ") == words else words


@dataclass(frozen=True)
class Chart:
    """A chart and the notes printed under it (data quality, the period and why)."""

    svg: str
    notes: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()  # (name, description) of what the legend names


@dataclass(frozen=True)
class Pack:
    """What every chart of the pack shares: the agreements, the latest delivered period
    of each contract, and the month every monthly axis ends with."""

    contracts: dict[str, Contract] = field(default_factory=dict)
    periods: dict[str, str] = field(default_factory=dict)  # contract -> latest YYYY-MM
    last_month: dt.date | None = None
    # governance.mart_sources rows (pipelines/lake/provenance.py): what fed each mart.
    sources: list[dict] = field(default_factory=list)
    # Figures that differ from the previous pack's (pipelines/oversight/pack_archive.py), by mart.
    revisions: dict[str, list] = field(default_factory=dict)
    previous_at: dt.datetime | None = None  # when the pack compared with was written
    note: str = ""  # e.g. "Recomputed as of ..." for a reproduction

    def period_month(self, contract: str) -> dt.date | None:
        period = self.periods.get(contract)
        return dt.date(int(period[:4]), int(period[5:7]), 1) if period else None


def _first_of(period: str) -> dt.date:
    return dt.date(int(period[:4]), int(period[5:7]), 1)


def _month_ahead(month: dt.date, n: int = 1) -> dt.date:
    total = month.year * 12 + month.month - 1 + n
    return dt.date(total // 12, total % 12 + 1, 1)


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


def _axis_end(pack: Pack, xs: Sequence[dt.date], why: str = "") -> tuple[dt.date | None, tuple]:
    """Where a monthly axis ends (the pack's last month), and a note when the figures
    stop short of it."""
    end = pack.last_month
    if not xs or end is None or end <= xs[-1]:
        return None, ()
    note = (
        f"The figures end with {month_label(xs[-1])}; the axis runs on to {month_label(end)}, "
        "the latest month delivered, as every monthly chart of the pack does."
    )
    return end, ((f"{note} {why}" if why else note),)


def _rest_note(d: MartData, pack: Pack, column: str, counted: str) -> str:
    """The data-quality note of the group NOT_AGREED in `column`."""
    agreed = d.mart.agreed_category(column)
    if agreed is None:  # the mart does not declare the column: say what we know
        return f"{NOT_AGREED}: {counted} had a value the agreement does not list."
    return agreed.note(pack.contracts, counted)


def _how_many(n: object, unit: str, withheld_below: int | None) -> str:
    if n is None:
        return f"fewer than {withheld_below or 10} {unit} (the exact number is withheld)"
    return f"{fmt_count(n)} {unit}"


def chart_disproportionality(d: MartData, pack: Pack) -> list[Chart]:
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
        Chart(
            bar_chart(
                "Stop and search: searches per 1,000 residents, by ethnic group",
                GROUPS,
                series,
                fmt_rate,
                "searches per 1,000 London residents of the group (Census 2021)",
                refs,
                subtitle=f"{_window_note(rows)}. Dashed lines: the White rate.",
                notes={
                    ("officer-defined", "Mixed"): "officer-defined: officers cannot record Mixed"
                },
            )
        )
    ]
    trend = d.rows(
        "SELECT * FROM mart WHERE time_window = 'month' AND basis = 'self-defined' "
        "AND ethnic_group IN ('Asian', 'Black', 'Mixed', 'Other')"
    )
    if trend:
        xs, ser = _series_by(d, trend, "month", "ethnic_group", "ratio_to_white", GROUPS[1:])
        end, notes = _axis_end(pack, xs)
        charts.append(
            Chart(
                line_chart(
                    "Times the White rate, month by month",
                    xs,
                    ser,
                    fmt_ratio,
                    "ratio to the White rate",
                    [Reference("White = 1", 1.0)],
                    subtitle="Self-defined ethnicity; above the dashed line: searched more "
                    "often than White Londoners.",
                    x_end=end,
                ),
                notes,
            )
        )
    return charts


def chart_stop_search_outcomes(d: MartData, pack: Pack) -> list[Chart]:
    rows = _latest_12(
        d, "AND basis = 'self-defined' AND legislation = 'All' AND object_of_search = 'All'"
    )
    by = {r["ethnic_group"]: r for r in rows}
    cats = [g for g in (*GROUPS, "Not stated", "Not recorded") if g in by]
    refs = []
    if isinstance(by.get("All", {}).get("action_taken_share"), float):
        refs.append(Reference("All searches", by["All"]["action_taken_share"]))
    charts = [
        Chart(
            bar_chart(
                "Searches with an outcome other than no further action",
                cats,
                [("share", [d.value(by[g], "action_taken_share") for g in cats])],
                fmt_share,
                "share of searches",
                refs,
                subtitle=f"{_window_note(rows)}, by self-defined ethnic group. "
                "Dashed: all searches.",
            )
        )
    ]
    legislation = _latest_12(
        d, "AND basis = 'self-defined' AND ethnic_group = 'All' AND legislation <> 'All' "
        "AND object_of_search = 'All' ORDER BY searches DESC NULLS LAST",
    )  # fmt: skip
    if legislation:
        notes: tuple[str, ...] = ()
        rest = [r for r in legislation if r["legislation"] == NOT_AGREED]
        if rest:
            n = _how_many(rest[0]["searches"], "searches", d.mart.threshold)
            notes = (_rest_note(d, pack, "legislation", f"{n} in the 12 months"),)
        charts.append(
            Chart(
                bar_chart(
                    "By the power used",
                    [r["legislation"] for r in legislation],
                    [("share", [d.value(r, "action_taken_share") for r in legislation])],
                    fmt_share,
                    "share of searches under the power",
                    refs,
                    subtitle=f"{_window_note(legislation)}; the agreed powers, then any "
                    "other value as one group.",
                    other=NOT_AGREED,
                ),
                notes,
            )
        )
    return charts


def chart_crime_trends(d: MartData, pack: Pack) -> list[Chart]:
    rows = d.rows(
        "SELECT month, major_category, sum(crimes) AS crimes, sum(source_rows) AS source_rows "
        "FROM mart GROUP BY ALL HAVING count(crimes) > 0"
    )
    rest = [r for r in rows if r["major_category"] == NOT_AGREED]
    rest_rows = sum(r["source_rows"] or 0 for r in rest)
    if not rest_rows:  # only the zeros of the grid: no such value was delivered
        rows = [r for r in rows if r["major_category"] != NOT_AGREED]
    xs, ser = _series_by(d, rows, "month", "major_category", "crimes")
    ser.sort(key=lambda s: -max((v for v in s[1] if isinstance(v, int | float)), default=0))
    end, notes = _axis_end(
        pack, xs, "Each release ends with the month before its own, so the latest release "
        "has no figures for its own month yet.",
    )  # fmt: skip
    if rest_rows:
        crimes = sum(r["crimes"] or 0 for r in rest)
        counted = (
            f"{rest_rows:,} monthly figures ({crimes:,} crimes) from {month_label(xs[0])} to "
            f"{month_label(xs[-1])}"
        )
        notes = (*notes, _rest_note(d, pack, "major_category", counted))
    charts = [
        Chart(
            line_chart(
                "Recorded crime in London by major category",
                xs,
                ser,
                lambda v: f"{float(v):,.0f}",
                "crimes recorded per month",
                subtitle="All boroughs; each month from the latest release that carries it.",
                x_end=end,
                other=NOT_AGREED,
            ),
            notes,
        )
    ]
    change = d.rows(
        "SELECT major_category, sum(last_12_months) AS last, sum(previous_12_months) AS prev, "
        "max(month) AS month FROM mart WHERE month = (SELECT max(month) FROM mart) GROUP BY ALL "
        "HAVING count(previous_12_months) > 0 ORDER BY last DESC"
    )
    change = [r for r in change if r["major_category"] != NOT_AGREED or r["last"] or r["prev"]]
    if change:
        end = change[0]["month"]
        labels = [
            f"{r['major_category']} ({(r['last'] - r['prev']) * 100 / r['prev']:+.1f}%)"
            if r["prev"]
            else r["major_category"]
            for r in change
        ]
        other = next(
            (
                lab
                for lab, r in zip(labels, change, strict=True)
                if r["major_category"] == NOT_AGREED
            ),
            None,
        )
        change_notes: tuple[str, ...] = ()
        if other:
            (window,) = d.rows(
                "SELECT sum(source_rows) AS n, sum(crimes) AS crimes FROM mart "
                f"WHERE major_category = '{NOT_AGREED}' AND month BETWEEN "
                f"DATE '{end}' - INTERVAL 23 MONTH AND DATE '{end}'"
            )
            counted = f"{window['n'] or 0:,} monthly figures ({window['crimes'] or 0:,} crimes)"
            change_notes = (_rest_note(d, pack, "major_category", f"{counted} in these 24 months"),)
        charts.append(
            Chart(
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
                    other=other,
                ),
                change_notes,
            )
        )
    return charts


def chart_crime_outcomes(d: MartData, pack: Pack) -> list[Chart]:
    rows = d.rows(
        "SELECT outcome_group, sum(crimes) AS crimes, any_value(_total) AS total, "
        "any_value(month) AS month FROM ("
        " SELECT *, sum(crimes) OVER () AS _total FROM mart"
        " WHERE month = (SELECT max(month) FROM mart)) GROUP BY ALL ORDER BY crimes DESC"
    )
    if not rows:
        return []
    month = rows[0]["month"]
    subtitle = (
        f"All crime types; each crime counted once, under its latest known outcome. "
        f"{month_label(month)} is the latest month with crimes first recorded in it."
    )
    notes: tuple[str, ...] = ()
    delivered = pack.period_month("street_crime")
    if delivered and delivered > month:
        notes = (
            f"Why {month_label(month)}: each crime is counted once, in the month it was first "
            f"recorded. Street crime is delivered to {month_label(delivered)}, but every Crime "
            f"ID in the deliveries after {month_label(month)} had already been recorded in an "
            "earlier month, so no later month has crimes of its own yet.",
        )
    return [
        Chart(
            bar_chart(
                f"What happened to the crimes first recorded in {month_label(month)}",
                [r["outcome_group"] for r in rows],
                [("share of crimes", [r["crimes"] / r["total"] for r in rows])],
                fmt_share,
                "share of crimes",
                subtitle=subtitle,
                other="Not mapped",
            ),
            notes,
        )
    ]


def chart_use_of_force_subjects(d: MartData, pack: Pack) -> list[Chart]:
    rows = _latest_12(d, "AND age_band_level = 'all ages'")
    by = {r["ethnic_group"]: r for r in rows}
    refs = []
    if isinstance(by.get("White", {}).get("white_rate_per_1000"), float):
        refs.append(Reference("White rate", by["White"]["white_rate_per_1000"]))
    return [
        Chart(
            bar_chart(
                "Use of force per 1,000 residents, by perceived ethnic group",
                GROUPS,
                [("all ages", [d.value(by.get(g), "rate_per_1000") for g in GROUPS])],
                fmt_rate,
                "use of force records per 1,000 London residents of the group (Census 2021)",
                refs,
                subtitle=f"{_window_note(rows)}. Dashed: the White rate.",
            )
        )
    ]


def chart_use_of_force_tactics(d: MartData, pack: Pack) -> list[Chart]:
    rows = _latest_12(d, "AND ethnic_group = 'All' ORDER BY records_with_tactic DESC NULLS LAST")
    rest = [r for r in rows if r["tactic"] == NOT_AGREED]
    rows = [r for r in rows if r["tactic"] != NOT_AGREED][:15] + rest
    notes: tuple[str, ...] = ()
    if rest:
        n = _how_many(rest[0]["records_with_tactic"], "records", d.mart.threshold)
        notes = (_rest_note(d, pack, "tactic", f"{n} in the 12 months"),)
    return [
        Chart(
            bar_chart(
                "Tactics used",
                [r["tactic"] for r in rows],
                [("records", [d.value(r, "records_with_tactic") for r in rows])],
                fmt_count,
                "use of force records listing the tactic",
                subtitle=f"{_window_note(rows)}; the 15 most used agreed tactics"
                + (", then any other value as one group." if rest else "."),
                other=NOT_AGREED,
            ),
            notes,
        )
    ]


def chart_complaints(d: MartData, pack: Pack) -> list[Chart]:
    rows = d.rows("SELECT * FROM mart")
    xs, ser = _series_by(
        d, rows, "month", "handling", "median_days_to_finalise",
        ("Schedule 3", "Outside Schedule 3"),
    )  # fmt: skip
    end, notes = _axis_end(pack, xs)
    return [
        Chart(
            line_chart(
                "Complaints: median days from receipt to finalisation",
                xs,
                ser,
                lambda v: f"{float(v):,.0f}",
                "days",
                subtitle="Allegations finalised in each month, up to the end of the latest "
                "month delivered; gaps are withheld (too few).",
                x_end=end,
            ),
            notes,
        )
    ]


def chart_emergency(d: MartData, pack: Pack) -> list[Chart]:
    rows = d.rows(
        "SELECT month, grade || ' calls within ' || any_value(target_minutes) || ' minutes' "
        "AS series, sum(attended_within_target) / sum(calls_attended) AS share "
        "FROM mart GROUP BY month, grade ORDER BY grade"
    )
    xs, ser = _series_by(d, rows, "month", "series", "share")
    end, notes = _axis_end(pack, xs)
    return [
        Chart(
            line_chart(
                "Emergency calls attended within target, London",
                xs,
                ser,
                fmt_share,
                "share of attended calls",
                subtitle="I (immediate): 15 minutes; S (significant): 60 minutes.",
                y_max=1.0,
                x_end=end,
            ),
            notes,
        )
    ]


def chart_trust(d: MartData, pack: Pack) -> list[Chart]:
    rows = d.rows(
        "SELECT date AS month, measure, any_value(mean_of_boroughs) AS mean FROM mart "
        f"WHERE measure <> '{NOT_AGREED}' GROUP BY ALL"
    )
    if not rows:
        return []
    (rest,) = d.rows(
        f"SELECT count(*) FILTER (WHERE measure = '{NOT_AGREED}') AS measures, "
        f"count(*) FILTER (WHERE borough = '{NOT_AGREED}' AND measure <> '{NOT_AGREED}') "
        "AS boroughs FROM mart"
    )
    xs, ser = _series_by(d, rows, "month", "measure", "mean")
    notes: list[str] = []
    absent: list[str] = []
    if rest["measures"]:
        absent.append(f"{NOT_AGREED} (not drawn: see the note)")
        counted = f"{rest['measures']:,} published figures"
        notes.append(
            _rest_note(d, pack, "measure", counted)
            + " Figures of different measures cannot be averaged together, so the group has "
            "no line; its figures are in the mart."
        )
    if rest["boroughs"]:
        notes.append(
            _rest_note(d, pack, "borough", f"{rest['boroughs']:,} published figures")
            + " They are left out of the means of the boroughs."
        )
    return [
        Chart(
            line_chart(
                "Trust and confidence: Public Attitude Survey",
                xs,
                ser,
                fmt_share,
                "share of respondents",
                subtitle="Mean of the boroughs, rolling 12 months to each quarter's end.",
                absent=absent,
                monthly=False,
            ),
            tuple(notes),
        )
    ]


def chart_workforce(d: MartData, pack: Pack) -> list[Chart]:
    rows = d.rows(
        "SELECT * FROM mart WHERE worker_type = 'All' AND month = (SELECT max(month) FROM mart)"
    )
    by = {r["ethnic_group"]: r for r in rows}
    month = rows[0]["month"] if rows else None
    return [
        Chart(
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
        )
    ]


def field_title(pack: Pack, contract: str, column: str) -> str:
    """A key field as the legend names it: "Stop and search: officer-defined ethnicity"."""
    return f"{contract_title(contract)}: {column_title(pack.contracts.get(contract), column)}"


def chart_data_quality(d: MartData, pack: Pack) -> list[Chart]:
    rows = d.rows(
        "SELECT contract, field, strptime(period, '%Y-%m')::DATE AS month, "
        "completeness_percent FROM mart WHERE agreed_max_missing_percent IS NOT NULL "
        "ORDER BY contract, field"
    )
    if not rows:
        return []
    for r in rows:
        r["series"] = field_title(pack, r["contract"], r["field"])
    xs, ser = _series_by(d, rows, "month", "series", "completeness_percent")
    end, notes = _axis_end(pack, xs)
    fields = []
    for contract, column in dict.fromkeys((r["contract"], r["field"]) for r in rows):
        agreement = pack.contracts.get(contract)
        try:
            description = agreement.column(column).description if agreement else ""
        except KeyError:
            description = ""
        fields.append((field_title(pack, contract, column), description))
    return [
        Chart(
            line_chart(
                "Completeness of the fields with an agreed threshold",
                xs,
                ser,
                lambda v: f"{float(v):.0f}%",
                "% of curated rows with the field",
                subtitle="By delivery period.",
                y_max=100.0,
                x_end=end,
            ),
            notes,
            tuple(fields),
        )
    ]


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
        _first_of(p) for name, p in periods.items() if contracts[name].schedule.period == "monthly"
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
