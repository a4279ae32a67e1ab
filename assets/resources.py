"""Dagster resources: the drop zone, the lake and the warehouse, configured from settings."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dagster as dg

from pipelines.home.settings import DEFAULT_SETTLE_SECONDS
from pipelines.intake.dropzone import DropZone, open_dropzone
from pipelines.intake.pseudonymise import load_key
from pipelines.lake.leases import month_lease
from pipelines.lake.register import Register
from pipelines.lake.store import Lake, open_lake
from pipelines.warehouse.catalog import build_warehouse, catalog_shows, show_marts
from schemas.contract import Contract


class DropZoneResource(dg.ConfigurableResource):
    """Where the force drops deliveries: `<contract>/<YYYY-MM>/<file>`, in a folder or in
    an S3 bucket (`s3://bucket/prefix`)."""

    root: str
    settle_seconds: float = DEFAULT_SETTLE_SECONDS

    def zone(self) -> DropZone:
        return open_dropzone(self.root, self.settle_seconds)


class LakeResource(dg.ConfigurableResource):
    """The lake: landing copies, quarantine, curated partitions, governance records."""

    root: str

    def lake(self) -> Lake:
        return open_lake(self.root)

    def register(self) -> Register:
        return Register(self.lake())

    def month_lease(
        self, contract: str, period: str | None, run_id: str
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the contract-month's lease while a step works on it (see `leases`)."""
        return month_lease(self.lake(), contract, period, f"Dagster run {run_id}")


class WarehouseResource(dg.ConfigurableResource):
    """`warehouse.duckdb`, the analysts' catalog over the lake."""

    path: str

    def rebuild(self, lake: Lake, contracts: dict[str, Contract]) -> Path:
        return build_warehouse(lake, contracts, Path(self.path))

    def show_marts(self, lake: Lake, contracts: dict[str, Contract]) -> Path:
        """Make the catalog show the marts just computed: what a rebuild makes, by a copy
        with its oversight views made again when only they can differ (see `show_marts`)."""
        return show_marts(lake, contracts, Path(self.path))

    def show(self, lake: Lake, contracts: dict[str, Contract], contract: Contract) -> bool:
        """Make the catalog show what the lake holds for `contract`, rebuilding it only when
        its views cannot already (see `catalog_shows`). True if it was rebuilt."""
        if catalog_shows(Path(self.path), lake, contract):
            return False
        build_warehouse(lake, contracts, Path(self.path))
        return True


class PseudonymKeyResource(dg.ConfigurableResource):
    """The pseudonymisation key: `DATASHARE_PSEUDONYM_KEY`, else `<home>/pseudonym.key`."""

    home: str

    def key(self) -> bytes:
        return load_key(Path(self.home))
