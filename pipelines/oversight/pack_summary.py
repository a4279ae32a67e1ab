"""The oversight pack's first page: the few figures a board member reads first.

Each headline is one figure of one mart, with the period it covers and a link to the
mart's section, computed by SQL over the mart's rows (registered as `mart`). A withheld
figure (disclosure control) says "withheld", a figure with no data "not available": never 0.

Each headline's SQL returns one row with `value`, `withheld` (true when the figure is
withheld), `period_end` (a date) and, where the figure covers a window, `period_start`
and `months` (months in the window with data).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pipelines.oversight.charts import WITHHELD, fmt_count, fmt_ratio, fmt_share, month_label
from pipelines.oversight.mart_runner import plain_value


def fmt_percent_change(v: object) -> str:
    return "" if v is None else f"{float(v):+.1f}%"


def fmt_days(v: object) -> str:
    return "" if v is None else f"{float(v):,.0f} days"


@dataclass(frozen=True)
class Headline:
    """One figure on the summary page."""

    key: str  # stable name (the page's `data-headline`)
    mart: str
    label: str
    sql: str
    format: Callable[[object], str]
    window: str = "month"  # "month", "12 months" or "quarter": how the period is written


_LATEST_12 = "time_window = '12 months' AND month = (SELECT max(month) FROM mart)"

HEADLINES: tuple[Headline, ...] = (
    Headline(
        "stop_search_black_white_ratio",
        "stop_search_disproportionality",
        "Black people stopped and searched, times the White rate (self-defined ethnicity)",
        f"""SELECT ratio_to_white AS value, ratio_to_white IS NULL AND (searches_suppressed
                   OR white_rate_per_1000 IS NULL) AS withheld,
                   window_start AS period_start, month AS period_end, months_with_data AS months
            FROM mart WHERE {_LATEST_12} AND basis = 'self-defined' AND ethnic_group = 'Black'""",
        fmt_ratio,
        "12 months",
    ),
    Headline(
        "stop_search_action_taken",
        "stop_search_outcomes",
        "Searches with an outcome other than no further action",
        f"""SELECT action_taken_share AS value, action_taken_share IS NULL AS withheld,
                   window_start AS period_start, month AS period_end, months_with_data AS months
            FROM mart WHERE {_LATEST_12} AND basis = 'self-defined' AND ethnic_group = 'All'
              AND legislation = 'All' AND object_of_search = 'All'""",
        fmt_share,
        "12 months",
    ),
    Headline(
        "crime_last_12_months",
        "crime_trends",
        "Crimes recorded in London",
        """SELECT sum(last_12_months) AS value, false AS withheld,
                  (max(month) - INTERVAL 11 MONTH)::DATE AS period_start,
                  max(month) AS period_end, 12 AS months
           FROM mart WHERE month = (SELECT max(month) FROM mart)
           HAVING count(last_12_months) > 0""",
        fmt_count,
        "12 months",
    ),
    Headline(
        "crime_change",
        "crime_trends",
        "Change in recorded crime on the 12 months before",
        """SELECT (sum(last_12_months) - sum(previous_12_months)) * 100.0
                      / nullif(sum(previous_12_months), 0) AS value, false AS withheld,
                  (max(month) - INTERVAL 11 MONTH)::DATE AS period_start,
                  max(month) AS period_end, 12 AS months
           FROM mart WHERE month = (SELECT max(month) FROM mart)
           HAVING count(previous_12_months) > 0""",
        fmt_percent_change,
        "12 months",
    ),
    Headline(
        "crime_charge_rate",
        "crime_outcome_rates",
        "Crimes whose latest outcome is a charge or summons",
        """SELECT coalesce(sum(crimes) FILTER (WHERE outcome_group = 'Charge or summons'), 0)
                      * 1.0 / nullif(sum(crimes), 0) AS value, false AS withheld,
                  max(month) AS period_end
           FROM mart WHERE month = (SELECT max(month) FROM mart)""",
        fmt_share,
        "crimes first recorded in",
    ),
    Headline(
        "use_of_force_black_white_ratio",
        "use_of_force_subjects",
        "Black people subject to use of force, times the White rate",
        f"""SELECT ratio_to_white AS value, ratio_to_white IS NULL AND (records_suppressed
                   OR white_rate_per_1000 IS NULL) AS withheld,
                   window_start AS period_start, month AS period_end, months_with_data AS months
            FROM mart WHERE {_LATEST_12} AND age_band_level = 'all ages'
              AND ethnic_group = 'Black'""",
        fmt_ratio,
        "12 months",
    ),
    Headline(
        "complaints_median_days",
        "complaints_timeliness",
        "Median time to finalise a complaint allegation handled under Schedule 3",
        """SELECT median_days_to_finalise AS value, allegations_finalised_suppressed AS withheld,
                  month AS period_end
           FROM mart WHERE handling = 'Schedule 3'
             AND month = (SELECT max(month) FROM mart WHERE allegations_finalised > 0
                          OR allegations_finalised_suppressed)""",
        fmt_days,
    ),
    Headline(
        "emergency_i_within_target",
        "emergency_response",
        "Immediate (I) calls attended within 15 minutes",
        """SELECT sum(attended_within_target) * 1.0 / nullif(sum(calls_attended), 0) AS value,
                  false AS withheld, max(month) AS period_end
           FROM mart WHERE grade = 'I' AND month = (SELECT max(month) FROM mart)""",
        fmt_share,
    ),
    Headline(
        "trust_mps",
        "trust_and_confidence",
        "Londoners who trust the MPS (mean of the boroughs)",
        """SELECT max(mean_of_boroughs) AS value, false AS withheld, max(date) AS period_end
           FROM mart WHERE measure = 'Trust MPS' AND date = (SELECT max(date) FROM mart)""",
        fmt_share,
        "quarter",
    ),
    Headline(
        "workforce_black_representation",
        "workforce_representation",
        "Black officers and staff in the BCUs, against London's population (1.00× is "
        "proportionate)",
        """SELECT representation_ratio AS value, headcount_suppressed AS withheld,
                  month AS period_end
           FROM mart WHERE worker_type = 'All' AND ethnic_group = 'Black'
             AND month = (SELECT max(month) FROM mart)""",
        fmt_ratio,
    ),
    Headline(
        "data_quality_fields_below",
        "data_quality",
        "Key fields below their agreed completeness in the latest deliveries",
        """SELECT count(*) FILTER (WHERE within_agreement = false) AS value, false AS withheld,
                  strptime(max(period), '%Y-%m')::DATE AS period_end
           FROM mart m WHERE period = (
               SELECT max(period) FROM mart x WHERE x.contract = m.contract)
             AND agreed_max_missing_percent IS NOT NULL""",
        fmt_count,
        "deliveries to",
    ),
)


@dataclass(frozen=True)
class HeadlineFigure:
    """A headline as computed: `value` None means not available (or withheld)."""

    headline: Headline
    value: object
    withheld: bool
    period: str

    @property
    def text(self) -> str:
        if self.withheld:
            return WITHHELD
        if self.value is None:
            return "not available"
        return self.headline.format(self.value)


def _period(headline: Headline, row: dict) -> str:
    end = row.get("period_end")
    if not isinstance(end, dt.date):
        return ""
    if headline.window == "12 months":
        months = row.get("months")
        text = f"12 months to {month_label(end)}"
        if isinstance(months, int) and months < 12:
            text += f" ({months} of the 12 delivered)"
        return text
    if headline.window == "quarter":
        return f"12 months to the quarter ending {end.strftime('%d %B %Y').lstrip('0')}"
    if headline.window in ("crimes first recorded in", "deliveries to"):
        return f"{headline.window} {month_label(end)}"
    return month_label(end)


def headline_figures(tables: dict[str, pa.Table | None]) -> list[HeadlineFigure]:
    """Every headline whose mart has rows, in the order of HEADLINES."""
    out: list[HeadlineFigure] = []
    con = duckdb.connect()
    try:
        for h in HEADLINES:
            table = tables.get(h.mart)
            if table is None or table.num_rows == 0:
                continue
            con.register("mart", table)
            rows = con.sql(h.sql).to_arrow_table().to_pylist()
            con.unregister("mart")
            row = {k: plain_value(v) for k, v in rows[0].items()} if rows else {}
            out.append(
                HeadlineFigure(h, row.get("value"), bool(row.get("withheld")), _period(h, row))
            )
    finally:
        con.close()
    return out


def summary_html(tables: dict[str, pa.Table | None], titles: dict[str, str]) -> str:
    """The summary page: a card per headline figure, each linking to its mart's section."""
    figures = headline_figures(tables)
    if not figures:
        return (
            '<section id="summary" class="summary"><h2>At a glance</h2><p class=empty>No '
            "figures yet: no measure has data.</p></section>"
        )
    cards = []
    for f in figures:
        e = html.escape
        value = f.value if isinstance(f.value, int | float) and not f.withheld else ""
        cls = "value withheld" if f.withheld else "value"
        cards.append(
            f'<a class="headline" href="#{e(f.headline.mart)}" '
            f'data-headline="{e(f.headline.key)}" data-value="{e(str(value))}">'
            f'<span class="{cls}">{e(f.text)}</span>'
            f'<span class="label">{e(f.headline.label)}</span>'
            f'<span class="period">{e(f.period)}</span>'
            f'<span class="section">{e(titles.get(f.headline.mart, ""))} &rarr;</span></a>'
        )
    return (
        '<section id="summary" class="summary"><h2>At a glance</h2>'
        "<p class=note>The figures below are the latest in each section; each links to its "
        "section, where the definition and caveats are.</p>"
        f'<div class="headlines">{"".join(cards)}</div></section>'
    )
