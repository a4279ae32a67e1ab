"""The lake: the source of truth, laid out as files that are written aside and renamed in.

Layout under the lake root:
    landing/contract=<c>/period=<p>/<sha256><suffix>     immutable copy of each delivery
    landing/contract=<c>/period=<p>/<sha256>.manifest.json  the force's manifest, if sent
    landing/unfiled/<sha256><suffix>                     a file outside the agreed layout
    quarantine/contract=<c>/period=<p>/<sha256>.parquet  failing rows with their reasons
    quarantine_masked/contract=<c>/period=<p>/<sha256>.parquet  the same, classified fields withheld
    staging/contract=<c>/period=<p>/<sha256>.parquet     passing rows awaiting publication
    curated/contract=<c>/period=<p>/data.parquet         the published month
    governance/deliveries/contract=<c>/<time>-<sha>-<event>.parquet  delivery events
    governance/breaches/contract=<c>/period=<p>/<sha256>.parquet     breaches per delivery

Nothing is edited in place: a reader sees the old file or the new one, never half of one.
Landing and quarantine hold data in the clear, so they are readable by the owner only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

PRIVATE_AREAS = ("landing", "quarantine", "staging")


class Lake:
    """A lake rooted in a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _area(self, area: str, contract: str, period: str | None = None) -> Path:
        path = self.root / area / f"contract={contract}"
        if period is not None:
            path = path / f"period={period}"
        return path

    def landing_path(self, contract: str, period: str, delivery_id: str, suffix: str) -> Path:
        return self._area("landing", contract, period) / f"{delivery_id}{suffix}"

    def manifest_path(self, contract: str, period: str, delivery_id: str) -> Path:
        return self._area("landing", contract, period) / f"{delivery_id}.manifest.json"

    def unfiled_path(self, delivery_id: str, suffix: str) -> Path:
        """Where the bytes of a file outside the agreed layout are kept."""
        return self.root / "landing" / "unfiled" / f"{delivery_id}{suffix}"

    def quarantine_path(self, contract: str, period: str, delivery_id: str) -> Path:
        return self._area("quarantine", contract, period) / f"{delivery_id}.parquet"

    def masked_quarantine_path(self, contract: str, period: str, delivery_id: str) -> Path:
        """The analysts' copy of a quarantine file, with classified fields withheld."""
        return self._area("quarantine_masked", contract, period) / f"{delivery_id}.parquet"

    def staging_path(self, contract: str, period: str, delivery_id: str) -> Path:
        return self._area("staging", contract, period) / f"{delivery_id}.parquet"

    def curated_path(self, contract: str, period: str) -> Path:
        return self._area("curated", contract, period) / "data.parquet"

    def breaches_path(self, contract: str, period: str, delivery_id: str) -> Path:
        return self._area("governance/breaches", contract, period) / f"{delivery_id}.parquet"

    def delivery_events_dir(self, contract: str) -> Path:
        return self._area("governance/deliveries", contract)

    def glob(self, pattern: str) -> list[Path]:
        return sorted(self.root.glob(pattern))

    def read_all(self, files: list[Path], schema: pa.Schema) -> pa.Table:
        """Many small record files as one table (one dataset scan, not a read per file)."""
        if not files:
            return schema.empty_table()
        return ds.dataset([str(f) for f in files], schema=schema, format="parquet").to_table()

    def _prepare(self, path: Path) -> None:
        private = path.relative_to(self.root).parts[0] in PRIVATE_AREAS
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o755)
        if private:
            # mkdir's mode does not apply to folders that already existed with looser modes.
            for folder in [path.parent, *path.parent.parents]:
                if folder == self.root or self.root not in folder.parents:
                    break
                os.chmod(folder, 0o700)

    @contextmanager
    def writing(self, path: Path) -> Iterator[Path]:
        """Yield a temporary path beside `path`; rename it into place if the block succeeds."""
        self._prepare(path)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            yield tmp
            if path.relative_to(self.root).parts[0] in PRIVATE_AREAS:
                os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def write_table(self, path: Path, table: pa.Table) -> None:
        with self.writing(path) as tmp:
            pq.write_table(table, tmp, compression="zstd")

    def copy_in(self, source: Path, path: Path) -> None:
        with self.writing(path) as tmp:
            shutil.copyfile(source, tmp)

    @contextmanager
    def incoming(self) -> Iterator[Path]:
        """A private temporary file in the landing area, removed unless moved in.

        Copies left by a run that was killed mid-copy are swept once a day old.
        """
        tmp = self.root / "landing" / ".incoming" / f"{uuid.uuid4().hex}.tmp"
        self._prepare(tmp)
        for stale in tmp.parent.glob("*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - stale.stat().st_mtime > 86_400:
                    stale.unlink()
        try:
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def move_in(self, tmp: Path, path: Path, read_only: bool = False) -> None:
        """Rename a finished temporary file into place, atomically (same file system)."""
        self._prepare(path)
        if read_only:
            os.chmod(tmp, 0o400)
        elif path.relative_to(self.root).parts[0] in PRIVATE_AREAS:
            os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def write_table_once(self, path: Path, table: pa.Table) -> bool:
        """Write `path` only if nothing is there yet, atomically; False if it already was.

        The file is written aside and hard-linked into place: the link fails if another
        writer got there first, so of two racing writers exactly one wins.
        """
        self._prepare(path)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
