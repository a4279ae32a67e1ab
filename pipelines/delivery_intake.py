"""Intake: take each drop-zone file exactly once, by the SHA-256 of its bytes.

A file already taken (same path, size and modification time) is skipped. New bytes are
copied into the lake's landing area, the copy checked against the hash, and recorded as
received. The same bytes under another name are recorded as a duplicate, not processed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipelines.dropzone import DropFile, FolderDropZone
from pipelines.lake import Lake
from pipelines.register import DeliveryEvent, Register

KNOWN_SUFFIXES = (".csv.gz", ".csv", ".parquet")


class LandingCopyMismatch(RuntimeError):
    """The landing copy does not hash to what was read from the drop zone."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
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
    received: list[DeliveryEvent]
    duplicates: list[DeliveryEvent]


def take_deliveries(
    contract: str,
    period: str,
    dropzone: FolderDropZone,
    lake: Lake,
    register: Register,
    run_id: str | None = None,
) -> IntakeResult:
    """Land every new file for one contract and period; record what each one is."""
    seen = register.seen_sources(contract)
    known = register.deliveries(contract)
    result = IntakeResult([], [])
    for drop in dropzone.deliveries(contract, period):
        if (drop.relative, drop.size, drop.mtime_ns) in seen:
            continue
        event = _take_one(drop, contract, period, lake, known, run_id)
        register.record(event)
        if event.event == "duplicate":
            result.duplicates.append(event)
        else:
            result.received.append(event)
            known[event.delivery_id] = {"source_path": drop.relative, "period": period}
    return result


def _take_one(
    drop: DropFile, contract: str, period: str, lake: Lake, known: dict[str, dict], run_id
) -> DeliveryEvent:
    sha = sha256_of(drop.path)
    common = dict(
        contract=contract,
        period=period,
        delivery_id=sha,
        source_path=drop.relative,
        source_size=drop.size,
        source_mtime_ns=drop.mtime_ns,
        run_id=run_id,
    )
    if sha in known:
        first = known[sha]
        return DeliveryEvent(
            **common,
            event="duplicate",
            reason=f"Same bytes as the delivery already taken from {first.get('source_path')} "
            f"for {first.get('period')}; not processed again.",
        )
    suffix = suffix_of(drop.path.name)
    landing = lake.landing_path(contract, period, sha, suffix)
    if not landing.exists():
        lake.copy_in(drop.path, landing)
    if sha256_of(landing) != sha:
        landing.unlink()
        raise LandingCopyMismatch(f"landing copy of {drop.relative} does not match its SHA-256")
    return DeliveryEvent(
        **common,
        event="received",
        landing_path=str(landing.relative_to(lake.root)),
        file_format=suffix.lstrip("."),
    )
