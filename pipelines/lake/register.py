"""The governance register in the lake: what was delivered, what happened to it, what broke.

Every fact is an immutable Parquet file. A delivery's history is a series of events
(received, rejected, validated, published, duplicate, superseded); its current state is
its latest event. Breaches are written once per validated delivery.

One small file per event keeps writers from ever editing anything, but every read lists
and opens them all (on S3, a request or two each). So once a contract has `COMPACT_AT`
event files, they are folded into one `compacted-...` file and the small ones removed.
Between the fold being written and the small files being removed a reader can see an
event twice, so every reader takes each distinct event once. The fixed-name "received"
records that make intake idempotent are folded only once they are a day old.

A listing is not a snapshot: a folder is read as names and then each name is looked at
(S3 pages through keys), so a listing taken while a fold runs can miss both the fold's
new file (written after the names were read) and the files it folded (gone by the time
they were looked at), and then holds none of their events. So a reader lists again after
reading, and keeps what it read only if no fold happened meanwhile (see `_read_settled`).

A run asks about its contract a dozen times a month, and each ask listed the contract's
folder twice (a 37-month backfill: 1,080 listings of some 50 files each, every file looked
at). While this process holds a lease on one of the contract's months
(`pipelines.lake.leases`), no other run can change what it is working on, so its reads
of that contract share one listing (`holding`): listed again only when it takes a new
lease, and kept up with its own writes (every record, and its own folds, is added to what
was read as it is written, so no process reads back its own events).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa

from pipelines.lake.store import Lake

# Event files per contract before they are folded into one. Each read of the register in
# a new process (every `datashare run`, the demo's idle second pass) opens every file: at
# 64, a two-year demo's ten contracts never folded (48 timed files each, 605 files read by
# its idle pass); at 16 a fold reads 16 small files and one folded one.
COMPACT_AT = 16
MARKERS_KEPT = timedelta(days=1)  # how long write-once records stay unfolded

DELIVERY_EVENT_SCHEMA = pa.schema(
    [
        ("contract", pa.string()),
        ("period", pa.string()),
        ("delivery_id", pa.string()),
        ("event", pa.string()),
        ("event_at", pa.timestamp("us", tz="UTC")),
        ("source_path", pa.string()),
        ("source_size", pa.int64()),
        ("source_mtime_ns", pa.int64()),
        ("landing_path", pa.string()),
        ("file_format", pa.string()),
        ("rows_delivered", pa.int64()),
        ("rows_curated", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("reason", pa.string()),
        ("run_id", pa.string()),
        ("source_version", pa.string()),
    ]
)

BREACH_SCHEMA = pa.schema(
    [
        ("breach_id", pa.string()),
        ("contract", pa.string()),
        ("contract_version", pa.string()),
        ("period", pa.string()),
        ("delivery_id", pa.string()),
        ("rule", pa.string()),
        ("clause", pa.string()),
        ("severity", pa.string()),
        ("action", pa.string()),
        ("failing_rows", pa.int64()),
        ("rows_checked", pa.int64()),
        ("failing_share", pa.float64()),
        ("sample_rows", pa.list_(pa.int64())),
        ("detail", pa.string()),
        ("raised_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class DeliveryEvent:
    contract: str
    period: str
    delivery_id: str
    event: str
    source_path: str | None = None
    source_size: int | None = None
    source_mtime_ns: int | None = None
    landing_path: str | None = None
    file_format: str | None = None
    rows_delivered: int | None = None
    rows_curated: int | None = None
    rows_quarantined: int | None = None
    reason: str | None = None
    run_id: str | None = None
    source_version: str | None = None  # DropFile.version of the file the bytes came from
    event_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Breach:
    """One rule broken by one delivery, in words a data-sharing lead can act on."""

    contract: str
    contract_version: str
    period: str
    delivery_id: str | None  # None for a breach of the schedule (no delivery)
    rule: str
    clause: str
    severity: str
    action: str
    failing_rows: int
    rows_checked: int
    detail: str
    sample_rows: list[int] = field(default_factory=list)
    raised_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def breach_id(self) -> str:
        # Stable: the same rule on the same delivery is the same breach, however often run.
        # A breach of the schedule has no delivery: it is the period's.
        key = f"{self.contract}|{self.delivery_id or self.period}|{self.rule}"
        return "B-" + hashlib.sha256(key.encode()).hexdigest()[:12]

    @property
    def failing_share(self) -> float | None:
        """The share of checked rows that failed; None when no row was checked (a breach
        of the delivery as a whole: unreadable, late, held back by its manifest)."""
        return self.failing_rows / self.rows_checked if self.rows_checked else None


class Register:
    """Reads and appends the governance records kept in the lake."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def record(self, event: DeliveryEvent) -> None:
        stamp = event.event_at.strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{event.delivery_id[:16]}-{event.event}-{uuid.uuid4().hex[:6]}.parquet"
        key = f"{self.lake.delivery_events_dir(event.contract)}/{name}"
        table = pa.Table.from_pylist([asdict(event)], DELIVERY_EVENT_SCHEMA)
        self.lake.write_table(key, table)
        _wrote(self.lake, event.contract, [], [key], rows_of(table))
        self._compact_if_due(event.contract)

    def _compact_if_due(self, contract: str) -> None:
        pattern = f"{self.lake.delivery_events_dir(contract)}/*.parquet"
        listing = _shared_listing(self.lake, contract)  # (its own writes are in it)
        if listing is None:
            listing = self.lake.glob(pattern)
        if sum(_timed(k) for k in listing) >= COMPACT_AT:
            try:
                self.compact(contract)
            except FileNotFoundError:
                pass  # another run was folding the same files: its fold stands

    def compact(self, contract: str) -> int:
        """Fold a contract's event files into one; returns how many files were folded.

        Safe alongside writers and other compactions: new events are other files, and a
        file is removed only after the fold holding its events has been written. A
        write-once record (`record_once`) is folded only a day after it was written, when
        no intake can still be racing to write the same one.
        """
        folder = self.lake.delivery_events_dir(contract)
        keys = self.lake.glob(f"{folder}/*.parquet")
        settled = datetime.now(UTC) - MARKERS_KEPT
        files = [k for k in keys if _timed(k)] + [
            k for k in keys if not _timed(k) and _written_at(self.lake, k) < settled
        ]
        if len(files) < 2:
            return 0
        rows = _distinct(rows_of(self.lake.read_all(files, DELIVERY_EVENT_SCHEMA)))
        rows.sort(key=lambda r: r["event_at"])
        stamp = rows[-1]["event_at"].strftime("%Y%m%dT%H%M%S%f")
        key = f"{folder}/compacted-{stamp}-{uuid.uuid4().hex[:6]}.parquet"
        young = [k for k in keys if k not in set(files) and not _timed(k)]
        table = pa.Table.from_pylist(rows, DELIVERY_EVENT_SCHEMA)
        self.lake.write_table(key, _with_markers(table, _marker_rows(self.lake, files, young)))
        self.lake.delete_many(files)
        _wrote(self.lake, contract, files, [key], rows)
        return len(files)

    def record_once(self, event: DeliveryEvent, key: str) -> bool:
        """Record `event` under a fixed name; False (and nothing written) if already there.

        Of two intakes racing over the same bytes exactly one records them as received.
        """
        name = f"{self.lake.delivery_events_dir(event.contract)}/{key}.parquet"
        table = pa.Table.from_pylist([asdict(event)], DELIVERY_EVENT_SCHEMA)
        if self.lake.write_table_once(name, table):
            rows = rows_of(table)  # (as a read gives them)
            _MARKED_AT[(self.lake.url, name)] = rows[0]["event_at"]
            _wrote(self.lake, event.contract, [], [name], rows)
            return True
        _list_again(self.lake, event.contract)  # another run's record: read it next time
        return False

    def write_breaches(
        self, contract: str, period: str, delivery_id: str, breaches: list[Breach]
    ) -> None:
        rows = [
            {**asdict(b), "breach_id": b.breach_id, "failing_share": b.failing_share}
            for b in breaches
        ]
        table = pa.Table.from_pylist(rows, BREACH_SCHEMA)
        self.lake.write_table(self.lake.breaches_path(contract, period, delivery_id), table)

    def events(self, contract: str | None = None) -> list[dict]:
        """Every delivery event (of `contract`, if given), oldest first."""
        # What is read is kept between calls (see `_event_rows`), but every call lists the
        # files again: one contract's folder when one is asked about (a run asks about its
        # contract a dozen times a month; listing all ten of the demo's folders each time
        # was a sixth of its runs), every contract's otherwise.
        if contract:
            rows = _shared_rows(self.lake, contract)
            return [dict(r) for r in rows if r["contract"] == contract]
        rows = _read_settled(self.lake, EVERY_CONTRACT)
        _share_by_contract(self.lake, rows)
        return [dict(r) for r in rows]

    def deliveries(self, contract: str | None = None) -> dict[str, dict]:
        """The current state of each delivery (its latest event), keyed by delivery id."""
        return current_states(self.events(contract))

    def seen_sources(self, contract: str) -> set[tuple[str, int, int]]:
        """(path, size, mtime) of every drop-zone file already taken, to spot what is new."""
        return {
            (e["source_path"], e["source_size"], e["source_mtime_ns"])
            for e in self.events(contract)
            if e["event"] in ("received", "duplicate") and e["source_path"]
        }

    def seen_versions(self) -> set[tuple[str, str]]:
        """(path, version) of every drop-zone file already taken, whatever became of it."""
        return {
            (e["source_path"], e["source_version"] or f"{e['source_size']}:{e['source_mtime_ns']}")
            for e in self.events()
            if e["source_path"]
        }

    def breach_table(self, contract: str | None = None) -> pa.Table:
        """Every breach record (of `contract`, if given) as written."""
        files = self.lake.glob(f"governance/breaches/contract={contract or '*'}/*/*.parquet")
        return self.lake.read_all(files, BREACH_SCHEMA)  # (empty, with no files)

    def breaches(self, contract: str | None = None) -> list[dict]:
        """Every breach (of `contract`, if given). Records written before failing_share was
        left empty for a breach with no rows checked read 1.0 there: read as None."""
        return _as_read(rows_of(self.breach_table(contract)))

    def delivery_breaches(self, contract: str, deliveries: Mapping[str, str | None]) -> list[dict]:
        """The breaches of some of `contract`'s deliveries (delivery id: its period), as
        `breaches(contract)` has them, read from those deliveries' own files only.

        Every breach file of a contract is one per delivery, at `breaches_path` under the
        delivery's period (or `none` for a file refused with no period); reading all of
        them costs a file per month of history, which a run asking about the few deliveries
        it judged (or the few ever held back) need not pay. A delivery whose file is not
        where its period says is looked for among all of the contract's (never, as this
        version writes them)."""
        if not deliveries:
            return []
        lake = self.lake
        keys = {lake.breaches_path(contract, p or "none", d): d for d, p in deliveries.items()}
        try:
            table = lake.read_all(sorted(keys), BREACH_SCHEMA)
        except FileNotFoundError:
            found = [k for k in sorted(keys) if lake.exists(k)]
            if len(found) < len(keys):
                wanted = {f"{d}.parquet" for d in deliveries}
                found += [
                    k
                    for k in lake.glob(f"governance/breaches/contract={contract}/*/*.parquet")
                    if k not in keys and k.rsplit("/", 1)[-1] in wanted
                ]
            table = lake.read_all(found, BREACH_SCHEMA)
        return [b for b in _as_read(rows_of(table)) if b["delivery_id"] in deliveries]


def current_states(events: list[dict]) -> dict[str, dict]:
    """`Register.deliveries` of events already read (`Register.events`, oldest first): each
    delivery's latest event, with what earlier ones said that it does not."""
    state: dict[str, dict] = {}
    for event in events:
        if event["event"] == "duplicate":
            continue  # a duplicate is a second sighting, not a new state of the delivery
        merged = {**state.get(event["delivery_id"], {})}
        merged.update({k: v for k, v in event.items() if v is not None})
        state[event["delivery_id"]] = merged
    return state


def _as_read(rows: list[dict]) -> list[dict]:
    """Breach rows as readers take them: records written before failing_share was left
    empty for a breach with no rows checked read 1.0 there, read as None."""
    for row in rows:
        if not row["rows_checked"]:
            row["failing_share"] = None
    return rows


READ_ATTEMPTS = 8  # listings tried before a read of the register gives up


def _read_settled(lake: Lake, pattern: str) -> list[dict]:
    """The distinct events in the files matching `pattern`, from a listing no fold tore.

    A fold writes its file and then removes the ones it folded; a listing taken meanwhile
    can hold neither (see the module's docstring) and would read as events lost, with no
    error. Such a fold leaves its mark on the next listing: a file the first one held is
    gone, or a `compacted-` file the first one lacked is there. So every read is checked
    by listing again, and redone (reading only the files it has not read yet) until the
    listing after it shows no fold. Plain new events arriving meanwhile do not count: they
    are newer than the read, which stays whole without them. (Only a second fold, of the
    first one's file and `COMPACT_AT` - 1 newer events, done while the reader was held up
    in both listings could hide the first; no single fold fools the check.)
    """
    files = lake.glob(pattern)
    for attempt in range(READ_ATTEMPTS):
        try:
            rows = _event_rows(lake, pattern, files)
        except FileNotFoundError:
            # A fold removed files after we listed them; its own file holds their events,
            # and listing again (once the removal is done) finds it.
            if attempt == READ_ATTEMPTS - 1:
                raise
            rows = None
        again = lake.glob(pattern)
        if rows is not None and not _folded_between(files, again):
            return rows
        files = again
        time.sleep(min(0.02 * 2**attempt, 1.0))  # let a fold that is under way finish
    raise RuntimeError(
        f"The register at {lake.url} kept being folded while it was read "
        f"({READ_ATTEMPTS} listings in a row changed): try again."
    )


def _folded_between(before: list[str], after: list[str]) -> bool:
    """Whether a fold ran between (or during) the two listings: a file went, or a fold's
    file came."""
    earlier, later = set(before), set(after)
    return not earlier <= later or any(
        k.rsplit("/", 1)[-1].startswith("compacted-") for k in later - earlier
    )


# Event files never change once written: each has a name of its own (or is written once
# under a fixed one), and a fold writes a new file before removing the ones it folded. So a
# process keeps what it read of each listing and, when the next listing only adds files,
# reads just those: a run reads the register dozens of times, and it grows with history.
_READ: dict[tuple[str, str], tuple[frozenset[str], list[dict]]] = {}


EVERY_CONTRACT = "governance/deliveries/contract=*/*.parquet"


def _share_by_contract(lake: Lake, rows: list[dict]) -> None:
    """After a settled read of every contract's events (`rows`), keep each contract's part
    as a read of its own folder: what that read would have listed and found. A run reads
    every contract's events once and then each contract's many times; without this, each
    contract's files would be read a second time. A contract's own read that is already
    newer (it saw a fold this one did not) is left as it is."""
    listing, cached = _READ.get((lake.url, EVERY_CONTRACT), (frozenset(), None))
    if cached is not rows:  # another thread read since: its listing is not this read's
        return
    folders: dict[str, set[str]] = {}
    for key in listing:
        folders.setdefault(key.rsplit("/", 1)[0], set()).add(key)
    for folder, keys in folders.items():
        pattern, contract = f"{folder}/*.parquet", folder.rsplit("contract=", 1)[-1]
        known, _ = _READ.get((lake.url, pattern), (frozenset(), []))
        if known <= keys:
            mine = [r for r in rows if r["contract"] == contract]
            _READ[(lake.url, pattern)] = (frozenset(keys), mine)


def _folder(lake: Lake, contract: str) -> str:
    """The pattern of `contract`'s event files (what its reads list)."""
    return f"{lake.delivery_events_dir(contract)}/*.parquet"


def _wrote(
    lake: Lake, contract: str, removed: list[str], added: list[str], rows: list[dict]
) -> None:
    """This process changed `contract`'s event files: `added` written (holding `rows`),
    `removed` deleted (a fold, whose `rows` are theirs). What was read of its folder, and of
    every contract's, is brought up to date as if read again: the files it lists then hold
    exactly its rows (a fold's rows were those of the files it removed), so nothing this
    process wrote is ever read back."""
    for pattern in (_folder(lake, contract), EVERY_CONTRACT):
        entry = _READ.get((lake.url, pattern))
        if entry is None:
            continue
        known, read = entry
        _READ[(lake.url, pattern)] = ((known - set(removed)) | set(added), _merged(read, rows))


def _merged(read: list[dict], rows: list[dict]) -> list[dict]:
    """`sorted(_distinct(read + rows), key=event_at)` for `read` already so (oldest first,
    each event once), without going through all of `read`: each row is looked for among the
    events of its own time only, and put after them."""
    merged = list(read)
    for row in rows:
        at, identity = row["event_at"], tuple(row.values())
        first = bisect_left(merged, at, key=_at)
        after = bisect_right(merged, at, lo=first, key=_at)
        if all(tuple(r.values()) != identity for r in merged[first:after]):
            merged.insert(after, row)
    return merged


def _at(row: dict) -> datetime:
    return row["event_at"]


# Shared reads (see the module's docstring): per (lake, contract), how many of its leases
# this process holds, how many times it has taken one (a listing made before the latest
# was taken is not shared), and those of its folders listed since.
_HOLDING: dict[tuple[str, str], int] = {}
_TAKEN: dict[tuple[str, str], int] = {}
_LISTED: set[tuple[str, str]] = set()
_HOLDING_LOCK = threading.Lock()


@contextmanager
def holding(lake: Lake, contract: str) -> Iterator[None]:
    """While the block runs, this process holds a lease on one of `contract`'s months (what
    `pipelines.lake.leases.month_lease` says when it takes one): the contract's reads share
    one listing, made after the lease was taken."""
    key = (lake.url, contract)
    with _HOLDING_LOCK:
        _HOLDING[key] = _HOLDING.get(key, 0) + 1
        _TAKEN[key] = _TAKEN.get(key, 0) + 1
        _LISTED.discard(key)  # what the run before us wrote is read at the next ask
    try:
        yield
    finally:
        with _HOLDING_LOCK:
            _HOLDING[key] -= 1
            if not _HOLDING[key]:
                del _HOLDING[key]
                _LISTED.discard(key)


def _list_again(lake: Lake, contract: str) -> None:
    """Someone else wrote to `contract`'s events: its next read lists the folder again."""
    with _HOLDING_LOCK:
        _LISTED.discard((lake.url, contract))


def _shared_listing(lake: Lake, contract: str) -> frozenset[str] | None:
    """The listing `contract`'s reads share now (its own writes added), or None when its
    folder must be listed (no lease held, or not listed since the latest was taken)."""
    key = (lake.url, contract)
    with _HOLDING_LOCK:
        if key not in _LISTED:
            return None
        entry = _READ.get((lake.url, _folder(lake, contract)))
    return entry[0] if entry else None


def _shared_rows(lake: Lake, contract: str) -> list[dict]:
    """`contract`'s events: the shared read while a lease is held, else a settled read."""
    pattern = _folder(lake, contract)
    key = (lake.url, contract)
    with _HOLDING_LOCK:
        if key in _LISTED and (entry := _READ.get((lake.url, pattern))) is not None:
            return entry[1]
        taken = _TAKEN.get(key)
    rows = _read_settled(lake, pattern)
    with _HOLDING_LOCK:
        # Shared only if a lease was held all along (none was taken since the listing).
        if key in _HOLDING and _TAKEN.get(key) == taken:
            _LISTED.add(key)
    return rows


# Write-once records stay where they are for a day after they are written (see `compact`),
# so a contract sent years of history in one day holds one per month of it, and every new
# process opened each one. A fold keeps a copy of the rows of the write-once records it
# leaves in place in its file's metadata (not among its rows: the warehouse's views read
# the rows, and would see those events twice), and a reader takes them from there instead
# of opening each record: what it opens stays the fold and the few records written since.
# A fold without the copy (an earlier version's) is read as before: each record opened.
MARKERS_METADATA = b"datashare.write_once_records"


def _with_markers(table: pa.Table, markers: dict[str, dict]) -> pa.Table:
    """`table` (a fold) carrying the rows of the write-once records `markers` (by key)."""
    if not markers:
        return table
    keys = sorted(markers)
    copy = pa.Table.from_pylist([markers[k] for k in keys], DELIVERY_EVENT_SCHEMA)
    copy = copy.append_column("key", pa.array(keys, pa.string()))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, copy.schema) as writer:
        writer.write_table(copy)
    blob = sink.getvalue().to_pybytes()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), MARKERS_METADATA: blob})


def _markers_in(lake: Lake, fold: str) -> dict[str, dict]:
    """The write-once records' rows a fold's file carries (none for an older fold)."""
    # (No column read: the file's footer only. A fold removed meanwhile is FileNotFoundError,
    # as any read of the register meets it, on every kind of lake.)
    blob = (lake.read_table(fold, columns=[]).schema.metadata or {}).get(MARKERS_METADATA)
    if not blob:
        return {}
    copy = pa.ipc.open_file(pa.py_buffer(blob)).read_all()
    keys = copy.column("key").to_pylist()
    return dict(zip(keys, rows_of(copy.drop_columns(["key"])), strict=True))


def _marker_rows(lake: Lake, folded: list[str], young: list[str]) -> dict[str, dict]:
    """The rows of the write-once records `young` (left in place by a fold), taken from the
    folds among `folded` that carry them, the others read."""
    carried: dict[str, dict] = {}
    for fold in (k for k in folded if k.rsplit("/", 1)[-1].startswith("compacted-")):
        carried.update(_markers_in(lake, fold))
    markers = {k: carried[k] for k in young if k in carried}
    unread = [k for k in young if k not in carried]
    rows = rows_of(lake.read_all(unread, DELIVERY_EVENT_SCHEMA))
    if len(rows) == len(unread):  # one event a record, as `record_once` writes them
        markers.update(zip(unread, rows, strict=True))
    return markers


def _read_events(lake: Lake, files: list[str]) -> list[dict]:
    """The events in `files` (of one listing), each write-once record a fold among them
    carries taken from the fold rather than opened (see `MARKERS_METADATA`)."""
    carried: dict[str, dict] = {}
    for fold in (k for k in files if k.rsplit("/", 1)[-1].startswith("compacted-")):
        carried.update(_markers_in(lake, fold))
    unread = [k for k in files if k not in carried]
    return [carried[k] for k in files if k in carried] + rows_of(
        lake.read_all(unread, DELIVERY_EVENT_SCHEMA)
    )


def _event_rows(lake: Lake, pattern: str, files: list[str]) -> list[dict]:
    """The distinct events in `files` (a listing of `pattern`), oldest first."""
    listing = frozenset(files)
    known, rows = _READ.get((lake.url, pattern), (frozenset(), []))
    if not known <= listing:  # files folded away since: read the listing afresh
        known, rows = frozenset(), []
    new = [f for f in files if f not in known]
    if new or not known:
        added = _read_events(lake, new)
        rows = sorted(_distinct(rows + added), key=lambda r: r["event_at"])
        _READ[(lake.url, pattern)] = (listing, rows)
    return rows


def rows_of(table: pa.Table) -> list[dict]:
    """`table.to_pylist()`, the same values, without importing pandas.

    pyarrow turns a timestamp with a time zone into Python by first asking whether pandas
    is installed, which imports it (about half a second, in every command that reads the
    register, an idle run's included). So such columns are read as the UTC wall-clock
    times they hold, the zone put on afterwards as pyarrow puts it on (a zone name it
    cannot find is left to pyarrow); a nanosecond column, which pyarrow would give as
    pandas timestamps, is left to it too.
    """
    for index, column in enumerate(table.schema):
        kind = column.type
        if not pa.types.is_timestamp(kind) or not kind.tz or kind.unit == "ns":
            continue
        try:
            zone = ZoneInfo(kind.tz)
        except (ZoneInfoNotFoundError, ValueError):
            return table.to_pylist()
        naive = pa.timestamp(kind.unit)
        utc = pa.chunked_array([c.view(naive) for c in table.column(index).chunks], naive)
        table = table.set_column(index, pa.field(column.name, naive), utc)
        rows = rows_of(table)
        for row in rows:
            if (at := row[column.name]) is not None:
                row[column.name] = at.replace(tzinfo=UTC).astimezone(zone)
        return rows
    return table.to_pylist()


# When each write-once record was written, as read (it never changes): a fold asks about
# every one not yet folded, and folds come every `COMPACT_AT` events.
_MARKED_AT: dict[tuple[str, str], datetime] = {}


def _written_at(lake: Lake, key: str) -> datetime:
    """The time of the event a write-once record holds (read once per process)."""
    if (lake.url, key) not in _MARKED_AT:
        _MARKED_AT[(lake.url, key)] = lake.read_table(key, ["event_at"])[0][0].as_py()
    return _MARKED_AT[(lake.url, key)]


def _timed(key: str) -> bool:
    """Events written by `record` (named from their time) and earlier folds."""
    name = key.rsplit("/", 1)[-1]
    return name[:8].isdigit() or name.startswith("compacted-")


def _distinct(rows: list[dict]) -> list[dict]:
    """Each event once (a fold and the files it folded may be read together)."""
    seen: set[tuple] = set()
    unique = []
    for row in rows:
        identity = tuple(row.values())
        if identity not in seen:
            seen.add(identity)
            unique.append(row)
    return unique
