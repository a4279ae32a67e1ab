"""Intake: take each drop-zone file exactly once, by the SHA-256 of its bytes.

A file version already taken (same path and `DropFile.version`) is skipped. New bytes are
copied to a private temporary file (by the kernel from a folder, streamed from S3) and
hashed (the copy itself, or the bytes on the way), checked to be still the bytes
hashed (the same file, size and times, which any write would move) and moved into the
lake's landing area as an immutable (read-only) copy, then recorded as received. The
same bytes again, under any name, are recorded as a duplicate and not processed.

Intake is idempotent: the "received" record of a delivery is written under a fixed name
that only one writer can create, so two runs racing over the same new file record one
delivery and one duplicate sighting, never two deliveries.

A file outside the agreed layout (or naming no agreed contract, or a period the agreement
does not cover) is kept too: its bytes go to `landing/unfiled/`, and it is recorded once,
under the pseudo-contract `unfiled`, as a rejected delivery with the reason and a
critical breach. The other deliveries go on.

An entry the drop zone refuses to read (a link, a pipe, a hard link; see `dropzone`) is
recorded as rejected the same way, under its contract and period if it sits in the
layout, with no bytes read and none kept. A file still being written is left for a later
run, and so is one removed or changed while it was being read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pipelines.intake.dropzone import (
    ChangedWhileReading,
    DropFile,
    DropZone,
    Fetched,
    RefusedFile,
)
from pipelines.lake.register import Breach, DeliveryEvent, Register
from pipelines.lake.store import FolderLake, Lake

KNOWN_SUFFIXES = (".csv.gz", ".csv", ".parquet")
UNFILED = "unfiled"  # the pseudo-contract of files outside the agreed layout


class LandingCopyMismatch(RuntimeError):
    """The landing copy is no longer the bytes that were hashed when it was fetched."""


def sha256_of(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def suffix_of(name: str) -> str:
    lowered = name.lower()
    for suffix in KNOWN_SUFFIXES:
        if lowered.endswith(suffix):
            return suffix
    return Path(name).suffix.lower() or ".bin"


@dataclass
class IntakeResult:
    received: list[DeliveryEvent] = field(default_factory=list)
    duplicates: list[DeliveryEvent] = field(default_factory=list)
    rejected: list[DeliveryEvent] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # files left for a later run, and why


@dataclass
class IntakePlan:
    """What the drop zone holds that has not been taken yet."""

    pending: dict[tuple[str, str], list[DropFile]] = field(default_factory=dict)
    unfiled: list[tuple[DropFile, str]] = field(default_factory=list)  # (file, reason)
    waiting: list[tuple[DropFile, str]] = field(default_factory=list)  # (file, reason)
    files_seen: int = 0


def plan_intake(
    files: Iterable[DropFile],
    seen: set[tuple[str, str]],
    periods: Mapping[str, Iterable[str]],
) -> IntakePlan:
    """Sort new files into deliveries per (contract, period), unfiled files, and waiting ones.

    `periods` holds each contract's delivery periods up to now (its partition keys): a
    file for a later period waits for its period to close; one for a period the agreement
    does not have is unfiled.
    """
    plan = IntakePlan()
    keys = {name: set(ps) for name, ps in periods.items()}
    for f in files:
        plan.files_seen += 1
        if (f.relative, f.version) in seen:
            continue
        if f.waiting:
            plan.waiting.append((f, f.waiting))
            continue
        if f.problem:
            plan.unfiled.append((f, f.problem))
            continue
        known = keys.get(f.contract, set())
        if f.period in known:
            plan.pending.setdefault((f.contract, f.period), []).append(f)
        elif not known or f.period > max(known):
            plan.waiting.append(
                (f, f"is for {f.period}, a period not yet closed; it will be taken once it is")
            )
        elif f.period < min(known):
            plan.unfiled.append(
                (f, f"is for {f.period}, before the agreement's first period {min(known)}")
            )
        else:
            plan.unfiled.append((f, _between_periods(f.period, known)))
    return plan


def _between_periods(period: str, known: set[str]) -> str:
    """Why a period between two agreed ones is none: a quarter (or year) is named by its
    first month, which a person filing April to June under `2025-05` cannot guess."""
    before = max(p for p in known if p < period)
    after = min(p for p in known if p > period)
    return (
        f"is for {period}, not one of the agreed delivery periods: each period is named by "
        f"its first month, so {period} lies in the period {before} (the next one is {after}); "
        f"file it under {before}"
    )


def take_deliveries(
    contract: str,
    period: str,
    dropzone: DropZone,
    lake: Lake,
    register: Register,
    run_id: str | None = None,
) -> IntakeResult:
    """Land every new file for one contract and period; record what each one is."""
    seen = register.seen_versions()
    known = register.deliveries(contract)
    result = IntakeResult()
    for drop in dropzone.deliveries(contract, period):
        if (drop.relative, drop.version) in seen:
            continue
        if drop.waiting:
            result.waiting.append(f"{drop.relative} {drop.waiting}")
            continue
        event = _taken(
            drop, contract, period, register, run_id, result,
            lambda d: _take_one(d, contract, period, dropzone, lake, register, known, run_id),
        )  # fmt: skip
        if event is None:
            continue
        if event.event == "duplicate":
            result.duplicates.append(event)
        elif event.event == "rejected":
            result.rejected.append(event)
        else:
            result.received.append(event)
            known[event.delivery_id] = {"source_path": drop.relative, "period": period}
    return result


def _taken(
    drop: DropFile,
    contract: str,
    period: str | None,
    register: Register,
    run_id: str | None,
    result: IntakeResult,
    take: Callable[[DropFile], DeliveryEvent],
) -> DeliveryEvent | None:
    """`take(drop)`, or: a refusal recorded for what must not be read; None (noted in
    `result.waiting`) for a file still changing or gone, or a refusal already recorded."""
    try:
        return take(drop)
    except RefusedFile as refused:
        return _refuse(drop, refused, contract, period, register, run_id)
    except ChangedWhileReading as changed:
        result.waiting.append(str(changed))
    except FileNotFoundError:
        result.waiting.append(f"{drop.relative} was removed before it could be taken")
    return None


def _refuse(
    drop: DropFile,
    refused: RefusedFile,
    contract: str,
    period: str | None,
    register: Register,
    run_id: str | None,
) -> DeliveryEvent | None:
    """Record, once, a drop-zone entry that was not read (a link, a pipe): rejected, with a
    critical breach. Its identity is its path and version, since it has no bytes of ours."""
    identity = hashlib.sha256(f"refused:{drop.relative}@{drop.version}".encode()).hexdigest()
    reason = f"{drop.relative} {refused.reason} Nothing from it was taken or published."
    event = DeliveryEvent(
        contract=contract,
        period=period,
        delivery_id=identity,
        event="rejected",
        source_path=drop.relative,
        source_size=drop.size,
        source_mtime_ns=drop.mtime_ns,
        source_version=drop.version,
        file_format="not read",
        reason=reason,
        run_id=run_id,
    )
    if not register.record_once(event, f"refused-{identity}"):
        return None
    breach = Breach(
        contract=contract,
        contract_version="",
        period=period,
        delivery_id=identity,
        rule=refused.rule,
        clause="delivery layout: regular files only, in <contract>/<YYYY-MM>/<file>",
        severity="critical",
        action="delivery rejected",
        failing_rows=0,
        rows_checked=0,
        detail=reason,
    )
    register.write_breaches(contract, period or "none", identity, [breach])
    return event


def _land(lake: Lake, tmp: Path, landing: str, fetched: Fetched, relative: str) -> None:
    """Move the verified temporary copy into place, read-only; keep one already there."""
    if lake.exists(landing):
        with lake.open(landing) as fh:
            if sha256_of(fh) == fetched.sha256:
                return  # an earlier or racing intake landed the same bytes
    # The copy was hashed when it was fetched (its own bytes, or the same buffers as they
    # were written): it is those bytes as long as nothing has written to it since, which
    # its stamp shows without reading the file a second time (a month of 2M rows is
    # 436 MB: 0.3 to 0.5 s of CPU to hash again).
    if not fetched.copy_unchanged(tmp):
        raise LandingCopyMismatch(
            f"landing copy of {relative} changed after it was hashed; it was not landed"
        )
    lake.move_in(tmp, landing, read_only=True)


def _duplicate(common: dict, first: Mapping | None, why: str = "") -> DeliveryEvent:
    if first:
        # A record may lack either (a refusal has no period): say only what is known.
        source = first.get("source_path")
        period = first.get("period")
        where = "the delivery already taken" + (f" from {source}" if source else "")
        where += f" for {period}" if period else ""
    else:
        where = "a delivery taken at the same moment by another run"
    return DeliveryEvent(
        **common,
        event="duplicate",
        reason=f"Same bytes as {where}; not processed again.{why}",
    )


@dataclass
class _Fetched:
    """A drop-zone file fetched and landed, or found to be a duplicate."""

    common: dict
    duplicate: DeliveryEvent | None = None
    landing: str | None = None
    suffix: str = ""


def _fetch_and_land(
    drop: DropFile,
    contract: str,
    period: str | None,
    zone: DropZone,
    lake: Lake,
    register: Register,
    known: dict[str, dict],
    run_id: str | None,
    landing_for: Callable[[str, str], str],
    duplicate_note: str = "",
) -> _Fetched:
    """Fetch the bytes, hash them on the way, and land them unless they are already known."""
    with lake.incoming() as tmp:
        fetched = zone.fetch(drop, tmp)
        sha = fetched.sha256
        common = dict(
            contract=contract,
            period=period,
            delivery_id=sha,
            source_path=drop.relative,
            source_size=tmp.stat().st_size,
            source_mtime_ns=drop.mtime_ns,
            source_version=fetched.version,
            run_id=run_id,
        )
        if sha in known:
            event = _duplicate(common, known[sha], duplicate_note)
            register.record(event)
            return _Fetched(common, duplicate=event)
        suffix = suffix_of(drop.name)
        landing = landing_for(sha, suffix)
        _land(lake, tmp, landing, fetched, drop.relative)
    if fetched.ascii and isinstance(lake, FolderLake):
        # The bytes at `landing` are the ones hashed (landed now, or found there with the
        # same hash): what the hash saw of them spares validation a pass over the file.
        from pipelines.intake.delivery_formats import landed_as_ascii

        landed_as_ascii(lake.path(landing))
    return _Fetched(common, landing=landing, suffix=suffix)


def _take_one(
    drop: DropFile,
    contract: str,
    period: str,
    zone: DropZone,
    lake: Lake,
    register: Register,
    known: dict[str, dict],
    run_id: str | None,
) -> DeliveryEvent:
    fetched = _fetch_and_land(
        drop, contract, period, zone, lake, register, known, run_id,
        lambda sha, suffix: lake.landing_path(contract, period, sha, suffix),
    )  # fmt: skip
    if fetched.duplicate:
        return fetched.duplicate
    common, sha = fetched.common, fetched.common["delivery_id"]
    if drop.manifest is not None:
        # The force's manifest, kept beside the landing copy; checked at validation.
        manifest = zone.read_small(drop.manifest)
        lake.write_bytes(lake.manifest_path(contract, period, sha), manifest)
    event = DeliveryEvent(
        **common,
        event="received",
        landing_path=fetched.landing,
        file_format=fetched.suffix.lstrip("."),
    )
    if register.record_once(event, f"received-{sha}"):
        return event
    event = _duplicate(common, None)  # another run recorded these bytes a moment ago
    register.record(event)
    return event


def take_unfiled(
    dropzone: DropZone,
    lake: Lake,
    register: Register,
    periods: Mapping[str, Iterable[str]],
    run_id: str | None = None,
) -> IntakeResult:
    """Keep and record, once, every new file outside the agreed layout or periods."""
    plan = plan_intake(dropzone.files(set(periods)), register.seen_versions(), periods)
    known = register.deliveries()
    result = IntakeResult()
    result.waiting = [f"{f.relative} {reason}" for f, reason in plan.waiting if f.problem]
    for drop, problem in plan.unfiled:
        event = _taken(
            drop, UNFILED, drop.period, register, run_id, result,
            lambda d, p=problem: _take_unfiled_one(d, p, dropzone, lake, register, known, run_id),
        )  # fmt: skip
        if event is None:
            continue
        (result.duplicates if event.event == "duplicate" else result.rejected).append(event)
        if event.event != "duplicate":
            known[event.delivery_id] = {"source_path": drop.relative, "period": drop.period}
    return result


def _unfiled_rule(problem: str) -> str:
    if "no agreed contract" in problem:
        return "file.contract"
    if "period" in problem or problem.startswith("is for"):
        return "file.period"
    return "file.layout"


def _take_unfiled_one(
    drop: DropFile,
    problem: str,
    zone: DropZone,
    lake: Lake,
    register: Register,
    known: dict[str, dict],
    run_id: str | None,
) -> DeliveryEvent:
    fetched = _fetch_and_land(
        drop, UNFILED, drop.period, zone, lake, register, known, run_id,
        lake.unfiled_path,
        f" This copy ({drop.relative}) is outside the agreed layout.",
    )  # fmt: skip
    if fetched.duplicate:
        return fetched.duplicate
    common, sha, landing, suffix = (
        fetched.common, fetched.common["delivery_id"], fetched.landing, fetched.suffix
    )  # fmt: skip
    kept = landing
    reason = (
        f"{drop.relative} {problem}. The file is kept in the lake ({kept}); nothing from it "
        "was published."
    )
    event = DeliveryEvent(
        **common,
        event="rejected",
        landing_path=kept,
        file_format=suffix.lstrip("."),
        reason=reason,
    )
    if not register.record_once(event, f"unfiled-{sha}"):
        event = _duplicate(common, None)
        register.record(event)
        return event
    breach = Breach(
        contract=UNFILED,
        contract_version="",
        period=drop.period,
        delivery_id=sha,
        rule=_unfiled_rule(problem),
        clause="delivery layout: <contract>/<YYYY-MM>/<file>",
        severity="critical",
        action="delivery rejected",
        failing_rows=0,
        rows_checked=0,
        detail=reason,
    )
    register.write_breaches(UNFILED, drop.period or "none", sha, [breach])
    return event
