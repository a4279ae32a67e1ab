"""The oversight pack's charts: one function per mart, from its rows to the charts its
section shows, with the notes under them (what is withheld, what the window covers)."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from pipelines.oversight.charts import (
    WITHHELD_VALUE,
    Reference,
    bar_chart,
    fmt_count,
    fmt_rate,
    fmt_ratio,
    fmt_share,
    line_chart,
    month_label,
)
from pipelines.oversight.mart_runner import Mart, plain_value
from pipelines.validation.agreed_values import NOT_AGREED
from schemas.contract import Contract


def escape_html(text: object) -> str:
    return html.escape(str(text), quote=True)


def inline(text: str) -> str:
    """Escaped text with `code` spans as <code> (mart texts are written for Markdown too)."""
    escaped = escape_html(text)
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


def first_of(period: str) -> dt.date:
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
