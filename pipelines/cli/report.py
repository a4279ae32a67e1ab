"""`datashare report [--output FILE] [--refresh] [--as-of WHEN]`: the HTML oversight pack.

Each pack written is kept in the lake with its figures and a manifest of what it was
computed from, and marks the figures that differ from the last pack kept
(`pipelines/oversight/pack_archive.py`). `--as-of` recomputes the pack from the curated months as
they stood at a moment (`pipelines/lake/curated_history.py`), outside the home's warehouse.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.home.settings import Settings

if TYPE_CHECKING:
    from pipelines.oversight.pack_archive import KeptPack

DEFAULT_NAME = "oversight-pack.html"
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _moment(text: str) -> datetime:
    """A date (the end of that day, UTC) or a date and time (UTC unless it says)."""
    try:
        if DAY.match(text):
            return datetime.combine(datetime.fromisoformat(text).date(), time.max, UTC)
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (2026-03-31) or a time (2026-03-31T17:00)"
        ) from e
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_report_command(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="write the HTML oversight pack (a chart and definition per measure)",
        description="Write the oversight pack from the marts in warehouse.duckdb: one "
        "self-contained HTML page (charts drawn inline, nothing fetched from the internet). "
        "Each pack is kept in the lake (packs/<when>/) with a manifest of the deliveries, "
        "contract versions and mappings it was computed from; figures that differ from the "
        "previous pack's are marked revised.",
    )
    report.add_argument(
        "--output", type=Path, help=f"the HTML file (default: <home>/reports/{DEFAULT_NAME})"
    )
    report.add_argument(
        "--refresh",
        action="store_true",
        help="recompute every mart from the curated tables first, outside Dagster "
        "(normally the oversight assets do it in `datashare run`)",
    )
    report.add_argument(
        "--as-of",
        type=_moment,
        metavar="WHEN",
        help="recompute the pack from the deliveries that were current then (a date: the "
        "end of that day, UTC; or a time such as 2026-03-31T17:00); written to "
        "<home>/reports/oversight-pack-as-of-<when>.html, not kept as a new pack",
    )


def run_report_command(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.lake.store import open_lake
    from pipelines.oversight.mart_runner import write_marts
    from pipelines.oversight.pack import read_marts
    from pipelines.warehouse.catalog import build_warehouse
    from schemas.contract import load_contracts

    if getattr(args, "as_of", None):
        return run_as_of(args.as_of, args.output, settings)
    output = args.output or settings.home / "reports" / DEFAULT_NAME
    if getattr(args, "refresh", False) or not settings.warehouse.exists():
        lake, contracts = open_lake(settings.lake), load_contracts()
        build_warehouse(lake, contracts, settings.warehouse)
        if getattr(args, "refresh", False):
            written = write_marts(settings.warehouse, lake, contracts=contracts)
            print(f"Computed {len(written)} oversight mart(s) into {lake.url_of('oversight')}")
            build_warehouse(lake, contracts, settings.warehouse)
    tables = read_marts(settings.warehouse)
    # The demo run again with nothing new: the pack written since the warehouse last changed
    # (the marts' step rebuilds it after writing them) already shows these figures.
    current = output.exists() and output.stat().st_mtime_ns > settings.warehouse.stat().st_mtime_ns
    if getattr(args, "if_changed", False) and current:
        path, kept = output, None
    else:
        path, kept, revised = write_and_keep(settings, output, tables)
    missing = [name for name, table in tables.items() if table is None]
    empty = [name for name, table in tables.items() if table is not None and table.num_rows == 0]
    print(f"Oversight pack: {path}")
    print(f"  {len(tables) - len(missing) - len(empty)} measure(s) with figures", end="")
    print(f", {len(empty)} with no data yet" if empty else "", end="")
    print(f", {len(missing)} not computed yet" if missing else "")
    if kept is not None:
        print(f"  Kept as {kept}, with its manifest", end="")
        print(f"; {revised} figure(s) revised since the previous pack" if revised else "")
    if missing:
        print(
            "  Not computed: " + ", ".join(missing) + " (run `datashare run`, or "
            "`datashare report --refresh` to compute them here)"
        )
    return 0


def write_and_keep(settings: Settings, output: Path, tables: dict) -> tuple[Path, str, int]:
    """Write the pack, marking what differs from the last pack kept, and keep it; returns
    the page, where it is kept and how many figures were revised."""
    from pipelines.lake.store import open_lake
    from pipelines.oversight.pack import write_report
    from pipelines.oversight.pack_archive import (
        figure_revisions,
        keep_pack,
        kept_packs,
        make_manifest,
        now,
        read_sources,
    )
    from schemas.contract import load_contracts

    lake = open_lake(settings.lake)
    sources = read_sources(settings.warehouse)
    previous = next((p for p in reversed(kept_packs(lake)) if not p.manifest["as_of"]), None)
    revisions = figure_revisions(previous, lake, tables, sources) if previous else {}
    path = write_report(
        settings.warehouse, output, revisions, previous.written_at if previous else None
    )
    versions = {name: c.version for name, c in load_contracts().items()}
    kept = keep_pack(lake, path, tables, make_manifest(sources, versions, now()))
    return path, lake.url_of(kept.folder), sum(len(r) for r in revisions.values())


@dataclass(frozen=True)
class AsOfPack:
    path: Path  # the page
    tables: dict  # each mart's rows as recomputed (None: not computed)
    manifest: dict  # what it was computed from
    lost: list[str]  # months that could not be reproduced, and why
    note: str = ""  # what the page says about the recomputation


def recompute_as_of(when: datetime, output: Path, settings: Settings) -> AsOfPack:
    """Recompute the pack from the curated months as they stood at `when`, in a scratch
    lake and warehouse, with the same code, and write it to `output`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines.lake.curated_history import months_as_of
    from pipelines.lake.register import DELIVERY_EVENT_SCHEMA, Register
    from pipelines.lake.store import FolderLake, open_lake
    from pipelines.oversight.mart_runner import write_marts
    from pipelines.oversight.pack import read_marts, write_report
    from pipelines.oversight.pack_archive import kept_packs, make_manifest, now, read_sources
    from pipelines.warehouse.catalog import build_warehouse
    from schemas.contract import load_contracts

    lake, contracts = open_lake(settings.lake), load_contracts()
    register = Register(lake)
    everything = register.events()
    events = [e for e in everything if e["event_at"] <= when]
    months = months_as_of(lake, everything, when)
    lost = [f"{m.contract} {m.period}: {m.why}" for m in months if m.key is None]
    with tempfile.TemporaryDirectory(prefix="datashare-as-of-") as tmp:
        scratch = FolderLake(Path(tmp) / "lake")
        for m in months:
            if m.key is not None and m.contract in contracts:
                target = scratch.curated_path(m.contract, m.period)
                scratch.write_bytes(target, lake.read_bytes(m.key))
        # The register as it stood: the files' names and dates for the sources lines.
        for contract in sorted({e["contract"] for e in events}):
            mine = [e for e in events if e["contract"] == contract]
            scratch.write_table(
                f"{scratch.delivery_events_dir(contract)}/as-of.parquet",
                pa.Table.from_pylist(mine, DELIVERY_EVENT_SCHEMA),
            )
        breaches = register.breach_table()
        breaches = breaches.filter(pc.less_equal(breaches["raised_at"], when))
        if breaches.num_rows:
            key = "governance/breaches/contract=all/period=all/as-of.parquet"
            scratch.write_table(key, breaches)
        warehouse = Path(tmp) / "warehouse.duckdb"
        build_warehouse(scratch, contracts, warehouse)
        write_marts(warehouse, scratch, contracts=contracts)
        build_warehouse(scratch, contracts, warehouse)
        tables = read_marts(warehouse)
        versions = {name: c.version for name, c in contracts.items()}
        manifest = make_manifest(read_sources(warehouse), versions, now(), when, lost)
        note = f"Recomputed as of {when:%d %B %Y, %H:%M} UTC from the deliveries current then."
        if lost:
            note += " Not reproduced: " + "; ".join(lost) + "."
        published = [p for p in kept_packs(lake) if p.written_at <= when]
        if published:
            note += " " + compared_with(published[-1], manifest, lake.url_of(published[-1].folder))
        path = write_report(warehouse, output, note=note)
    return AsOfPack(path, tables, manifest, lost, note)


def compared_with(kept: KeptPack, manifest: dict, where: str) -> str:
    """How a recomputation differs from the pack kept then in what it was computed from."""
    said = [f"The pack published then is kept as {where}."]
    old = kept.manifest
    if set(old.get("deliveries", {})) != set(manifest["deliveries"]):
        said.append("It was computed from other deliveries (see both manifests).")
    for what, label in (
        ("contracts", "contract versions"),
        ("mappings", "mapping files"),
        ("mart_definitions", "mart definitions (SQL and YAML)"),
        ("datashare_version", "datashare version"),
    ):
        # A pack kept before a field was recorded says nothing about it.
        if what in old and old[what] != manifest[what]:
            said.append(f"Its {label} differ from today's, used here.")
    return " ".join(said)


def run_as_of(when: datetime, output: Path | None, settings: Settings) -> int:
    """`datashare report --as-of WHEN`: the pack as of `when`, its manifest beside it."""
    label = when.strftime("%Y-%m-%dT%H%M")
    output = output or settings.home / "reports" / f"oversight-pack-as-of-{label}.html"
    pack = recompute_as_of(when, output, settings)
    manifest_path = pack.path.with_suffix(".manifest.json")
    manifest_path.write_text(json.dumps(pack.manifest, indent=1), encoding="utf-8")
    shown = sum(1 for t in pack.tables.values() if t is not None and t.num_rows)
    print(f"Oversight pack as of {when:%Y-%m-%d %H:%M} UTC: {pack.path}")
    print(
        f"  {shown} measure(s) with figures, from {len(pack.manifest['deliveries'])} delivery(ies)"
    )
    print(f"  Manifest: {manifest_path}")
    for line in pack.lost:
        print(f"  Not reproduced: {line}")
    if "kept as" in pack.note:
        print("  " + pack.note[pack.note.index("The pack published then") :])
    return 0
