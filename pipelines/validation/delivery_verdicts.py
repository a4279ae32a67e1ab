"""The verdict on a month's deliveries: validated, held back, or rejected.

`validate_pending` takes each received delivery of one month, oldest first, through the row
engine (`row_validation.validate_delivery`: reading, typing and checking one file in bounded
memory), then judges it as a delivery of that month: the dataset expectations against the
months published before it, the file's name, what it replaces, whether a critical breach
holds it back and what the month is published from meanwhile. It records the verdict and
its breaches in the register; publishing follows in the assets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipelines.lake.publishing import part_name
from pipelines.lake.register import Breach, DeliveryEvent, Register
from pipelines.lake.store import Lake
from pipelines.validation.dataset_expectations import (
    DatasetChecks,
    category_mix,
    non_blank_values,
    start_dataset_checks,
)
from pipelines.validation.masking import mask_quarantine
from pipelines.validation.month_checks import (
    HELD,
    HELD_TOO,
    file_name_breach,
    replacement_breach,
)
from pipelines.validation.row_validation import (
    DeliveryRejected,
    ValidationOutcome,
    validate_delivery,
)
from schemas.contract import Contract


@dataclass
class DeliveryVerdict:
    """What validation decided about one delivery."""

    delivery_id: str
    source_path: str | None
    status: str  # "validated", "held" or "rejected"
    outcome: ValidationOutcome
    reason: str | None = None
    data_docs: str | None = None  # a link to the delivery's Data Docs page


def validate_pending(
    contract: Contract,
    period: str,
    lake: Lake,
    register: Register,
    run_id: str | None = None,
    pseudonym_key: bytes | None = None,
) -> list[DeliveryVerdict]:
    """Validate every received, not yet validated delivery for one period, oldest first.

    Each one is recorded as validated (with its breaches) or rejected (with the reason,
    as a critical breach); nothing raises for what the force sent.
    """
    return start_validating(contract, period, lake, register, run_id, pseudonym_key).finish()


class MonthValidation:
    """A month's deliveries under validation (`start_validating`): all but the last are
    judged and recorded; the last one's rows are checked and its dataset checks are with
    great-expectations. `finish()` judges and records it; `cancel()` leaves it received."""

    def __init__(self, verdicts: list[DeliveryVerdict], last: _Judging | None) -> None:
        self.verdicts = verdicts
        self.last = last

    def finish(self) -> list[DeliveryVerdict]:
        """Every delivery's verdict, each recorded in the register."""
        if self.last is not None:
            last, self.last = self.last, None
            self.verdicts.append(last.record())
        return self.verdicts

    def ready(self) -> bool:
        """Whether `finish()` would not wait for great-expectations' verdict."""
        return self.last is None or self.last.ready()

    def cancel(self) -> None:
        """Record nothing more: the last delivery stays received, to be validated again."""
        if self.last is not None:
            last, self.last = self.last, None
            last.cancel()


def start_validating(
    contract: Contract,
    period: str,
    lake: Lake,
    register: Register,
    run_id: str | None = None,
    pseudonym_key: bytes | None = None,
) -> MonthValidation:
    """`validate_pending` begun, so that a run of many months checks the next month's rows
    while great-expectations judges this month's last delivery in its own process
    (`ge_process`): `finish()` of what is returned records the month's verdicts.

    The month's deliveries are still judged one after another, each recorded before the
    next is read: which delivery stands for the month depends on the verdicts before it.
    """
    pending = sorted(
        (
            d
            for d in register.deliveries(contract.name).values()
            if d["period"] == period and d["event"] == "received"
        ),
        key=lambda d: d["event_at"],
    )
    month = MonthValidation([], None)
    for delivery in pending:
        month.finish()  # the one before is recorded first
        month.last = _Judging(contract, period, lake, register, run_id, delivery)
        month.last.check(pseudonym_key)
    return month


class _Judging:
    """One delivery between its row checks (`check`) and its recorded verdict (`record`)."""

    def __init__(
        self,
        contract: Contract,
        period: str,
        lake: Lake,
        register: Register,
        run_id: str | None,
        delivery: dict,
    ) -> None:
        self.contract, self.period, self.lake, self.register = contract, period, lake, register
        self.run_id, self.delivery = run_id, delivery
        self.delivery_id: str = delivery["delivery_id"]
        self.stands = standing_delivery(contract, register, period, delivery)
        self.outcome = ValidationOutcome()
        self.rejected: DeliveryRejected | None = None
        self.dataset: DatasetChecks | None = None

    def check(self, pseudonym_key: bytes | None) -> None:
        """Its rows, its quarantine masked, and its dataset checks sent on their way."""
        contract, period, lake, register = self.contract, self.period, self.lake, self.register
        delivery, delivery_id = self.delivery, self.delivery_id
        standing = part_name(self.stands) if self.stands else None
        try:
            # A local file: validation reads it twice (keys first), and S3 is far away.
            with lake.local_copy(delivery["landing_path"]) as landed:
                self.outcome = validate_delivery(
                    contract,
                    landed,
                    period,
                    delivery_id,
                    lake,
                    pseudonym_key,
                    delivery.get("source_path"),
                    standing,
                )
            mask_quarantine(contract, lake, period, delivery_id)
        except DeliveryRejected as rejected:
            self.rejected = rejected
            return
        # Dataset-level expectations (great-expectations) over the delivery's profile.
        self.dataset = start_dataset_checks(
            contract,
            period,
            delivery_id,
            self.outcome.profile,
            _published_history(register, contract.name, period),
            lake,
            *_history_mix(lake, register, contract.name, period),
            month_rows=_month_rows(contract, register, period, delivery, self.outcome),
        )

    def ready(self) -> bool:
        """Whether its dataset checks are judged (or need not be waited for)."""
        return self.dataset is None or self.dataset.ready()

    def cancel(self) -> None:
        if self.dataset is not None:
            self.dataset.cancel()

    def record(self) -> DeliveryVerdict:
        """Its verdict, with its breaches, recorded in the register."""
        contract, period, lake, register = self.contract, self.period, self.lake, self.register
        delivery, delivery_id, outcome = self.delivery, self.delivery_id, self.outcome
        docs = None
        if self.rejected is None:
            assert self.dataset is not None
            dataset_breaches, docs = self.dataset.result()
            outcome.breaches += dataset_breaches
            named = file_name_breach(
                contract, period, delivery_id, delivery.get("source_path"), outcome.rows_delivered
            )
            outcome.breaches += [named] if named else []
            _keep_mix(lake, contract.name, period, delivery_id, outcome.profile)
            status, reason = "validated", None
            critical = sorted({b.rule for b in outcome.breaches if b.severity == "critical"})
            if critical:
                # Held, not published: the month already published stays in place.
                status = "held"
                reason = _held_reason(contract, period, critical, self.stands)
                outcome.breaches = _held(outcome.breaches)
            else:
                # Published next, in place of the month's other readable deliveries.
                replaced = replacement_breach(
                    contract,
                    period,
                    delivery,
                    outcome.rows_delivered,
                    _readable_others(register, contract.name, period, delivery_id),
                )
                outcome.breaches += [replaced] if replaced else []
        else:
            rejected = self.rejected
            status, reason = "rejected", rejected.reason
            outcome.breaches = [
                Breach(
                    contract=contract.name,
                    contract_version=contract.version,
                    period=period,
                    delivery_id=delivery_id,
                    rule=rejected.rule,
                    clause=f"{contract.path.name}: fileFormat and schema[{contract.name}]",
                    severity="critical",
                    action="delivery rejected",
                    failing_rows=0,
                    rows_checked=0,
                    detail=f"{delivery.get('source_path') or 'The delivered file'}: "
                    f"{rejected.reason} The file is kept in the landing area.",
                )
            ]
        register.write_breaches(contract.name, period, delivery_id, outcome.breaches)
        register.record(
            DeliveryEvent(
                contract=contract.name,
                period=period,
                delivery_id=delivery_id,
                event=status,
                rows_delivered=outcome.rows_delivered,
                rows_curated=outcome.rows_curated,
                rows_quarantined=outcome.rows_quarantined,
                reason=reason,
                run_id=self.run_id,
            )
        )
        return DeliveryVerdict(
            delivery_id,
            delivery.get("source_path"),
            status,
            outcome,
            reason,
            docs if status != "rejected" else None,
        )


def _held(breaches: list[Breach]) -> list[Breach]:
    """The breaches of a held delivery, each saying what really happened to it: the
    critical ones held it back, and nothing from it was published whatever the others
    would have done (quarantine some rows, publish the rest)."""
    for breach in breaches:
        breach.action = HELD if breach.severity == "critical" else HELD_TOO
    return breaches


def _month_rows(
    contract: Contract,
    register: Register,
    period: str,
    delivery: dict,
    outcome: ValidationOutcome,
) -> int | None:
    """For a month in parts: the rows of this part and of the other parts standing with it
    (the volume check judges the month as a whole); None for a month sent as one file."""
    if contract.schedule.files_per_period != "parts":
        return None
    others = _readable_others(register, contract.name, period, delivery["delivery_id"])
    mine = part_name(delivery)
    return outcome.rows_delivered + sum(
        d.get("rows_delivered") or 0 for d in others if part_name(d) != mine
    )


def _held_reason(contract: Contract, period: str, critical: list[str], stands: dict | None) -> str:
    """Why a delivery was held, and what the month (or its part) is left with."""
    held = f"Held back by critical breach(es) of {', '.join(critical)}; "
    what = "part" if contract.schedule.files_per_period == "parts" else "month"
    if stands is None:
        return held + (
            f"nothing is published for this part of {period}."
            if what == "part"
            else "nothing is published for the month."
        )
    if stands["event"] == "validated":  # validated before it, in this run: published next
        return held + f"{period} is published from {part_name(stands)} instead."
    return held + f"the previously published {what} stays in place."


def standing_delivery(
    contract: Contract, register: Register, period: str, delivery: dict
) -> dict | None:
    """The delivery the month is published from while `delivery` is checked: the newest
    one validated and awaiting publication (published next, whatever this delivery's
    verdict), else the one published; None when nothing is published or about to be. For a
    month in parts, the same of the delivery's own part (its file name): the other parts
    may still arrive in the same run, so nothing is said about them."""
    others = _readable_others(register, contract.name, period, delivery["delivery_id"])
    if contract.schedule.files_per_period == "parts":
        others = [d for d in others if part_name(d) == part_name(delivery)]
    waiting = [d for d in others if d["event"] == "validated"]
    return (waiting or others or [None])[-1]


def _readable_others(register: Register, contract: str, period: str, delivery_id: str):
    """The month's other deliveries that are published or awaiting publication."""
    return sorted(
        (
            d
            for d in register.deliveries(contract).values()
            if d["period"] == period
            and d["delivery_id"] != delivery_id
            and d["event"] in ("validated", "published")
        ),
        key=lambda d: d["event_at"],
    )


def _published_history(register: Register, contract: str, period: str) -> list[dict]:
    return [
        d
        for d in register.deliveries(contract).values()
        if d["event"] == "published" and d["period"] < period
    ]


def _mix_path(contract: str, period: str, delivery_id: str) -> str:
    return f"governance/profiles/contract={contract}/{period}-{delivery_id}.json"


def _keep_mix(lake: Lake, contract: str, period: str, delivery_id: str, profile) -> None:
    """Keep the delivery's category shares and how many values they are shares of (no row
    data) for later months' drift checks."""
    kept = {"mix": category_mix(profile), "values": non_blank_values(profile)}
    lake.write_bytes(_mix_path(contract, period, delivery_id), json.dumps(kept).encode())


def _history_mix(
    lake: Lake, register: Register, contract: str, period: str
) -> tuple[dict[str, dict[str, float]] | None, dict[str, float] | None]:
    """Category shares averaged over the last 12 published months before this one, and the
    average number of non-blank values per column they were taken over (None when no
    month kept it: profiles written before it was kept hold only the shares)."""
    past = sorted(_published_history(register, contract, period), key=lambda d: d["period"])
    mixes, counted = [], []
    for d in past[-12:]:
        key = _mix_path(contract, d["period"], d["delivery_id"])
        if lake.exists(key):
            kept = json.loads(lake.read_text(key))
            if "mix" in kept and isinstance(kept.get("values"), dict):
                mixes.append(kept["mix"])
                counted.append(kept["values"])
            else:
                mixes.append(kept)  # an older profile: column -> category -> share
    if len(mixes) < 3:
        return None, None  # too little history to say what is usual
    pooled: dict[str, dict[str, float]] = {}
    for mix in mixes:
        for column, shares in mix.items():
            for value, share in shares.items():
                pooled.setdefault(column, {}).setdefault(value, 0.0)
                pooled[column][value] += share / len(mixes)
    if not counted:
        return pooled, None
    columns = {column for values in counted for column in values}
    average = {c: sum(v.get(c, 0) for v in counted) / len(counted) for c in columns}
    return pooled, average
