"""Validation assets: each new delivery checked against its contract, row by row."""

import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack

import dagster as dg

from assets.intake import landing_key
from assets.months import MonthRecord, run_months
from assets.partitions import delivery_partitions
from assets.previews import markdown_table
from assets.resources import LakeResource, PseudonymKeyResource
from pipelines.desk.docs_files import docs_link
from pipelines.lake.register import Register
from pipelines.validation.delivery_verdicts import (
    DeliveryVerdict,
    MonthValidation,
    start_validating,
)
from schemas.contract import Contract

# Per-partition check results are what make a held-back month show as failed in the UI;
# Dagster 1.13 still labels them preview.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

# Two checks, each meaning one thing, so neither is red all over: conformance is the data
# engineer's (red: a month held back, nothing published), follow-up the lead's (a warning:
# published, but the force must be told what to fix).
CONFORMANCE_CHECK = "contract_conformance"
FOLLOW_UP_CHECK = "breaches_to_follow_up"
BREACH_COLUMNS = ["severity", "rule", "failing_rows", "action", "detail"]


def validated_key(contract: Contract) -> dg.AssetKey:
    return dg.AssetKey(["validated", contract.name])


def _counts(breaches: list[dict]) -> dict[str, int]:
    return {s: sum(b["severity"] == s for b in breaches) for s in ("critical", "major", "minor")}


def month_outcome(breaches: list[dict], delivery: str | None) -> str:
    """What became of the month, in the words the UI shows: held back, rejected, published
    with breaches, published, or nothing delivered."""
    counts = _counts(breaches)
    if counts["critical"]:
        held = any(b["severity"] == "critical" and b["action"] == "delivery held" for b in breaches)
        return "held back: not published" if held else "rejected: not published"
    if not delivery:
        return "nothing delivered"
    return "published with breaches" if counts["major"] else "published"


def _metadata(breaches: list[dict], delivery: str | None, data_docs: str | None = None) -> dict:
    metadata = {
        "outcome": month_outcome(breaches, delivery),
        "delivery_id": delivery or "none",
        **{f"{s}_breaches": n for s, n in _counts(breaches).items()},
        "breaches": dg.MetadataValue.md(markdown_table(breaches, BREACH_COLUMNS)),
    }
    if data_docs:
        # So an engineer gets from the check to the delivery's Data Docs in one click.
        metadata["data_docs"] = dg.MetadataValue.url(data_docs)
    return metadata


def conformance_result(
    breaches: list[dict], delivery: str | None, data_docs: str | None = None
) -> dg.AssetCheckResult:
    """The data engineer's check: failed (error) when the month's delivery was held back or
    rejected (a critical breach), so nothing new is published and the force must send again;
    passed when it was published, whatever the lead has to follow up."""
    counts = _counts(breaches)
    outcome = month_outcome(breaches, delivery)
    if counts["critical"]:
        words = (
            f"{outcome.split(':')[0].capitalize()}: {counts['critical']} critical breach(es), "
            "so this delivery was not published and the curated month is left as it was. The "
            "force must send it again (the breaches below say what to fix)."
        )
    elif delivery:
        follow = f"; {counts['major']} major breach(es) to follow up" if counts["major"] else ""
        words = f"Published: the month is available to analysts{follow}."
    else:
        words = "No delivery for this month yet."
    return dg.AssetCheckResult(
        check_name=CONFORMANCE_CHECK,
        passed=counts["critical"] == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=words,
        metadata=_metadata(breaches, delivery, data_docs),
    )


def follow_up_result(
    breaches: list[dict], delivery: str | None, data_docs: str | None = None
) -> dg.AssetCheckResult:
    """The data-sharing lead's check: a warning while the month has critical or major
    breaches (rows quarantined, sent late, held back) to raise with the force; passed when
    only minor notes, or none, remain."""
    counts = _counts(breaches)
    serious = counts["critical"] + counts["major"]
    if serious:
        words = (
            f"{serious} breach(es) to raise with the force ({counts['critical']} critical, "
            f"{counts['major']} major): `datashare review` lists them, `datashare breaches "
            "notice` writes the letter. Failing rows are quarantined with their reasons."
        )
    else:
        minor = f" ({counts['minor']} minor note(s))" if counts["minor"] else ""
        words = f"Nothing to raise with the force{minor}."
    return dg.AssetCheckResult(
        check_name=FOLLOW_UP_CHECK,
        passed=serious == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=words,
        metadata=_metadata(breaches, delivery, data_docs),
    )


def month_verdict(verdicts: list[DeliveryVerdict]) -> DeliveryVerdict | None:
    """The verdict the month's check stands on: the newest readable delivery, which is the
    one published next (or held back). A file that could not be read is not a delivery, so
    it never holds back a readable one; it counts only when nothing readable came."""
    for status in ("validated", "held", "rejected"):
        found = [v for v in verdicts if v.status == status]
        if found:
            return found[-1]
    return None


def month_record(
    contract: Contract,
    period: str,
    verdicts: list[DeliveryVerdict],
    register: Register,
    log: dg.DagsterLogManager,
) -> MonthRecord:
    """What the UI shows for one month of validation: the outcome, rows and breaches of
    its deliveries, and both checks, judged on the month's newest readable delivery."""
    judged = month_verdict(verdicts)
    if judged:
        breaches = [b.__dict__ for b in judged.outcome.breaches]
        delivery_id = judged.delivery_id
    else:
        # Nothing new: report on the delivery that last went through validation.
        done = [
            d
            for d in register.deliveries(contract.name).values()
            if d["period"] == period and d["event"] != "received"
        ]
        delivery_id = max(done, key=lambda d: d["event_at"])["delivery_id"] if done else None
        breaches = [b for b in register.breaches(contract.name) if b["delivery_id"] == delivery_id]
    for v in verdicts:
        if v.status == "rejected":
            log.error(f"{period} {v.source_path} rejected: {v.reason}")
    summary = [
        {
            "file": v.source_path,
            "delivery_id": v.delivery_id[:12],
            "status": v.status,
            "rows": v.outcome.rows_delivered,
            "curated": v.outcome.rows_curated,
            "quarantined": v.outcome.rows_quarantined,
            "breaches": len(v.outcome.breaches),
        }
        for v in verdicts
    ]
    delivered = sum(v.outcome.rows_delivered for v in verdicts)
    docs = [v.data_docs for v in verdicts if v.data_docs]
    metadata = {
        # What became of the month: published, published with breaches, held back.
        "outcome": month_outcome(breaches, delivery_id),
        "dagster/row_count": delivered,
        "deliveries_validated": len(verdicts),
        "rows_delivered": delivered,
        "rows_passed": sum(v.outcome.rows_curated for v in verdicts),
        "rows_quarantined": sum(v.outcome.rows_quarantined for v in verdicts),
        "deliveries": dg.MetadataValue.md(markdown_table(summary)),
        "breaches": dg.MetadataValue.md(markdown_table(breaches, BREACH_COLUMNS)),
        # great-expectations Data Docs for the newest delivery's dataset checks.
        # (on the desk when DATASHARE_DESK_URL is set: a browser opens no file:// link)
        "data_docs": (
            dg.MetadataValue.url(docs_link(docs[-1])) if docs else "none (no new readable delivery)"
        ),
    }
    link = docs_link(docs[-1]) if docs else None
    checks = [
        conformance_result(breaches, delivery_id, link),
        follow_up_result(breaches, delivery_id, link),
    ]
    return MonthRecord(period, metadata, checks)


class _MonthBegun:
    """A month's validation begun under its lease (`assets.months.StartedMonth`): its rows
    checked, its last delivery's dataset checks with great-expectations meanwhile. The lease
    is held until the month is finished (recorded) or cancelled."""

    def __init__(
        self,
        lease: AbstractContextManager,
        start: Callable[[], MonthValidation],
        record: Callable[[list[DeliveryVerdict]], MonthRecord],
    ) -> None:
        with ExitStack() as held:  # the lease released at once if the start raises
            held.enter_context(lease)
            self._month = start()
            self._held = held.pop_all()
        self._record = record

    def finish(self) -> MonthRecord:
        with self._held:
            verdicts = self._month.finish()
        return self._record(verdicts)

    def ready(self) -> bool:
        """Whether `finish()` would not wait for great-expectations."""
        return self._month.ready()

    def cancel(self) -> None:
        with self._held:
            self._month.cancel()


def build_validation_asset(contract: Contract) -> dg.AssetsDefinition:
    """The validation asset for one contract, with its contract-conformance check."""
    key = validated_key(contract)

    # A multi-asset of one, so that its checks' outputs are optional (`can_subset`): each
    # month's results are `AssetCheckEvaluation`s (`assets.months`), which a plain asset's
    # `check_specs` would not count as its check outputs (DagsterStepOutputNotFoundError).
    @dg.multi_asset(
        name=f"validated__{contract.name}",
        specs=[
            dg.AssetSpec(
                key,
                deps=[landing_key(contract)],
                group_name="validation",
                kinds={"pandera", "polars"},
                owners=list(contract.owners),
                partitions_def=delivery_partitions(contract),
                description=(
                    f"Each new {contract.name} delivery checked against its contract in "
                    "bounded batches: failing rows quarantined with every reason, passing rows "
                    "typed and staged for publication, each broken rule recorded as a breach."
                ),
            )
        ],
        partitions_def=delivery_partitions(contract),
        # Every pending month in one run: `assets.months`.
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
        check_specs=[
            dg.AssetCheckSpec(
                CONFORMANCE_CHECK,
                asset=key,
                partitions_def=delivery_partitions(contract),
                # Not blocking: publication only ever takes a delivery that passed
                # validation, so a held-back month is a business outcome the run records,
                # not a step that fails with a stack trace.
                description=f"For the data engineer: the month's newest readable delivery "
                f"was published under contract {contract.name} v{contract.version}. Fails "
                "(error) when it was held back or rejected by a critical breach: nothing new "
                "is published and the force must send again. A file that could not be read is "
                "rejected on its own and never holds back a readable one sent beside it.",
            ),
            dg.AssetCheckSpec(
                FOLLOW_UP_CHECK,
                asset=key,
                partitions_def=delivery_partitions(contract),
                description="For the data-sharing lead: a warning while the month has "
                "critical or major breaches (rows quarantined, late, held back) to raise with "
                "the force; `datashare review` and `datashare breaches notice` are the next "
                "step. Not an outage: a published month stays available to analysts.",
            ),
        ],
    )
    def validated(
        context: dg.AssetExecutionContext, lake: LakeResource, pseudonym_key: PseudonymKeyResource
    ) -> Iterator:
        register, the_lake = lake.register(), lake.lake()
        secret = pseudonym_key.key() if contract.pseudonymised else None

        def validate(period: str) -> _MonthBegun:
            return _MonthBegun(
                lake.month_lease(contract.name, period, context.run_id),
                lambda: start_validating(
                    contract, period, the_lake, register, context.run_id, secret
                ),
                lambda verdicts: month_record(contract, period, verdicts, register, context.log),
            )

        yield from run_months(context, key, validate)

    return validated
