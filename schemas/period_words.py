"""Periods and dates as a person writes them: "December 2025", "April to June 2025".

The register keys everything by `YYYY-MM`; what leaves the building (notices, the review
page, breach texts) says the period in words, the way the agreement page does.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
SPAN_MONTHS = {"monthly": 1, "quarterly": 3, "annual": 12, "once": 1}


def month_words(period: object) -> str:
    """`2025-12` as `December 2025`; anything else as it is."""
    try:
        year, month = (int(x) for x in str(period).split("-"))
        return f"{calendar.month_name[month]} {year}"
    except (ValueError, IndexError):
        return " ".join(str(period).split())


def period_words(period: str, schedule_period: str = "monthly") -> str:
    """The period a delivery is for: `December 2025`, or `April to June 2025` for a quarter."""
    months = SPAN_MONTHS.get(schedule_period, 1)
    if months == 1:
        return month_words(period)
    try:
        year, month = (int(x) for x in period.split("-"))
    except ValueError:
        return month_words(period)
    end_year, end_month = divmod(year * 12 + month - 1 + months - 1, 12)
    first, last = calendar.month_name[month], calendar.month_name[end_month + 1]
    if end_year == year:
        return f"{first} to {last} {year}"
    return f"{first} {year} to {last} {end_year}"


def date_words(day: date | datetime) -> str:
    """`3 December 2025` (a time is given in London, where the leads are)."""
    if isinstance(day, datetime):
        day = day.astimezone(LONDON).date() if day.tzinfo else day.date()
    return f"{day.day} {calendar.month_name[day.month]} {day.year}"


def time_words(moment: datetime) -> str:
    """`3 December 2025, 14:05` in London time."""
    local = moment.astimezone(LONDON) if moment.tzinfo else moment
    return f"{date_words(local)}, {local:%H:%M}"
