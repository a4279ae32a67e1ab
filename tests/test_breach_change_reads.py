"""A lead's lifecycle step (`datashare breaches notify/ack/resolve/waive/reopen`) reads the
register once (issue 21): `BreachRegister.change` makes the entry it returns over the
tables its first read gave, plus the event it wrote, rather than reading the lake again.

What it returns must still be exactly what views made afresh say, after any
sequence of steps, allowed or refused, on breaches of every delivery status (published,
held, rejected, superseded by a re-send). Registers are written straight into a folder
lake as the pipeline writes them (tests/breach_homes.py).

A process keeps what the breach views said about the register it read last, and asks them
again only when the register's tables differ (a desk page, or a lead's steps, read the same
register again and again): every answer must be the one views made afresh would give, whatever
was read, changed or refused before, on one register or another, and whatever a caller did
to an answer it was given.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.governance import breach_register
from pipelines.governance.breach_register import (
    TRANSITIONS,
    BreachChangeError,
    BreachRegister,
)
from pipelines.lake.register import DeliveryEvent, Register
from pipelines.lake.store import Lake, open_lake
from tests.breach_homes import breach, deliver, step

S = "stop_and_search"
T0 = datetime(2025, 9, 25, 9, tzinfo=UTC)
EVENTS = "governance/breach_events/"


def _register(lake: Lake) -> list[str]:
    """August 2025 of stop and search: a published file with two breaches, then a
    published re-send with one (the first file's breaches become superseded); a held
    file of September with a critical breach; a rejected one of October. Returns the
    breach ids."""
    ids = []
    first = deliver(lake, S, "2025-08", "2025-08-stop-and-search.csv", 4_000, at=T0)
    for n, severity in enumerate(("major", "minor")):
        ids.append(
            breach(
                lake,
                S,
                "2025-08",
                first,
                f"rule_{n}",
                severity,
                "broken",
                3,
                4_000,
                raised_at=T0 + timedelta(minutes=1),
            )  # fmt: skip
        )
    resend = deliver(lake, S, "2025-08", "resent.csv", 4_010, at=T0 + timedelta(days=2))
    Register(lake).record(
        DeliveryEvent(contract=S, period="2025-08", delivery_id=first, event="superseded",
                      event_at=T0 + timedelta(days=2, minutes=3), reason="Replaced.")
    )  # fmt: skip
    ids.append(
        breach(
            lake,
            S,
            "2025-08",
            resend,
            "rule_0",
            "major",
            "broken",
            1,
            4_010,
            raised_at=T0 + timedelta(days=2, minutes=1),
        )  # fmt: skip
    )
    held = deliver(lake, S, "2025-09", "2025-09.csv", 10, "held", at=T0 + timedelta(days=30))
    ids.append(
        breach(
            lake,
            S,
            "2025-09",
            held,
            "file.manifest",
            "critical",
            "wrong count",
            action="delivery held",
            raised_at=T0 + timedelta(days=30, minutes=1),
        )  # fmt: skip
    )
    rejected = deliver(lake, S, "2025-10", "2025-10.csv", 0, "rejected", at=T0 + timedelta(60))
    ids.append(
        breach(
            lake,
            S,
            "2025-10",
            rejected,
            "file.format",
            "critical",
            "not CSV",
            action="delivery rejected",
            raised_at=T0 + timedelta(days=60, minutes=1),
        )  # fmt: skip
    )
    return ids


@pytest.fixture
def counted_reads(tmp_path, monkeypatch) -> tuple[Lake, list[str], list[str]]:
    """A register with a few hundred lead's steps on record, and the lake keys read
    (each file opened as Parquet), as a list the test can look at."""
    lake = open_lake(tmp_path / "lake")
    ids = _register(lake)
    for n in range(40):  # the held month's breach resolved and reopened: 80 events
        at = T0 + timedelta(days=31, hours=n)
        step(lake, ids[3], S, "resolved", at)
        step(lake, ids[3], S, "open", at + timedelta(minutes=1), "again")
    opened: list[str] = []
    parquet_file = lake.parquet_file

    def counting(key: str):
        opened.append(key)
        return parquet_file(key)

    monkeypatch.setattr(lake, "parquet_file", counting)
    return lake, ids, opened


def test_one_change_opens_each_breach_event_file_once(counted_reads):
    lake, ids, opened = counted_reads
    on_record = lake.glob(EVENTS + "contract=*/*.parquet")
    assert len(on_record) == 80

    entry = BreachRegister(lake).change(ids[3], "resolve", "lead", "done")

    event_reads = [k for k in opened if k.startswith(EVENTS)]
    assert sorted(event_reads) == on_record  # each once; the new one not read back
    # raised, 80 steps, and this one
    assert entry["status"] == "resolved" and len(entry["history"]) == 82
    assert len(lake.glob(EVENTS + "contract=*/*.parquet")) == 81


def _made_afresh(lake: Lake, **filters: str | None) -> list[dict]:
    """`entries` as the views give it when nothing of an earlier read is kept."""
    kept = breach_register._LAST
    breach_register._LAST = None
    try:
        return BreachRegister(lake).entries(**filters)
    finally:
        breach_register._LAST = kept


A_STEP = st.tuples(
    st.just("change"),
    st.integers(0, 1),  # register 0 or 1
    st.integers(0, 4),  # which breach
    st.sampled_from(sorted(TRANSITIONS)),
    st.sampled_from(["", "letter sent", "the force fixed it"]),
)
A_READ = st.tuples(
    st.just("read"),
    st.integers(0, 1),
    st.sampled_from([None, "2025-08", "2025-09"]),
    st.sampled_from([None, "open", "superseded", "resolved"]),
)
A_SPOIL = st.tuples(st.just("spoil"), st.integers(0, 1))  # a caller changes what it was given
ACTS = st.lists(st.one_of(A_STEP, A_STEP, A_READ, A_SPOIL), min_size=1, max_size=8)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTS)
def test_a_change_and_every_read_say_what_views_made_afresh_say(acts):
    # Steps (allowed or refused), reads (filtered or not) and callers changing what they
    # were given, on two registers in one process.
    with tempfile.TemporaryDirectory() as folder:
        lakes = [open_lake(Path(folder) / "a"), open_lake(Path(folder) / "b")]
        # Register 0 written by this process; register 1 the same register as another
        # process left it (copied: nothing of it read here yet). `_register` writes the same
        # ids and rows each time, so each starts as register 0 does, as two writes made it.
        ids = [_register(lakes[0])] * 2
        shutil.copytree(Path(folder) / "a", Path(folder) / "b")
        made = _made_afresh(lakes[0])
        first = {e["breach_id"]: e for e in made}
        known = [first, copy.deepcopy(first)]
        # What views made afresh said over each register when last made: a register no
        # allowed step has written since says the same (nothing else writes to it).
        latest = [made, copy.deepcopy(made)]
        given_last: list[dict] = []
        for act in acts:
            afresh = None  # the views made afresh over register n, if this act made them
            n = act[1]
            if act[0] == "change":
                _, n, index, action, note = act
                breach_id = ids[n][index]
                allowed_from, target = TRANSITIONS[action]
                allowed = known[n][breach_id]["status"] in allowed_from and (
                    bool(note) or action not in ("waive", "reopen")
                )
                try:
                    changed = BreachRegister(lakes[n]).change(breach_id[:10], action, "lead", note)
                except BreachChangeError:
                    assert not allowed
                    continue
                assert allowed
                afresh = _made_afresh(lakes[n])
                (fresh,) = [e for e in afresh if e["breach_id"] == breach_id]
                assert changed == fresh
                assert BreachRegister(lakes[n]).get(breach_id) == fresh
                assert changed["status"] == target
                assert len(changed["history"]) == len(known[n][breach_id]["history"]) + 1
                known[n][breach_id] = fresh
                latest[n] = afresh
            elif act[0] == "read":
                _, n, period, status = act
                given_last = BreachRegister(lakes[n]).entries(period=period, status=status)
                # The filtered read is the views' whole register, made afresh, filtered as
                # `entries` documents (its order kept): one making of the views serves
                # this comparison and the act's closing one.
                afresh = _made_afresh(lakes[n])
                latest[n] = afresh
                assert given_last == [
                    e
                    for e in afresh
                    if period in (None, e["period"]) and status in (None, e["status"])
                ]
            else:
                for entry in given_last:
                    entry["status"] = "spoilt"
                    entry["history"].clear()
                    if isinstance(entry.get("sample_rows"), list):
                        entry["sample_rows"].append(-1)
                given_last = []
            if afresh is None:
                # A caller spoilt what it was given: register n is as the views last said.
                afresh = copy.deepcopy(latest[n])
            assert BreachRegister(lakes[n]).entries() == afresh


def test_a_register_read_again_unchanged_asks_the_views_nothing(tmp_path, monkeypatch):
    lake = open_lake(tmp_path / "lake")
    ids = _register(lake)
    made: list[int] = []
    in_memory = breach_register.in_memory

    def counted(*tables):
        made.append(1)
        return in_memory(*tables)

    monkeypatch.setattr(breach_register, "in_memory", counted)
    # (An earlier test may have read a register the same as this one: kept views, rightly.)
    monkeypatch.setattr(breach_register, "_LAST", None, raising=False)
    first = BreachRegister(lake).entries()
    assert len(made) == 1
    # A desk page again, a listing filtered, one breach: the same register, no views made.
    assert BreachRegister(lake).entries() == first
    assert {e["breach_id"] for e in BreachRegister(lake).entries(period="2025-08")} == set(ids[:3])
    assert BreachRegister(lake).get(ids[3])["status"] == "open"
    assert len(made) == 1
    # A lead's step: the views are asked once, for the register with its new event, and a
    # read of the lake after it is that register.
    changed = BreachRegister(lake).change(ids[3], "ack", "lead", "")
    assert len(made) == 2
    assert BreachRegister(lake).get(ids[3]) == changed
    assert len(made) == 2
    # Another register read in between is another register.
    other = open_lake(tmp_path / "other")
    _register(other)
    assert BreachRegister(other).get(ids[3])["status"] == "open"
    assert BreachRegister(lake).get(ids[3])["status"] == "acknowledged"
    assert len(made) == 4
