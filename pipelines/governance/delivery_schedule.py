"""Late and missing deliveries, from each contract's delivery schedule.

A period is due on `dueDayOfFollowingMonth` of the month after it ends and is late once
`lateAfterDays` more days have passed. A period with no usable delivery by then (nothing in
the register for it but files rejected as unreadable or off-contract, or held back with
nothing in them fit to publish; nothing waiting in the drop zone) raises a `delivery.late`
breach, once: the breach is written under a fixed name per contract and period, so checking
again, or two checks at once, never raise it twice. It stays in `governance.breaches` after the
delivery finally arrives, as the record that it was late.

Which periods are watched: a contract's `firstPeriod` is when the agreement starts, often
years before this pipeline ran (the bundled contract says 2019-01); flagging every month
since then as late would bury the real news, and would do so again on every new install
that is sent a few historical months. So, unless the contract sets
`deliverySchedule.lateChecksFrom` (then every period from it is watched):
- a period between the first and the last period delivered with no delivery of its own
  (a missed month) is late once past its late date;
- a period after the last one delivered is late if it became late while the pipeline
  was watching, that is after the first delivery for the contract was received;
- nothing before `firstPeriod`, and nothing for a contract that has had no delivery
  yet (the report says so).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa

from pipelines.lake.register import BREACH_SCHEMA, Breach, Register, current_states
from pipelines.lake.store import Lake
from pipelines.validation.month_checks import NOTHING_USABLE, PERIODS_CARRIED
from schemas.contract import Contract
from schemas.period_words import date_words, period_words

LONDON = ZoneInfo("Europe/London")
RULE = "delivery.late"
MONTHS = {"monthly": 1, "quarterly": 3, "annual": 12, "once": 1}


def today_in_london() -> date:
    return datetime.now(LONDON).date()


def _add_months(period: str, months: int) -> str:
    year, month = int(period[:4]), int(period[5:7])
    index = year * 12 + (month - 1) + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def deadlines(contract: Contract, period: str) -> tuple[date, date]:
    """(due date, late after) for one period of the contract's schedule."""
    schedule = contract.schedule
    following = _add_months(period, MONTHS.get(schedule.period, 1))
    year, month = int(following[:4]), int(following[5:7])
    day = min(schedule.due_day_of_following_month, calendar.monthrange(year, month)[1])
    due = date(year, month, day)
    return due, due + timedelta(days=schedule.late_after_days)


def scheduled_periods(contract: Contract, until: date) -> list[str]:
    """Every period of the schedule that has ended by `until`."""
    schedule = contract.schedule
    if schedule.period == "once":
        return [schedule.first_period]
    step = MONTHS.get(schedule.period, 1)
    now = f"{until.year:04d}-{until.month:02d}"
    periods, period = [], schedule.first_period
    while _add_months(period, step) <= now:
        periods.append(period)
        period = _add_months(period, step)
    return periods


@dataclass
class LatePeriod:
    period: str
    due: date
    late_after: date
    only_rejected: bool = False  # something was sent, but nothing usable


# Breaches that hold a delivery back because nothing in it is the period's data: a file
# none of whose rows can be published, a release with none of the periods agreed for it.
UNUSABLE_RULES = (NOTHING_USABLE, PERIODS_CARRIED)


def delivered_periods(
    register: Register, contract: str, events: list[dict] | None = None
) -> tuple[set[str], set[str]]:
    """(periods with a usable delivery, periods for which only unusable files were sent).

    A rejected file (unreadable, wrong format, lacking agreed columns) was sent but not
    delivered: its period is still missing. So is one held back with nothing usable in it
    (every row failing, every date in another month, none of a release's agreed periods).
    Any other held delivery was delivered (its breaches say what to fix). `events`: the
    contract's events already read (`register.events(contract)`), else read here.
    """
    events = register.events(contract) if events is None else events
    # Validation holds back every delivery with a critical breach (a rejected one is not
    # delivered whatever its breaches), so only the breach files of deliveries ever held
    # are read: a few, not one per month of history as reading every breach was.
    held = {e["delivery_id"]: e["period"] for e in events if e["event"] == "held"}
    unusable = {
        b["delivery_id"]
        for b in register.delivery_breaches(contract, held)
        if b["rule"] in UNUSABLE_RULES and b["severity"] == "critical"
    }
    usable: set[str] = set()
    sent: set[str] = set()
    for d in current_states(events).values():
        if d.get("period"):
            sent.add(d["period"])
            if d["event"] != "rejected" and d["delivery_id"] not in unusable:
                usable.add(d["period"])
    return usable, sent - usable


@dataclass
class ScheduleReport:
    contract: str
    watched_from: str | None
    late: list[LatePeriod] = field(default_factory=list)  # overdue and still missing
    raised: list[Breach] = field(default_factory=list)  # breaches raised by this check

    @property
    def note(self) -> str:
        if self.watched_from is None:
            return (
                f"{self.contract}: nothing delivered yet and no lateChecksFrom in the "
                "contract, so no period is watched for lateness yet."
            )
        if not self.late:
            return f"{self.contract}: every period since {self.watched_from} has a delivery."
        return (
            f"{self.contract}: {len(self.late)} period(s) with no delivery past due: "
            + ", ".join(p.period for p in self.late)
        )


def late_periods(
    contract: Contract,
    delivered: Iterable[str],
    today: date,
    waiting: Iterable[str] = (),
    watching_since: date | None = None,
    only_rejected: Iterable[str] = (),
) -> tuple[str | None, list[LatePeriod]]:
    """(first period watched, periods past their late date with no usable delivery).

    `watching_since` is when the first delivery for the contract was received (None:
    since ever); see the module docstring for which periods are watched. `only_rejected`
    are periods for which only rejected files were sent: they count for which periods are
    watched, not as delivered.
    """
    have = set(delivered) | set(waiting)
    rejected = set(only_rejected) - have
    first = contract.schedule.first_period
    explicit = contract.schedule.late_checks_from
    agreed = sorted(p for p in have | rejected if p >= first)
    if explicit:
        start, last = max(explicit, first), None
    elif agreed:
        start, last = agreed[0], agreed[-1]
    else:
        return None, []
    late = []
    for period in scheduled_periods(contract, today):
        if period < start or period in have:
            continue
        due, late_after = deadlines(contract, period)
        if today <= late_after:
            continue
        missed = last is None or period < last
        while_watching = watching_since is None or late_after >= watching_since
        if missed or while_watching:
            late.append(LatePeriod(period, due, late_after, period in rejected))
    return start, late


def watching_since(
    register: Register, contract: str, events: list[dict] | None = None
) -> date | None:
    """The day (London) the first delivery for the contract was received (`events`: the
    contract's events already read, else read here)."""
    events = register.events(contract) if events is None else events
    times = [e["event_at"] for e in events if e["event"] != "duplicate"]
    return min(times).astimezone(LONDON).date() if times else None


def late_now(
    register: Register, contract: Contract, today: date, waiting: Iterable[str] = ()
) -> tuple[str | None, list[LatePeriod]]:
    """`late_periods` of the contract as the register has it now, its events read once.

    Each read of the register outside a run's lease lists the contract's folder twice (see
    `pipelines.lake.register`), and that folder holds a file per month sent in the last
    day: asking `delivered_periods` and `watching_since` each for themselves read it three
    times per contract, twice a run (issue 21, history row)."""
    events = register.events(contract.name)
    delivered, rejected = delivered_periods(register, contract.name, events)
    since = watching_since(register, contract.name, events)
    return late_periods(contract, delivered, today, waiting, since, rejected)


def late_breach(contract: Contract, late: LatePeriod) -> Breach:
    schedule = contract.schedule
    when = period_words(late.period, schedule.period)
    days = f"{schedule.late_after_days} day{'' if schedule.late_after_days == 1 else 's'}"
    return Breach(
        contract=contract.name,
        contract_version=contract.version,
        period=late.period,
        delivery_id=None,
        rule=RULE,
        clause=f"{contract.path.name}: customProperties.deliverySchedule",
        severity="major",
        action="delivery chased",
        failing_rows=0,
        rows_checked=0,
        detail=(
            f"No usable delivery for {when} had arrived by {date_words(late.late_after)}: "
            "what was sent for it was rejected or held back with nothing in it fit to "
            "publish (see its breaches) and nothing has replaced it. "
            if late.only_rejected
            else f"No delivery for {when} had arrived by {date_words(late.late_after)}. "
        )
        + f"It was due on {date_words(late.due)} (day {schedule.due_day_of_following_month} "
        f"of the following month) and counts as late {days} after that.",
    )


def check_schedule(
    contract: Contract,
    lake: Lake,
    register: Register,
    today: date | None = None,
    waiting: Iterable[str] = (),
) -> ScheduleReport:
    """Find the contract's late periods and raise a breach for each, once.

    `waiting` are periods with files in the drop zone not yet taken: those are not late.
    """
    today = today or today_in_london()
    start, late = late_now(register, contract, today, waiting)
    report = ScheduleReport(contract.name, start, late)
    for period in late:
        breach = late_breach(contract, period)
        key = lake.breaches_path(contract.name, period.period, "delivery-late")
        if lake.exists(key):
            continue
        row = {**breach.__dict__, "breach_id": breach.breach_id, "failing_share": None}
        if lake.write_table_once(key, pa.Table.from_pylist([row], BREACH_SCHEMA)):
            report.raised.append(breach)
    return report
