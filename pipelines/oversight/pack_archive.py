"""Every oversight pack written is kept, with what it was computed from, and compared.

`datashare report` keeps each pack it writes in the lake, `packs/<written at>/`:
- `oversight-pack.html`, the page as published;
- `manifest.json`: when, the datashare version, the contract versions, the SHA-256 of each
  mapping file, and every delivery whose curated rows fed each mart (from
  `governance.mart_sources`, `pipelines/lake/provenance.py`);
- `figures/<mart>.parquet`: each mart's rows as the page showed them.

The next pack is compared with the last one kept: a figure (a numeric cell of a mart, found
by the mart's other columns) that differs is a revision, shown in the new pack with the old
value, the new one, and the deliveries new since the last pack that restated its month.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.lake.store import Lake

PACKS = "packs"
STAMP = "%Y%m%dT%H%M%S%f"
NUMERIC = ("BIGINT", "INTEGER", "DOUBLE", "DECIMAL", "HUGEINT", "FLOAT", "SMALLINT", "REAL")


def datashare_version() -> str:
    try:
        return importlib.metadata.version("datashare")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


def mappings_hashes(directory: Path | None = None) -> dict[str, str]:
    """SHA-256 of each oversight mapping file (the marts' groupings are data)."""
    from pipelines.oversight.mart_runner import MAPPINGS_DIR

    folder = directory or MAPPINGS_DIR
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.yaml"))
    }


def mart_definition_hashes(directory: Path | None = None) -> dict[str, str]:
    """SHA-256 of each mart's SQL and YAML (an analyst may change a mart's definition)."""
    from pipelines.oversight.definition import marts_dir

    folder = directory or marts_dir()
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted([*folder.glob("*.sql"), *folder.glob("*.yaml")])
    }


def read_sources(warehouse: Path) -> list[dict]:
    """governance.mart_sources of `warehouse` (empty when it has none: an older catalog)."""
    from pipelines.warehouse.catalog import connect

    with connect(warehouse) as con:
        views = {
            n
            for (n,) in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE schema_name = 'governance'"
            ).fetchall()
        }
        if "mart_sources" not in views:
            return []
        result = con.execute("SELECT * FROM governance.mart_sources ORDER BY mart, period")
        columns = [d[0] for d in result.description]
        return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def make_manifest(
    sources: list[dict],
    contracts: dict[str, str],
    written_at: datetime,
    as_of: datetime | None = None,
    not_reproduced: list[str] | None = None,
) -> dict:
    """What a pack was computed from: deliveries (by mart), contract versions (name ->
    version), mapping hashes, the datashare version."""
    deliveries: dict[str, dict] = {}
    marts: dict[str, list[str]] = {}
    for s in sources:
        deliveries[s["delivery_id"]] = {
            k: _plain(s[k])
            for k in (
                "contract",
                "period",
                "file_name",
                "sha256",
                "contract_version",
                "received_at",
                "published_at",
                "restated_delivery_id",
                "restated_file_name",
            )
        }
        marts.setdefault(s["mart"], [])
        if s["delivery_id"] not in marts[s["mart"]]:
            marts[s["mart"]].append(s["delivery_id"])
    return {
        "written_at": written_at.isoformat(),
        "as_of": as_of.isoformat() if as_of else None,
        "datashare_version": datashare_version(),
        "contracts": dict(sorted(contracts.items())),
        "mappings": mappings_hashes(),
        "mart_definitions": mart_definition_hashes(),
        "deliveries": deliveries,
        "marts": marts,
        "not_reproduced": not_reproduced or [],
    }


@dataclass(frozen=True)
class KeptPack:
    folder: str  # packs/<stamp>
    manifest: dict

    @property
    def written_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["written_at"])

    def figures(self, lake: Lake, mart: str) -> pa.Table | None:
        key = f"{self.folder}/figures/{mart}.parquet"
        return lake.read_table(key) if lake.exists(key) else None


def kept_packs(lake: Lake) -> list[KeptPack]:
    """The packs kept, oldest first."""
    found = []
    for key in sorted(lake.glob(f"{PACKS}/*/manifest.json")):
        folder = key.rsplit("/", 1)[0]
        found.append(KeptPack(folder, json.loads(lake.read_text(key))))
    return found


def keep_pack(
    lake: Lake, page: Path, tables: dict[str, pa.Table | None], manifest: dict
) -> KeptPack:
    """Keep the pack `page` with its figures and manifest; the manifest is written last, so
    a pack without one was never finished (and is not read)."""
    written = datetime.fromisoformat(manifest["written_at"])
    folder = f"{PACKS}/{written:{STAMP}}-{uuid.uuid4().hex[:6]}"
    lake.write_bytes(f"{folder}/{page.name}", page.read_bytes())
    for name, table in tables.items():
        if table is not None:
            lake.write_table(f"{folder}/figures/{name}.parquet", table)
    lake.write_bytes(f"{folder}/manifest.json", json.dumps(manifest, indent=1).encode())
    return KeptPack(folder, manifest)


# --- revisions ---------------------------------------------------------------------------


@dataclass
class Revision:
    mart: str
    where: dict  # the figure's other columns (its month, group, ...)
    column: str
    old: object
    new: object
    deliveries: list[dict] = field(default_factory=list)  # restatements that changed it


def _numeric(type_name: str) -> bool:
    return type_name.split("(")[0].upper() in NUMERIC


def _differ(old: object, new: object) -> bool:
    if old is None or new is None:
        return (old is None) != (new is None)
    if isinstance(old, float) or isinstance(new, float):
        if math.isnan(float(old)) or math.isnan(float(new)):  # a share of nothing, both times
            return math.isnan(float(old)) != math.isnan(float(new))
        return not math.isclose(float(old), float(new), rel_tol=1e-9, abs_tol=1e-12)
    return old != new


def _month_of(where: dict) -> str | None:
    for column in ("month", "period", "date"):
        value = where.get(column)
        if value is not None:
            return str(value)[:7]
    return None


def figure_revisions(
    previous: KeptPack,
    lake: Lake,
    tables: dict[str, pa.Table | None],
    sources: list[dict],
) -> dict[str, list[Revision]]:
    """Each mart's figures that differ from the previous pack's, with the restatements new
    since it that changed them (the mart's deliveries not in the previous manifest that
    replaced an earlier delivery, of the figure's month when it has one). A row of either
    pack that the other lacks (a new month) is not a revision."""
    from pipelines.oversight.mart_runner import MARTS

    before = set(previous.manifest.get("deliveries", {}))
    found: dict[str, list[Revision]] = {}
    for name, table in tables.items():
        old = previous.figures(lake, name)
        if table is None or old is None or name not in MARTS:
            continue
        mart = MARTS[name]
        both = set(old.schema.names) & set(table.schema.names)
        present = [c for c in mart.output_columns if c.name in both]
        # A figure is found by the mart's grain (the columns it is ordered by); its figures
        # are the numbers and yes/no answers beside them.
        keys = [k for k in mart.order_by if k in {c.name for c in present}]
        if not keys:
            keys = [c.name for c in present if not _numeric(c.type) and c.type != "BOOLEAN"]
        values = [
            c.name
            for c in present
            if c.name not in keys
            and (_numeric(c.type) or c.type == "BOOLEAN")
            and not c.name.endswith("_suppressed")
        ]
        restating = [
            s
            for s in sources
            if s["mart"] == name and s["delivery_id"] not in before and s["restated_delivery_id"]
        ]
        con = duckdb.connect()
        try:
            con.register("new_rows", table)
            con.register("old_rows", old)
            on = " AND ".join(f'n."{k}" IS NOT DISTINCT FROM o."{k}"' for k in keys) or "true"
            select = ", ".join(
                [f'n."{k}" AS "{k}"' for k in keys]
                + [f'o."{v}" AS "old:{v}", n."{v}" AS "new:{v}"' for v in values]
            )
            # A figure is found by its other columns only where they name one row in each.
            by = ", ".join(f'"{k}"' for k in keys)
            once = f"QUALIFY count(*) OVER (PARTITION BY {by}) = 1" if keys else ""
            result = con.execute(
                f"SELECT {select} FROM (SELECT * FROM new_rows {once}) n "
                f"JOIN (SELECT * FROM old_rows {once}) o ON {on}"
            )
            names = [d[0] for d in result.description]
            rows = [dict(zip(names, r, strict=True)) for r in result.fetchall()]
        finally:
            con.close()
        for row in rows:
            where = {k: row[k] for k in keys}
            for v in values:
                if _differ(row[f"old:{v}"], row[f"new:{v}"]):
                    month = _month_of(where)
                    by_month = [s for s in restating if month and s["period"] == month]
                    found.setdefault(name, []).append(
                        Revision(
                            name, where, v, row[f"old:{v}"], row[f"new:{v}"], by_month or restating
                        )
                    )
    return found


def now() -> datetime:
    return datetime.now(UTC)
