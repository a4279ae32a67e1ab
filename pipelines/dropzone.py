"""The drop zone: where the force puts deliveries, laid out `<contract>/<YYYY-MM>/<file>`.

Two kinds, one interface: a local folder (the default) and an S3 bucket and prefix
(`s3://bucket/prefix`). Both list the same `DropFile` records and stream a file's bytes
to a local file, hashing as they go, so memory stays flat at any file size.

A file's `version` changes whenever its bytes may have: in a folder it is the size and the
modification time in nanoseconds; in S3 it is the size and the ETag (a digest of the
content), so a file re-sent under the same name with new bytes is a new version even
within the same second, and one that arrives with an older modification time is still new.

A `<file>.manifest.json` beside a delivery is not a delivery: it is attached to its file.
Names starting with a dot are partial uploads or editor files, and are never listed.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipelines.object_store import InS3

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
MANIFEST_SUFFIX = ".manifest.json"
CHUNK = 1 << 20
MANIFEST_LIMIT = 1 << 20  # a manifest is a few dozen bytes; anything past 1 MB is not one

LAYOUT = "<contract>/<YYYY-MM>/<file>"


@dataclass(frozen=True)
class DropFile:
    """A file found in the drop zone; `problem` says why it is outside the agreed layout."""

    relative: str  # '/'-separated path inside the drop zone
    contract: str | None
    period: str | None
    size: int
    mtime_ns: int
    problem: str | None = None
    etag: str | None = None  # S3 only
    manifest: DropFile | None = None  # the `<name>.manifest.json` beside it, if any

    @property
    def name(self) -> str:
        return PurePosixPath(self.relative).name

    @property
    def version(self) -> str:
        """Changes whenever the bytes may have changed (see the module docstring)."""
        if self.etag is not None:
            return f"{self.size}:{self.etag}"
        return f"{self.size}:{self.mtime_ns}"

    @property
    def identity(self) -> str:
        """Path and version: what the sensor's cursor and run keys are made of."""
        return f"{self.relative}@{self.version}"


def place(relative: str, known_contracts: set[str]) -> tuple[str | None, str | None, str | None]:
    """(contract, period, problem) for a path in the drop zone."""
    parts = PurePosixPath(relative).parts
    contract = parts[0] if len(parts) >= 2 and parts[0] in known_contracts else None
    if len(parts) != 3:
        return contract, None, f"is not in the agreed layout {LAYOUT}"
    if parts[0] not in known_contracts:
        return None, None, f"names no agreed contract ({parts[0]!r})"
    if not PERIOD.match(parts[1]):
        return contract, None, f"has a period folder {parts[1]!r} that is not YYYY-MM"
    return parts[0], parts[1], None


def _attach_manifests(files: list[DropFile], known_contracts: set[str]) -> list[DropFile]:
    """Deliveries with their manifests attached, sorted by path; orphan manifests dropped."""
    by_path = {f.relative: f for f in files}
    out = []
    for f in files:
        if f.relative.endswith(MANIFEST_SUFFIX) and f.relative[: -len(MANIFEST_SUFFIX)] in by_path:
            continue
        if f.relative.endswith(MANIFEST_SUFFIX):
            continue  # a manifest whose delivery has not arrived (yet): nothing to take
        manifest = by_path.get(f.relative + MANIFEST_SUFFIX)
        contract, period, problem = place(f.relative, known_contracts)
        out.append(
            DropFile(f.relative, contract, period, f.size, f.mtime_ns, problem, f.etag, manifest)
        )
    return sorted(out, key=lambda f: f.relative)


class DropZone(ABC):
    """Where deliveries arrive. Subclasses list objects and stream their bytes."""

    url: str

    @abstractmethod
    def _list(self, prefix: str = "") -> list[DropFile]:
        """Every visible file under `prefix` (relative, '/'-separated), unplaced."""

    @abstractmethod
    def _chunks(self, relative: str) -> tuple[Any, str | None]:
        """(an iterator of byte chunks, the version actually being read or None)."""

    @abstractmethod
    def put(self, relative: str, source: Path) -> None:
        """Upload a local file (demos and tests; the force uses its own tools)."""

    def files(self, known_contracts: set[str]) -> list[DropFile]:
        """Every file in the drop zone, each placed in the layout or told why not."""
        return _attach_manifests(self._list(), known_contracts)

    def deliveries(self, contract: str, period: str) -> list[DropFile]:
        """The files delivered for one contract and period, oldest first."""
        found = _attach_manifests(self._list(f"{contract}/{period}/"), {contract})
        placed = [f for f in found if f.contract == contract and f.period == period]
        return sorted(placed, key=lambda f: (f.mtime_ns, f.relative))

    def fetch(self, drop: DropFile, dest: Path) -> tuple[str, str]:
        """Stream `drop`'s bytes into `dest`; (SHA-256 of what was written, its version)."""
        digest = hashlib.sha256()
        chunks, version = self._chunks(drop.relative)
        with open(dest, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest(), version or drop.version

    def read_small(self, drop: DropFile, limit: int = MANIFEST_LIMIT) -> bytes:
        """The first `limit` bytes of a small file (a manifest)."""
        out = bytearray()
        chunks, _ = self._chunks(drop.relative)
        for chunk in chunks:
            out += chunk
            if len(out) >= limit:
                break
        if hasattr(chunks, "close"):
            chunks.close()
        return bytes(out[:limit])

    def upload_missing(self, folder: Path) -> tuple[int, int]:
        """Put every file of a local folder that the drop zone lacks; (new, already there)."""
        there = {f.relative for f in self._list()}
        new = kept = 0
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            relative = path.relative_to(folder).as_posix()
            if relative in there:
                kept += 1
            else:
                self.put(relative, path)
                new += 1
        return new, kept

    def __str__(self) -> str:
        return self.url


class FolderDropZone(DropZone):
    """A drop zone in a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _list(self, prefix: str = "") -> list[DropFile]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue  # partial uploads and editor files; the force's never start so
                path = Path(dirpath) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # removed while we looked
                rel = path.relative_to(self.root).as_posix()
                found.append(DropFile(rel, None, None, stat.st_size, stat.st_mtime_ns))
        return found

    def _chunks(self, relative: str) -> tuple[Any, str | None]:
        fh = open(self.root / relative, "rb")
        stat = os.fstat(fh.fileno())

        def read():
            with fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        return read(), f"{stat.st_size}:{stat.st_mtime_ns}"

    def put(self, relative: str, source: Path) -> None:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(Path(source).read_bytes())
        os.replace(tmp, target)


class S3DropZone(InS3, DropZone):
    """A drop zone in an S3 bucket, under a prefix: `s3://bucket/prefix`."""

    def __init__(self, url: str, client=None) -> None:
        super().__init__(url, client)
        self.bucket, self.prefix = self.where.bucket, self.where.prefix

    def _list(self, prefix: str = "") -> list[DropFile]:
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                rel = key[len(base) :]
                if not rel or rel.endswith("/"):
                    continue  # folder markers
                if any(part.startswith(".") for part in rel.split("/")):
                    continue
                mtime_ns = int(obj["LastModified"].timestamp()) * 1_000_000_000
                etag = obj.get("ETag", "").strip('"')
                found.append(DropFile(rel, None, None, obj["Size"], mtime_ns, etag=etag))
        return found

    def _chunks(self, relative: str) -> tuple[Any, str | None]:
        response = self.client.get_object(Bucket=self.bucket, Key=self._key(relative))
        etag = response.get("ETag", "").strip('"')
        body = response["Body"]

        def read():
            try:
                yield from body.iter_chunks(CHUNK)
            finally:
                body.close()

        return read(), f"{response['ContentLength']}:{etag}"

    def put(self, relative: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self._key(relative))


def open_dropzone(location: str | Path) -> DropZone:
    """The drop zone at `location`: an `s3://bucket/prefix` URL or a local folder."""
    if isinstance(location, str) and location.startswith("s3://"):
        return S3DropZone(location)
    return FolderDropZone(Path(location))
