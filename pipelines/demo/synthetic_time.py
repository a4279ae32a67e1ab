"""Synthetic deliveries' constants, periods and time slots, and dates and times written in
each column's agreed format (`pipelines.demo.synthetic` builds deliveries with them)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.contract import Column, Contract

PROFILES_DIR = Path(__file__).resolve().parent / "synthetic_profiles"
CHUNK_ROWS = 100_000  # measured: faster and ~200 MB lighter than 250k at 5M rows
WORKERS = 2  # chunks built at once while writing a delivery
LONDON = ZoneInfo("Europe/London")
DEFAULT_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%:z"
DEFAULT_FORMATS = {"date": "%Y-%m-%d", "time": "%H:%M", "timestamp": DEFAULT_TIMESTAMP_FORMAT}
PERIOD_MONTHS = {"monthly": 1, "quarterly": 3, "annual": 12, "once": 1}
DEFECT_KINDS = (
    "blank_required",
    "invalid_value",
    "malformed_timestamp",
    "out_of_period",
    "out_of_range",
    "trailing_space",
    "before_reference",
    "duplicate_key",
)
KEY_SPACE_LIMIT = 1_000_000  # combinations of a finite unique key enumerated at most
POOL_SIZE = 1_000  # values made up in the form of a column's example
DAY = 86_400
SLOTS_PER_DAY = 24 * 60
UNITS = {"seconds": 1, "minutes": 60, "hours": 3_600, "days": DAY}
NEEDS_QUOTES = r'[",\r\n]'
WHOLE_ROW = "(whole row)"  # the "column" a duplicate_key defect changes

# Purposes of the random streams; part of every seed, so never renumber them.
STREAM_SETUP, STREAM_VALUES, STREAM_DUPLICATES, STREAM_DEFECTS = range(4)
STREAM_KEYS, STREAM_POOLS, STREAM_GROUPS, STREAM_ORDER = range(4, 8)


class ProfileError(ValueError):
    """A synthetic profile that does not fit its contract."""


# --- periods and time slots -------------------------------------------------------------


def year_month(period: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{4})-(\d{2})", period)
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"period must look like YYYY-MM, not {period!r}")
    return int(match[1]), int(match[2])


def add_months(year: int, month: int, months: int) -> tuple[int, int]:
    y, m = divmod(year * 12 + month - 1 + months, 12)
    return y, m + 1


def period_bounds(period: str, months: int = 1) -> tuple[datetime, datetime]:
    """UTC start (inclusive) and end (exclusive) of a period of `months` months from "YYYY-MM",
    in London time."""
    year, month = year_month(period)
    start = datetime(year, month, 1, tzinfo=LONDON)
    end = datetime(*add_months(year, month, months), 1, tzinfo=LONDON)
    return start.astimezone(UTC), end.astimezone(UTC)


def period_months(contract: Contract) -> int:
    """How many months a delivery period covers (a delivery `once` is for its named month)."""
    return PERIOD_MONTHS.get(contract.schedule.period, 1)


@dataclass(frozen=True)
class Slots:
    """Every minute of the period in London time, as UTC epoch seconds with a weight each."""

    utc: np.ndarray  # int64, ascending
    local: np.ndarray  # int64 epoch seconds of the London wall-clock time, read as if UTC
    cdf: np.ndarray
    p: np.ndarray


def _month_slots(
    year: int, month: int, weekday_w: np.ndarray, hour_w: np.ndarray, minute_w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    days = calendar.monthrange(year, month)[1]
    offsets = np.zeros((days, 24), dtype=np.int64)
    exists = np.ones((days, 24), dtype=bool)
    for d in range(days):
        for h in range(24):
            local = datetime(year, month, d + 1, h, tzinfo=LONDON)
            offsets[d, h] = int(local.utcoffset().total_seconds())
            # The hour the clocks skip in March does not exist: never generate it.
            exists[d, h] = local.astimezone(UTC).astimezone(LONDON).hour == h
    weekday = np.array([calendar.weekday(year, month, d + 1) for d in range(days)])
    w = (
        weekday_w[weekday][:, None, None]
        * (hour_w[None, :] * exists)[:, :, None]
        * minute_w[None, None, :]
    ).ravel()
    base = calendar.timegm((year, month, 1, 0, 0, 0))
    local = (
        base
        + np.arange(days)[:, None, None] * 86400
        + np.arange(24)[None, :, None] * 3600
        + np.arange(60)[None, None, :] * 60
    )
    utc = (local - offsets[:, :, None]).ravel()
    return utc, local.ravel(), w


def slots_for(period: str, spec: dict[str, Any], months: int = 1) -> Slots:
    year, month = year_month(period)
    weekday_w = _weights(spec.get("weekday_weights"), 7, "weekday_weights")
    hour_w = _weights(spec.get("hour_weights"), 24, "hour_weights")
    minute_w = _weights(spec.get("minute_weights"), 60, "minute_weights")
    parts = [
        _month_slots(*add_months(year, month, i), weekday_w, hour_w, minute_w)
        for i in range(months)
    ]
    utc, local, w = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    day = spec.get("day")
    if day is not None:
        # Every value on one day of the period (e.g. the last day of a quarter).
        days = len(w) // SLOTS_PER_DAY
        which = {"first": 0, "last": days - 1}[day]
        keep = np.zeros(len(w), dtype=bool)
        keep[which * SLOTS_PER_DAY : (which + 1) * SLOTS_PER_DAY] = True
        w = w * keep
        if w.sum() <= 0:
            raise ProfileError(f"no hour of the {day} day of {period} has any weight")
    p = w / w.sum()
    return Slots(utc=utc, local=local, cdf=cumulative(p), p=p)


def _weights(raw: Any, size: int, what: str) -> np.ndarray:
    if raw is None:
        return np.ones(size)
    values = np.asarray(raw, dtype=float)
    if values.shape != (size,) or (values < 0).any() or values.sum() <= 0:
        raise ProfileError(f"{what} must be {size} non-negative numbers, not all zero")
    return values


def cumulative(p: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(p, dtype=float)
    cdf /= cdf[-1]
    cdf[-1] = 1.0  # so that a draw of 0.999... never falls past the last value
    return cdf


def draw(cdf: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    return np.searchsorted(cdf, rng.random(n), side="right")


# --- dates and times in the agreed formats ----------------------------------------------


def time_kind_of(column: Column) -> str | None:
    """How a column's times are written: "utc" (with an offset), "local", "date" or "time"."""
    match column.logical_type:
        case "date" | "time":
            return column.logical_type
        case "timestamp":
            fmt = time_format(column)
            return "utc" if "%z" in fmt or "%:z" in fmt else "local"
    return None


def time_format(column: Column) -> str:
    return column.timestamp_format or DEFAULT_FORMATS.get(column.logical_type, "%Y-%m-%d")


def strftime(when: datetime, fmt: str) -> str:
    """Format one aware UTC datetime like the vectorised writer does (offset as +00:00)."""
    return when.astimezone(UTC).strftime(_utc_format(fmt))


def _utc_format(fmt: str) -> str:
    # Deliveries are in UTC, so the offset is a constant; `%:z` is not portable to strftime.
    return fmt.replace("%:z", "+00:00").replace("%z", "+0000")


def format_times(kind: str, fmt: str, utc: np.ndarray, local: np.ndarray) -> pa.Array:
    """Times as text: UTC with a constant offset, or the local wall clock."""
    if kind == "utc":
        return pc.strftime(pa.array(utc).cast(pa.timestamp("s")), format=_utc_format(fmt))
    return pc.strftime(pa.array(local).cast(pa.timestamp("s")), format=fmt)


def wall_clock(utc: np.ndarray, tz: str) -> np.ndarray:
    """UTC epoch seconds as the wall-clock time in `tz`, read as if UTC."""
    stamps = pa.array(utc, pa.int64()).cast(pa.timestamp("s", tz="UTC"))
    local = pc.local_timestamp(stamps.cast(pa.timestamp("s", tz=tz)))
    return local.cast(pa.int64()).to_numpy()


def clock_gaps(tz: str, start: datetime, end: datetime) -> list[tuple[int, int]]:
    """Wall-clock intervals (as epoch seconds read as UTC) that do not exist in `tz`."""
    zone = ZoneInfo(tz)
    found = []
    t = start.replace(minute=0, second=0, microsecond=0)
    before = t.astimezone(zone).utcoffset()
    while t < end:
        t += timedelta(hours=1)
        after = t.astimezone(zone).utcoffset()
        if after > before:
            at = int(t.timestamp())
            found.append((at + int(before.total_seconds()), at + int(after.total_seconds())))
        before = after
    return found


def _shape(fmt: str) -> str:
    """A regular expression for exactly the text a strptime format produces."""
    shapes = {"%Y": r"\d{4}", "%:z": r"[+-]\d{2}:\d{2}", "%z": r"[+-]\d{4}"}
    parts = re.split(r"(%:?[A-Za-z])", fmt)
    return "".join(shapes.get(p, r"\d{2}" if p.startswith("%") else re.escape(p)) for p in parts)


def parses(fmt: str, value: str) -> bool:
    """True when `value` is a valid date or time in the format (as validation reads it)."""
    if not re.fullmatch(_shape(fmt), value):
        return False
    try:
        datetime.strptime(value, fmt.replace("%:z", "%z"))
    except ValueError:
        return False
    return True


def example_has_seconds(column: Column) -> bool:
    fmt = time_format(column)
    if "%S" not in fmt or not column.example:
        return False
    try:
        return datetime.strptime(column.example, fmt.replace("%:z", "%z")).second != 0
    except ValueError:
        return False


def decimals_of(column: Column, default: int) -> int:
    """Decimals of the column's example (`35.60`: 2), else the default."""
    match = re.fullmatch(r"-?\d+\.(\d+)", column.example or "")
    return len(match[1]) if match else default
