"""One month's whole life, property-based (issue 20, "What to build").

Hypothesis sends random sequences (1 to 4 steps) of deliveries of one month, made from
real published rows: stop and search (June 2022, one file a month) and street crime
(January 2023, a month in parts: the Met's file and the City of London's). Each step
drops one or two files at once, then the engine takes, validates and publishes them,
checks the schedule and builds the warehouse, through the same functions the Dagster
assets call (`take_deliveries`, `validate_pending`, `awaiting_publication` /
`publish_delivery`, `check_schedule`, `build_warehouse`), on a folder drop zone and lake.
The kinds of file:

- good: 200 real rows (three different slices; a different slice is a restatement);
- partial: the first third of a slice;
- quarantining: a slice with every third row spoilt (stop and search: its boolean spelled
  FALSE; street crime: its Month not a date), so those rows are quarantined;
- same name (one file a month): a new slice under the name of a file sent before (for a
  month in parts every file has its part's name, so every re-send is one);
- misnamed (one file a month): good rows named, in the agreed pattern, for the month
  before (a major `delivery.file_name` breach of its own, and still published);
- wrong month: every date in the month before (filed under the wrong month?);
- all failing: every row spoilt;
- broken: empty, a truncated gzip, or `;`-separated;
- re-sent: the bytes of a file sent before.

After every step, what users read (`governance.deliveries`, `governance.breach_register`,
the curated table and `governance.quarantine` in the DuckDB warehouse; the register
`datashare breaches list` reads; the review page's open count; the month's notice) must
agree with the rules, modelled here independently and simply. A "part" is the month, or
for a month in parts one file name.

1. The same bytes as any file taken before (under any name, in any step) are a duplicate.
   Otherwise a good, partial, quarantining or same-name file is usable (validated); a
   wrong-month or all-failing file is held (nothing usable, a critical breach); a broken
   one is rejected.
2. Each part's newest usable file received is published. Every other usable file is
   superseded; a held file received before its part's published one is superseded by it;
   any other held file stays held; a rejected file stays rejected. Held and rejected files
   never replace a published file.
3. Every file ends with one of those final statuses and, unless published, a reason.
4. The published files' rows are all accounted for: curated + quarantined = delivered,
   the quarantined rows are exactly the ones spoilt, and the curated month holds exactly
   the published files' other rows, numbered as in their files.
5. When a step replaces a part's published file, or leaves a usable file of the step
   unpublished, a breach of the newly published file (`delivery.restated` or
   `delivery.multiple_files`) names each file replaced and its row count.
6. Open breaches are exactly those of the published files and of the held or rejected
   files received after their part's published file (all of them when it has none), plus
   the late breach once a step ended with no usable file (every step comes after the
   month's late date). Every other breach is superseded. Between steps a lead may notify
   open breaches or resolve a minor one: a notified breach still counts as open, and is
   superseded like an open one when its delivery is replaced; a resolved one stays
   resolved. The warehouse, the breaches CLI's register and the review page's count agree.
7. Nothing a notice says (or a delivery's reason) contradicts a delivery's status: a held
   or rejected file's items say nothing from it was published, a published file's never
   do, the arrived table shows each file's rows and status, and no text says the month is
   not delivered (or nothing is published for it) while a file of it is published.

Measured alone on 2 cores: a step takes about 0.7 s (the run about 0.4 s, of which
validating a delivery about 0.3 s and great-expectations about 0.15 s of that; reading
it all back about 0.3 s), plus about 4 s once per process while great-expectations warms up.
`DATASHARE_LIFECYCLE_PROFILE=soak DATASHARE_LIFECYCLE_EXAMPLES=500 pytest
tests/test_month_lifecycle.py` runs many fresh random sequences outside CI; the default
`ci` profile runs a fixed, derandomized 10 examples of each, after the explicit ones.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipelines.governance.breach_notice import notice_from_warehouse, what_we_did
from pipelines.governance.breach_register import TRANSITIONS, BreachRegister
from pipelines.governance.delivery_schedule import check_schedule, deadlines
from pipelines.governance.views import OPEN_STATUSES
from pipelines.intake.delivery_intake import take_deliveries
from pipelines.intake.dropzone import FolderDropZone
from pipelines.lake.publishing import awaiting_publication, publish_delivery
from pipelines.lake.register import Register
from pipelines.lake.store import FolderLake
from pipelines.reviews.breach_review import read_register, render_review
from pipelines.validation.delivery_verdicts import validate_pending
from pipelines.validation.month_checks import (
    FILE_NAME,
    HELD_TOO,
    MULTIPLE_FILES,
    NOTHING_USABLE,
    RESTATED,
)
from pipelines.validation.month_checks import HELD as HELD_ACTION
from pipelines.warehouse.catalog import build_warehouse, catalog_current
from schemas.contract import Contract, load_contracts
from tests.conftest import REAL_DATA, REAL_STOP_AND_SEARCH

CONTRACT = "stop_and_search"
MONTH = "2022-06"  # the real rows' month
ROWS = 200  # rows of a slice: a few hundred keep an example under a few seconds
SLICES = 3

PROFILE = os.environ.get("DATASHARE_LIFECYCLE_PROFILE", "ci")
EXAMPLES = int(os.environ.get("DATASHARE_LIFECYCLE_EXAMPLES", 10 if PROFILE == "ci" else 300))
LIFECYCLE = settings(
    max_examples=EXAMPLES,
    derandomize=PROFILE == "ci",
    database=None if PROFILE == "ci" else settings.default.database,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

USABLE = ("good", "partial", "quarantining", "same_name", "misnamed")
HELD = ("wrong_month", "all_failing")
BROKEN = ("empty", "truncated", "semicolon")
KINDS = USABLE + HELD + BROKEN + ("resend",)
FINAL = {"published", "superseded", "held", "rejected", "duplicate"}
# How a notice's "What arrived" table words each status
# (pipelines.governance.breach_notice.OUTCOME).
ARRIVED = {
    "published": "published",
    "held": "held back",
    "rejected": "rejected, not read",
    "superseded": "replaced by a later file",
}


def _false_spelled_upper(row: str) -> str:
    # The third field (Part of a policing operation) is the first False of every real row.
    return row.replace(",False,", ",FALSE,", 1)


def _a_month_earlier(row: str) -> str:
    kind, when, rest = row.split(",", 2)
    moved = datetime.fromisoformat(when) - timedelta(days=31)
    return f"{kind},{moved.isoformat()},{rest}"


@dataclass(frozen=True)
class Agreement:
    """A contract's month, the real files its files are made from, and how to spoil a row
    (a value that fails a quarantining rule) or move it to the month before."""

    contract: str
    period: str
    sources: tuple[Path, ...]  # for a month in parts, one per part (named as published)
    parts: bool
    spoil: Callable[[str], str]
    earlier: Callable[[str], str]
    earlier_period: str

    def rows(self, part: int) -> tuple[str, tuple[str, ...]]:
        """The header and data rows of the real file of `part`."""
        return _real_rows(self.sources[part % len(self.sources)])


@cache
def _real_rows(source: Path) -> tuple[str, tuple[str, ...]]:
    header, *rows = source.read_text(encoding="utf-8").splitlines(keepends=True)
    return header, tuple(rows)


STOP_AND_SEARCH = Agreement(
    CONTRACT,
    MONTH,
    (REAL_STOP_AND_SEARCH,),
    False,
    _false_spelled_upper,
    _a_month_earlier,
    "2022-05",
)
# street_crime agrees a month in parts: the Met's file and the City of London's.
STREET_CRIME = Agreement(
    "street_crime",
    "2023-01",
    (
        REAL_DATA / "street_crime" / "2023-01-metropolitan-street-burglary-only.csv",
        REAL_DATA / "street_crime" / "2023-01-city-of-london-street.csv",
    ),
    True,
    lambda row: row.replace(",2023-01,", ",Jan-23,", 1),  # Month is not a yyyy-MM date
    lambda row: row.replace(",2023-01,", ",2022-12,", 1),
    "2022-12",
)


@dataclass(eq=False)
class Sent:
    """One file dropped, and what the rules say becomes of it."""

    name: str
    kind: str
    data: bytes
    rows: int = 0  # data rows in the file
    spoilt: frozenset[int] = frozenset()  # row numbers (from 1) that must be quarantined
    verdict: str = ""  # validated, held, rejected or duplicate (rule 1)
    order: int = 0  # receive order

    @cached_property
    def sha(self) -> str:  # asked thousands of times an example by the checks
        return hashlib.sha256(self.data).hexdigest()


def make_file(
    agreement: Agreement, kind: str, variant: int, part: int, name: str, earlier: list[Sent]
) -> Sent:
    """A file of `kind` made from slice `variant` of the real rows (of `part`, for a month
    in parts, and then named as that part is published); for a re-send, the bytes of an
    earlier file; for `same_name`, new rows under an earlier file's name."""
    header, rows = agreement.rows(part)
    chosen = list(rows[variant * ROWS : (variant + 1) * ROWS])
    if agreement.parts:
        name = agreement.sources[part % len(agreement.sources)].name.removesuffix(".csv")
    spoilt: set[int] = set()
    if kind == "resend" and earlier:
        first = earlier[variant % len(earlier)]
        if not agreement.parts:
            name += ".csv.gz" if first.name.endswith(".gz") else ".csv"
        else:
            name += ".csv"
        return Sent(name, kind, first.data, first.rows, first.spoilt)
    if kind == "same_name" and earlier and not agreement.parts:
        name = earlier[variant % len(earlier)].name.removesuffix(".gz").removesuffix(".csv")
        chosen = list(rows[(variant + 1) % SLICES * ROWS : ((variant + 1) % SLICES + 1) * ROWS])
    if kind == "misnamed" and not agreement.parts:
        # Named in the agreed pattern for the month before: a breach of its own.
        name = f"{agreement.earlier_period}-metropolitan-stop-and-search"
    if kind in ("good", "resend", "same_name", "misnamed"):
        kind = "misnamed" if kind == "misnamed" and not agreement.parts else "good"
    elif kind == "partial":
        chosen = chosen[: ROWS // 3]
    elif kind == "quarantining":
        spoilt = set(range(1, len(chosen) + 1, 3))
        chosen = [agreement.spoil(r) if i in spoilt else r for i, r in enumerate(chosen, 1)]
    elif kind == "wrong_month":
        chosen = [agreement.earlier(r) for r in chosen]
    elif kind == "all_failing":
        chosen = [agreement.spoil(r) for r in chosen]
    elif kind == "empty":
        return Sent(name + ".csv", kind, b"")
    elif kind == "truncated":
        whole = gzip.compress((header + "".join(chosen)).encode(), mtime=0)
        return Sent(name + ".csv.gz", kind, whole[: len(whole) // 2])
    elif kind == "semicolon":
        text = (header + "".join(chosen)).replace(",", ";")
        return Sent(name + ".csv", kind, text.encode())
    text = header + "".join(chosen)
    return Sent(name + ".csv", kind, text.encode(), len(chosen), frozenset(spoilt))


@dataclass
class Model:
    """The rules (module docstring), applied to the files sent so far."""

    parts: bool = False  # a month in parts: each file name is a part of its own
    sent: list[Sent] = field(default_factory=list)
    late: bool = False  # a step ended with no usable file: the late breach is raised
    lead: dict[str, str] = field(default_factory=dict)  # breach id -> status a lead set

    def take(self, files: list[Sent]) -> None:
        taken = {f.sha for f in self.sent if f.verdict != "duplicate"}
        for f in files:
            f.order = len(self.sent)
            if f.sha in taken:
                f.verdict = "duplicate"
            else:
                taken.add(f.sha)
                f.verdict = (
                    "validated" if f.kind in USABLE else "held" if f.kind in HELD else "rejected"
                )
            self.sent.append(f)
        if not any(f.verdict == "validated" for f in self.sent):
            self.late = True

    def part(self, f: Sent) -> str:
        """What a file replaces: the month, or for a month in parts its part (its name)."""
        return f.name if self.parts else ""

    @property
    def published(self) -> dict[str, Sent]:
        """The file published for each part (the month's one part, for one file a month):
        the newest usable one received."""
        shown: dict[str, Sent] = {}
        for f in self.sent:
            if f.verdict == "validated":
                shown[self.part(f)] = f
        return shown

    def status(self, f: Sent) -> str:
        shown = self.published.get(self.part(f))
        if f.verdict == "duplicate":
            return "duplicate"
        if f is shown:
            return "published"
        if f.verdict == "validated":
            return "superseded"
        if f.verdict == "held" and shown and f.order < shown.order:
            return "superseded"
        return f.verdict

    def open_deliveries(self) -> set[str]:
        """Deliveries whose breaches are open: the published ones, and the held or
        rejected ones received after the file published for their part (all of them when
        none is)."""
        shown = self.published
        opened = set()
        for f in self.sent:
            standing = shown.get(self.part(f))
            if f is standing or (
                f.verdict in ("held", "rejected") and (standing is None or f.order > standing.order)
            ):
                opened.add(f.sha)
        return opened


class Month:
    """A drop zone, lake and warehouse, driven by the engine functions the assets call."""

    def __init__(self, root: Path, contract: str = CONTRACT, period: str = MONTH) -> None:
        self.root = root
        self.period = period
        self.clock = 0
        agreed = load_contracts()[contract]
        # Watched for lateness from this month, and every step happens after its late date.
        schedule = dataclasses.replace(agreed.schedule, late_checks_from=period)
        self.contract = dataclasses.replace(agreed, schedule=schedule)
        self.today = deadlines(self.contract, period)[1] + timedelta(days=1)
        self.zone = FolderDropZone(self.root / "dropzone", settle_seconds=0)
        self.lake = FolderLake(self.root / "lake")
        self.register = Register(self.lake)
        self.warehouse = self.root / "warehouse.duckdb"

    def drop(self, name: str, data: bytes) -> None:
        path = self.root / "dropzone" / self.contract.name / self.period / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        # Files dropped together are taken oldest first: give each its own moment, in order.
        self.clock += 1
        moment = int((time.time() - 86_400 + self.clock) * 1e9)
        os.utime(path, ns=(moment, moment))

    def process(self) -> None:
        """One run for the month: intake, validation, publication, the late check and the
        warehouse, in the order `datashare run` does them."""
        name, period = self.contract.name, self.period
        take_deliveries(name, period, self.zone, self.lake, self.register, "t")
        validate_pending(self.contract, period, self.lake, self.register, "t")
        candidate = awaiting_publication(self.register, name, period)
        if candidate:
            publish_delivery(self.lake, self.register, candidate, "t", self.contract)
        check_schedule(self.contract, self.lake, self.register, today=self.today)
        # As the run does: its views read the lake's files by pattern, so the warehouse is
        # rebuilt only when a rebuild would not make the same catalog (a record set's first
        # file, say); what the step published must show through the views as they are.
        if not catalog_current(self.warehouse, self.lake, self.contracts):
            self.catalog()

    @property
    def contracts(self) -> dict[str, Contract]:
        return {self.contract.name: self.contract}

    def catalog(self) -> None:
        """The warehouse, rebuilt from the lake, as `datashare breaches` does after a lead's
        change."""
        build_warehouse(self.lake, self.contracts, self.warehouse)

    def lead(self, action: str, model: Model) -> bool:
        """What a lead does between runs: `notify` the two most severe open breaches (the
        notice was sent), or `resolve` a minor one still to act on; recorded in the model.
        (Each step re-reads the whole register, a third of a second: two keep it quick.)
        Returns whether there was one to act on (if not, nothing was written)."""
        register = BreachRegister(self.lake)
        chosen = [
            e
            for e in register.entries()  # most severe first
            if (action == "notify" and e["status"] == "open")
            or (action == "resolve" and e["severity"] == "minor" and e["status"] in OPEN_STATUSES)
        ][: 2 if action == "notify" else 1]
        for e in chosen:
            register.change(e["breach_id"], action, "lead@mopac.example", f"{action}d")
            model.lead[e["breach_id"]] = TRANSITIONS[action][1]
        # `datashare breaches` rebuilds the warehouse after a change; here, as the run does,
        # only when a rebuild would not make the same catalog (the contract's first breach
        # event file): otherwise its views, which read the lake's files by pattern, already
        # show the change, and the checks after the step read it through them.
        if not catalog_current(self.warehouse, self.lake, self.contracts):
            self.catalog()
        return bool(chosen)


def query(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


a_file = st.tuples(st.sampled_from(KINDS), st.integers(0, SLICES - 1), st.integers(0, 1))
steps_of_files = st.lists(st.lists(a_file, min_size=1, max_size=2), min_size=1, max_size=4)


def live(
    steps: list[list[tuple]],
    root: Path,
    agreement: Agreement = STOP_AND_SEARCH,
    leads: list[str | None] = (),
) -> Month:
    """Send `steps` (each a list of (kind, slice[, part]) dropped together) through the
    engine in `root`, checking every invariant after each step, and after `leads[n]`, what
    a lead does after step n+1 (None: nothing)."""
    month = Month(root, agreement.contract, agreement.period)
    model = Model(agreement.parts)
    for number, step in enumerate(steps, 1):
        before = model.published
        made = [
            make_file(agreement, kind, variant, part, f"s{number}-{i}-{kind}", model.sent)
            for i, (kind, variant, part) in enumerate(((*t, 0)[:3] for t in step), 1)
        ]
        # Two files of one name dropped together: the second overwrites the first.
        files = list({f.name: f for f in made}.values())
        for f in files:
            month.drop(f.name, f.data)
        model.take(files)
        month.process()
        check_month(month, model, before, files)
        # A lead with nothing to act on wrote nothing: the checks would read what they
        # just read (8 of 18 leads in the CI examples).
        if number <= len(leads) and leads[number - 1] and month.lead(leads[number - 1], model):
            check_month(month, model, model.published, [])
    return month


leads_between = st.lists(st.sampled_from([None, None, "notify", "resolve"]), max_size=4)


@given(steps=steps_of_files, leads=leads_between)
# Classic sequences, run on every CI run whatever the derandomized draw. (The sequences
# that once broke an invariant each have a test of their own below, which sends them through
# `live`, every invariant checked after each step, as an example here would: good beside
# wrong_month, and good then good beside partial, are not repeated here.)
@example(
    steps=[[("wrong_month", 0)], [("good", 0), ("quarantining", 1)], [("resend", 0)]],
    leads=["notify", "resolve"],
)
@example(
    steps=[[("empty", 0), ("truncated", 1)], [("empty", 2)], [("all_failing", 0), ("good", 2)]],
    leads=["resolve", "notify"],
)
@example(steps=[[("misnamed", 0)], [("same_name", 0)], [("resend", 0)]], leads=["notify"])
@LIFECYCLE
def test_a_months_whole_life_says_what_happened(steps, leads):
    with tempfile.TemporaryDirectory() as tmp:
        live(steps, Path(tmp), leads=leads)


@given(steps=steps_of_files, leads=leads_between)
@example(steps=[[("empty", 0, 0), ("good", 0, 1)], [("good", 1, 0)]], leads=["notify"])
@example(
    steps=[[("good", 0, 0), ("good", 0, 1)], [("partial", 1, 1), ("wrong_month", 2, 0)]],
    leads=[],
)
@LIFECYCLE
def test_a_month_in_parts_whole_life_says_what_happened(steps, leads):
    # The same rules for a month in parts, each part (file name) on its own: street_crime.
    with tempfile.TemporaryDirectory() as tmp:
        live(steps, Path(tmp), STREET_CRIME, leads)


def check_month(month: Month, model: Model, before: dict[str, Sent], step: list[Sent]) -> None:
    """Every invariant of the module docstring, after one step."""
    contract, period = month.contract.name, month.period
    with duckdb.connect(str(month.warehouse), read_only=True) as con:
        deliveries = query(
            con,
            "SELECT * FROM governance.deliveries WHERE contract = ? AND period = ?",
            [contract, period],
        )
        # What the review page reads: `governance.breach_register` (ordered), its history
        # and the exports. Its breaches are the register the checks below read, every row
        # of the view (asked for once, not again by a query of the view's rows in another
        # order: the view reads the lake's files afresh each time).
        shown_register = read_register(con)
        register = shown_register["breaches"]
        curated = query(
            con,
            f"SELECT _delivery_id, _source_row FROM curated.{contract} WHERE _period = ?",
            [period],
        )
        quarantined = query(
            con,
            "SELECT _delivery_id, _source_row FROM governance.quarantine WHERE _period = ?",
            [period],
        )
        notice = notice_from_warehouse(con, month.contract, period, month.today)
        review = render_review(shown_register, month.root, {}, datetime.now(UTC))

    shown = model.published
    by_id = {d["delivery_id"]: d for d in deliveries if d["status"] != "duplicate"}
    duplicates = Counter(d["source_path"] for d in deliveries if d["status"] == "duplicate")

    # 1-3: every file has the final status the rules say, and a reason unless published.
    path = f"{contract}/{period}/"
    assert duplicates == Counter(path + f.name for f in model.sent if f.verdict == "duplicate")
    for d in deliveries:
        if d["status"] == "duplicate":
            assert d["reason"].startswith("Same bytes as the delivery already taken from ")
    for f in model.sent:
        if f.verdict == "duplicate":
            continue
        row = by_id.get(f.sha)
        assert row is not None, f"{f.name} is not in governance.deliveries"
        assert row["status"] in FINAL, f"{f.name} ended {row['status']}"
        assert row["status"] == model.status(f), (
            f"{f.name} ({f.kind}) is {row['status']}; the rules say {model.status(f)}"
        )
        if row["status"] != "published":
            assert row["reason"], f"{f.name} is {row['status']} with no reason"
        if row["status"] == "held" and shown:
            # A held file's reason must not say the month has nothing published...
            assert "nothing is published for the month" not in row["reason"], row["reason"]
        if row["status"] == "held" and model.part(f) in shown:
            # ... nor, for a month in parts, its part.
            assert "nothing is published for this part" not in row["reason"], row["reason"]
        if row["status"] != "published":
            # Nothing from it is in the curated table (issue 20 item 9).
            assert not row["rows_curated"], (f.name, row["status"], row["rows_curated"])

    # 4: the published files' rows, all accounted for.
    if not shown:
        assert not curated
        assert not month.lake.exists(month.lake.curated_path(contract, period))
    assert {r["_delivery_id"] for r in curated} == {f.sha for f in shown.values()}
    for f in shown.values():
        row = by_id[f.sha]
        assert row["rows_delivered"] == f.rows
        assert row["rows_quarantined"] == len(f.spoilt)
        assert row["rows_curated"] == f.rows - len(f.spoilt)
        assert row["rows_curated"] + row["rows_quarantined"] == row["rows_delivered"]
        curated_rows = sorted(r["_source_row"] for r in curated if r["_delivery_id"] == f.sha)
        mine = sorted(r["_source_row"] for r in quarantined if r["_delivery_id"] == f.sha)
        assert curated_rows == sorted(set(range(1, f.rows + 1)) - f.spoilt)
        assert mine == sorted(f.spoilt)
    if shown:
        lake_file = month.lake.parquet_file(month.lake.curated_path(contract, period))
        assert lake_file.metadata.num_rows == sum(f.rows - len(f.spoilt) for f in shown.values())

    # 5: no row published (or validated) this step disappears without a breach naming it.
    for part, now in shown.items():
        if now not in step:
            continue
        replaced = [
            f for f in step if f.verdict == "validated" and f is not now and model.part(f) == part
        ]
        if before.get(part) not in (None, now):
            replaced.append(before[part])
        naming = [
            b
            for b in register
            if b["delivery_id"] == now.sha and b["rule"] in (RESTATED, MULTIPLE_FILES)
        ]
        for lost in replaced:
            said = [
                b
                for b in naming
                if now.name in b["detail"]
                and (
                    f"{lost.name} ({lost.rows:,} rows" in b["detail"]
                    # A part re-sent under its name: "sent earlier under the same name (N rows".
                    or (lost.name == now.name and f"same name ({lost.rows:,} rows" in b["detail"])
                )
            ]
            assert said, (
                f"{lost.name} ({lost.rows} rows) was replaced by {now.name} and no breach "
                f"of {now.name} names both: {[b['detail'] for b in naming]}"
            )

    # 6: open breaches are exactly those of the deliveries standing now, plus the late one.
    opened = model.open_deliveries()
    for b in register:
        # What a lead made of it (open if nothing); a step still to act on becomes
        # superseded on its own once its delivery is replaced, a resolved one stays so.
        lead = model.lead.get(b["breach_id"], "open")
        if b["delivery_id"] is None:
            assert b["rule"] == "delivery.late" and b["period"] == period
            assert b["status"] == lead
            continue
        replaced = b["delivery_id"] not in opened and lead in OPEN_STATUSES
        expected = "superseded" if replaced else lead
        assert b["status"] == expected, (
            f"{b['rule']} of {b['source_path']} ({b['delivery_status']}) is {b['status']}, "
            f"expected {expected}"
        )
    late = [b for b in register if b["rule"] == "delivery.late"]
    assert len(late) == (1 if model.late else 0)
    for f in model.sent:
        mine = [b for b in register if b["delivery_id"] == f.sha]
        if f.verdict == "held":
            assert NOTHING_USABLE in {b["rule"] for b in mine if b["severity"] == "critical"}
            assert {b["action"] for b in mine} <= {HELD_ACTION, HELD_TOO}
        if f.kind == "misnamed" and f.verdict != "duplicate":
            (named,) = [b for b in mine if b["rule"] == FILE_NAME]
            assert named["severity"] == "major"
            assert "names 2022-05" in named["detail"] and "2022-06 folder" in named["detail"]
        if f.verdict == "rejected":
            assert any(b["severity"] == "critical" for b in mine)
            assert {b["action"] for b in mine} == {"delivery rejected"}
    open_ids = {b["breach_id"] for b in register if b["status"] in OPEN_STATUSES}
    listed = BreachRegister(month.lake).entries()  # what `datashare breaches list` shows
    assert {e["breach_id"]: e["status"] for e in listed} == {
        b["breach_id"]: b["status"] for b in register
    }
    count = re.search(r"<div id=open-count><strong>([\d,]+)</strong>", review)
    assert count and int(count.group(1).replace(",", "")) == len(open_ids)

    # 7: nothing the notice says contradicts a delivery's status.
    text = notice.markdown
    assert set(notice.breach_ids) == open_ids
    arrived = Counter(
        (cells[0].rsplit("/", 1)[-1], cells[2], cells[3])
        for line in text.splitlines()
        if line.startswith(f"| {contract}/")
        for cells in [[c.strip() for c in line.strip("|").split(" | ")]]
    )
    assert arrived == Counter(
        (f.name, f"{f.rows:,}", ARRIVED[model.status(f)])
        for f in model.sent
        if f.verdict != "duplicate"
    )
    status_of = {f.sha: model.status(f) for f in model.sent if f.verdict != "duplicate"}
    delivery_of = {b["breach_id"]: b["delivery_id"] for b in register}
    for item in text.split("\n### ")[1:]:
        facts = dict(re.findall(r"^- \*\*(.+?):\*\* (.*)$", item, re.M))
        delivery = delivery_of[facts["Breach reference"]]
        did = facts["What we did"]
        status = status_of.get(delivery, "late")
        if status == "held":
            assert did.startswith("the delivery was held back; nothing from it was published")
        elif status == "rejected":
            assert did.startswith("the file was not read; nothing from it was published")
        elif status == "published":
            for words in ("nothing from it", "the delivery was held back", "not read"):
                assert words not in did, (facts["Breach reference"], did)
        else:
            assert status == "late" and "recorded as late" in did, did
    if shown:
        for words in (
            "counts as not delivered",
            "nothing is published for the month",
            "Nothing was delivered",
        ):
            assert words not in text, f"the notice says {words!r} while a file is published"
    else:
        assert "published" not in {outcome for _, _, outcome in arrived}


# -- what the invariants found (issue 20): each fixed in the engine, each with its test --------


def _register(month: Month) -> tuple[dict[str, dict], list[dict]]:
    with duckdb.connect(str(month.warehouse), read_only=True) as con:
        deliveries = query(con, "SELECT * FROM governance.deliveries WHERE status <> 'duplicate'")
        breaches = query(con, "SELECT * FROM governance.breach_register")
    return {d["source_path"].rsplit("/", 1)[-1]: d for d in deliveries}, breaches


def test_a_file_held_beside_a_publishable_one_says_the_month_is_published(tmp_path):
    # A good file and one filed under the wrong month, sent together: the good one is
    # published; the held one's reason and breach once said nothing was published and the
    # month "still counts as not delivered".
    month = live([[("good", 0), ("wrong_month", 1)]], tmp_path)
    deliveries, breaches = _register(month)
    held = deliveries["s1-2-wrong_month.csv"]
    assert held["status"] == "held"
    assert held["reason"] == (
        "Held back by critical breach(es) of delivery.nothing_usable; 2022-06 is published "
        "from s1-1-good.csv instead."
    )
    (usable,) = [
        b
        for b in breaches
        if b["rule"] == NOTHING_USABLE and b["delivery_id"] == held["delivery_id"]
    ]
    assert usable["status"] == "open"
    assert usable["detail"].endswith(
        "The delivery was held back: nothing from it was published; 2022-06 stays published "
        "from s1-1-good.csv."
    )
    assert not [b for b in breaches if b["rule"] == "delivery.late"]  # the month came


def test_a_file_held_after_a_published_one_names_the_file_that_stays(tmp_path):
    month = live([[("good", 0)], [("all_failing", 1)]], tmp_path / "after")
    deliveries, breaches = _register(month)
    held = deliveries["s2-1-all_failing.csv"]
    assert held["reason"].endswith("; the previously published month stays in place.")
    (usable,) = [b for b in breaches if b["rule"] == NOTHING_USABLE]
    assert usable["detail"].endswith("; 2022-06 stays published from s1-1-good.csv.")
    # With nothing published, the month is still not delivered, and says so.
    alone = live([[("all_failing", 1)]], tmp_path / "alone")
    deliveries, breaches = _register(alone)
    assert deliveries["s1-1-all_failing.csv"]["reason"].endswith(
        "; nothing is published for the month."
    )
    (usable,) = [b for b in breaches if b["rule"] == NOTHING_USABLE]
    assert usable["detail"].endswith("and 2022-06 still counts as not delivered.")


def test_two_files_replacing_a_published_month_name_it_too(tmp_path):
    # Published, then two files together: the newer is published. Its multiple_files
    # breach named the two files but not the month it replaced; only the other file's
    # restatement breach did, and that one closes (superseded) with its file.
    month = live([[("good", 0)], [("good", 1), ("partial", 2)]], tmp_path)
    deliveries, breaches = _register(month)
    assert deliveries["s2-2-partial.csv"]["status"] == "published"
    (both,) = [
        b
        for b in breaches
        if b["delivery_id"] == deliveries["s2-2-partial.csv"]["delivery_id"]
        and b["rule"] == MULTIPLE_FILES
    ]
    assert both["status"] == "open" and both["severity"] == "major"
    assert "s2-1-good.csv (200 rows) and s2-2-partial.csv (66 rows)" in both["detail"]
    assert (
        "s2-2-partial.csv also replaces s1-1-good.csv (200 rows), published before: its 200 "
        "published rows are no longer published."
    ) in both["detail"]
    superseded = {b["rule"] for b in breaches if b["status"] == "superseded"}
    assert RESTATED in superseded  # s2-1-good.csv's, closed with its file


def test_a_part_of_a_month_is_replaced_only_by_a_file_of_its_name(tmp_path):
    # street_crime agrees a month in parts (the Met's and the City of London's files). The
    # Met's part arrived empty (rejected), then the City's was published: the Met's breach
    # was closed as superseded by the City's file, and its notice said the month was
    # re-sent, while the Met's rows were still missing.
    met = REAL_DATA / "street_crime" / "2023-01-metropolitan-street-burglary-only.csv"
    city = REAL_DATA / "street_crime" / "2023-01-city-of-london-street.csv"
    month = Month(tmp_path, "street_crime", "2023-01")
    month.drop(met.name, b"")
    month.process()
    month.drop(city.name, city.read_bytes())
    month.process()
    with duckdb.connect(str(month.warehouse), read_only=True) as con:
        (empty,) = query(con, "SELECT * FROM governance.breach_register WHERE rule = 'file.empty'")
        notice = notice_from_warehouse(con, month.contract, "2023-01", month.today)
    assert empty["status"] == "open" and empty["later_delivery_id"] is None
    assert empty["breach_id"] in notice.breach_ids
    assert "re-sent" not in what_we_did(empty)
    listed = BreachRegister(month.lake).entries("street_crime")  # `datashare breaches list`
    assert [e["status"] for e in listed if e["rule"] == "file.empty"] == ["open"]

    # The Met's part re-sent under its name and published: now it is replaced.
    header, *rows = met.read_text(encoding="utf-8").splitlines(keepends=True)
    month.drop(met.name, (header + "".join(rows[:300])).encode())
    month.process()
    with duckdb.connect(str(month.warehouse), read_only=True) as con:
        (empty,) = query(con, "SELECT * FROM governance.breach_register WHERE rule = 'file.empty'")
    assert empty["status"] == "superseded"
    assert empty["later_delivery_path"] == f"street_crime/2023-01/{met.name}"


def test_a_held_part_speaks_for_its_part_only(tmp_path):
    # The Met's part filed under the wrong month and the City of London's part, sent
    # together: the Met's was checked first and said nothing was published for the month
    # and the month still counted as not delivered; the City's was then published.
    month = live([[("wrong_month", 0, 0), ("good", 0, 1)]], tmp_path, STREET_CRIME)
    deliveries, breaches = _register(month)
    met = "2023-01-metropolitan-street-burglary-only.csv"
    assert deliveries[met]["status"] == "held"
    assert deliveries[met]["reason"].endswith("; nothing is published for this part of 2023-01.")
    (usable,) = [b for b in breaches if b["rule"] == NOTHING_USABLE]
    assert usable["status"] == "open"
    assert usable["detail"].endswith(
        "nothing from it was published, and nothing is published for this part of 2023-01."
    )
    assert deliveries["2023-01-city-of-london-street.csv"]["status"] == "published"
