"""Where everything lives, from the environment.

`DATASHARE_HOME` (default `.datashare/` in the current folder) holds the drop zone, the
lake, the warehouse and Dagster's own home, so one variable moves a whole installation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    dropzone: Path
    lake: Path
    warehouse: Path
    dagster_home: Path

    def ensure_folders(self) -> None:
        for folder in (self.home, self.dropzone, self.lake, self.dagster_home):
            folder.mkdir(parents=True, exist_ok=True)
        config = self.dagster_home / "dagster.yaml"
        if not config.exists():
            # Dagster's default SQLite storage under this home; no telemetry (no internet).
            config.write_text("telemetry:\n  enabled: false\n")


def load_settings(home: str | Path | None = None) -> Settings:
    """Settings for a home folder (default: `DATASHARE_HOME`, else `./.datashare`)."""
    base = Path(home or os.environ.get("DATASHARE_HOME") or ".datashare").resolve()
    return Settings(
        home=base,
        dropzone=Path(os.environ.get("DATASHARE_DROP_ZONE") or base / "dropzone").resolve(),
        lake=Path(os.environ.get("DATASHARE_LAKE") or base / "lake").resolve(),
        warehouse=base / "warehouse.duckdb",
        dagster_home=base / "dagster",
    )
