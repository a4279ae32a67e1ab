"""The drop zone: where the force puts deliveries, laid out `<contract>/<YYYY-MM>/<file>`.

Two kinds, one interface: a local folder (the default) and an S3 bucket and prefix
(`s3://bucket/prefix`). Both list the same `DropFile` records and copy a file's bytes
to a local file with their SHA-256 (S3's streamed and hashed as they go; a folder's copied
by the kernel and hashed where the copy lies), so memory stays flat at any file size.

A file's `version` changes whenever its bytes may have: in a folder it is the size and the
modification time in nanoseconds; in S3 it is the size and the ETag (a digest of the
content), so a file re-sent under the same name with new bytes is a new version even
within the same second, and one that arrives with an older modification time is still new.

A `<file>.manifest.json` beside a delivery is not a delivery: it is attached to its file.
Names starting with a dot are partial uploads or editor files, and are never listed.

A folder drop zone is written by other people's systems, so the pipeline reads only
regular files inside it:
- a symbolic link (to a file or a folder), a hard-linked file, a pipe, socket or device is
  listed with a `refusal` and never opened: intake records it as rejected, reading
  nothing through it; files are opened component by component with `O_NOFOLLOW`, so a
  file swapped for a link after it was listed is refused too;
- a file is taken only once it has been unchanged for a settle time (its inode change
  time, which no writer can set back): a copy still in progress `waits`. S3 needs none,
  since an object appears whole when its upload completes.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import re
import stat
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from pipelines.home.settings import DEFAULT_SETTLE_SECONDS
from pipelines.lake.object_store import InS3

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
MANIFEST_SUFFIX = ".manifest.json"
CHUNK = 1 << 20
HASH_WINDOW = 32 << 20  # bytes of the landing copy mapped at once to hash it
MANIFEST_LIMIT = 1 << 20  # a manifest is a few dozen bytes; anything past 1 MB is not one

LAYOUT = "<contract>/<YYYY-MM>/<file>"

LINK_RULE, NOT_REGULAR_RULE, HARD_LINK_RULE = "file.link", "file.not_regular", "file.hard_link"
NOT_FOLLOWED = (
    "Links are never followed, so nothing was read through it; put the file itself in the "
    "drop zone."
)


class RefusedFile(Exception):
    """A drop-zone entry the pipeline must not read (a link, a pipe, a hard link)."""

    def __init__(self, reason: str, rule: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


class ChangedWhileReading(Exception):
    """The file changed while it was being read: a copy is still in progress."""


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
    refusal: RefusedFile | None = None  # why it must not be read at all (a link, a pipe)
    waiting: str | None = None  # why it is not to be taken yet (still being written)

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
    by_path = {f.relative: f for f in files if not f.refusal}
    out = []
    for f in files:
        if f.relative.endswith(MANIFEST_SUFFIX) and not f.refusal:
            continue  # attached to its delivery below, or waiting for it to arrive
        manifest = by_path.get(f.relative + MANIFEST_SUFFIX)
        contract, period, problem = place(f.relative, known_contracts)
        waiting = f.waiting
        if manifest is not None and manifest.waiting and not waiting:
            waiting = "has a manifest that is still being written; " + manifest.waiting
        out.append(
            DropFile(
                f.relative, contract, period, f.size, f.mtime_ns, problem, f.etag, manifest,
                f.refusal, waiting,
            )
        )  # fmt: skip
    return sorted(out, key=lambda f: f.relative)


def copy_stamp(info: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes whenever a local file's bytes may have: (device, inode, size,
    modification and inode change times in nanoseconds). The inode change time moves on
    every write and no writer can set it back; but it moves by the kernel's clock tick, so
    a rewrite of the same size within one tick of the last write (a few milliseconds, on
    kernels before Linux 6.13, which stamp times coarsely) would not show. The copy is this
    process's own private temporary file: only a process of the same user could write it,
    and the re-hash this replaced only ever read the same cached pages again."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class Fetched(NamedTuple):
    """A drop-zone file streamed to a local copy: the SHA-256 of the bytes written, the
    version read, and the copy's `copy_stamp` as it stood once its last byte was written
    and hashed (so that the copy can be shown unchanged since without reading it again)."""

    sha256: str
    version: str
    copy: tuple[int, int, int, int, int]
    # Whether every byte hashed was ASCII, when the fetch looked (a folder drop zone's copy,
    # hashed where it lies): `pipelines.intake.delivery_formats.landed_as_ascii`.
    ascii: bool | None = None

    def copy_unchanged(self, path: Path) -> bool:
        """Whether the copy at `path` is still the file, and the bytes, that were hashed."""
        try:
            return copy_stamp(os.stat(path)) == self.copy
        except FileNotFoundError:
            return False


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
        """The files delivered for one contract and period, oldest first (including ones
        refused or still being written: the caller decides what to do with those)."""
        found = _attach_manifests(self._list(f"{contract}/{period}/"), {contract})
        placed = [
            f for f in found if f.contract == contract and f.period == period and not f.problem
        ]
        return sorted(placed, key=lambda f: (f.mtime_ns, f.relative))

    def fetch(self, drop: DropFile, dest: Path) -> Fetched:
        """Stream `drop`'s bytes into `dest`; the SHA-256 of what was written, its version,
        and the copy's stamp once written (see `Fetched`).

        Raises `RefusedFile` for what must not be read, `ChangedWhileReading` for a file
        still being written and `FileNotFoundError` for one removed since it was listed.
        """
        if drop.refusal:
            raise drop.refusal
        digest = hashlib.sha256()
        chunks, version = self._chunks(drop.relative)
        # Hashing and writing both release the GIL on a large chunk: each chunk is hashed in
        # a second thread while it is written and the next one read, in order (one at a time).
        with open(dest, "wb") as out, ThreadPoolExecutor(1, "sha256") as hasher:
            hashing = None
            for chunk in chunks:
                if hashing is not None:
                    hashing.result()
                hashing = hasher.submit(digest.update, chunk)
                out.write(chunk)
            if hashing is not None:
                hashing.result()
            out.flush()
            copy = copy_stamp(os.fstat(out.fileno()))
        return Fetched(digest.hexdigest(), version or drop.version, copy)

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

    def upload_missing(self, folder: Path) -> list[str]:
        """Put every file of a local folder that the drop zone lacks; the paths put."""
        there = {f.relative for f in self._list()}
        new = []
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            relative = path.relative_to(folder).as_posix()
            if relative not in there:
                self.put(relative, path)
                new.append(relative)
        return new

    def __str__(self) -> str:
        return self.url


class FolderDropZone(DropZone):
    """A drop zone in a local folder; files are taken once unchanged for `settle_seconds`."""

    def __init__(self, root: Path, settle_seconds: float = DEFAULT_SETTLE_SECONDS) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.settle_seconds = settle_seconds

    def _list(self, prefix: str = "") -> list[DropFile]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir() or self._crosses_a_link(prefix):
            return []  # a linked contract or period folder is reported by the full listing
        found = []
        now = time.time_ns()
        # os.walk does not descend into linked folders; they are listed as refused.
        for dirpath, dirnames, filenames in os.walk(base):
            for name in [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                dirnames.remove(name)
                filenames.append(name)
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue  # partial uploads and editor files; the force's never start so
                path = Path(dirpath) / name
                try:
                    info = path.lstat()
                except FileNotFoundError:
                    continue  # removed while we looked
                rel = path.relative_to(self.root).as_posix()
                found.append(
                    DropFile(
                        rel, None, None, info.st_size, info.st_mtime_ns,
                        refusal=_refusal(path, info), waiting=self._waiting(info, now),
                    )
                )  # fmt: skip
        return found

    def _crosses_a_link(self, prefix: str) -> bool:
        path = self.root
        for part in PurePosixPath(prefix).parts:
            path = path / part
            if path.is_symlink():
                return True
        return False

    def _waiting(self, info: os.stat_result, now_ns: int) -> str | None:
        # The inode change time moves on every write and cannot be set back by a writer
        # (unlike the modification time, which `cp -p` or `touch -d` set to anything).
        age = (now_ns - info.st_ctime_ns) / 1e9
        if age >= self.settle_seconds:
            return None
        return (
            f"was still changing {max(age, 0):.0f} s ago; it will be taken once it has been "
            f"unchanged for {self.settle_seconds:g} s (a copy may still be in progress)"
        )

    def _open_inside(self, relative: str) -> int:
        """A descriptor of the regular file `relative`, opened without following any link
        on the way (each folder and the file itself with O_NOFOLLOW)."""
        parts = PurePosixPath(relative).parts
        folder = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts[:-1]:
                try:
                    inner = os.open(
                        part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder
                    )
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise RefusedFile(
                            f"is inside a linked folder ({part}). {NOT_FOLLOWED}", LINK_RULE
                        ) from exc
                    raise
                os.close(folder)
                folder = inner
            try:
                # O_NONBLOCK: opening a pipe must not wait for a writer.
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise RefusedFile(f"is a symbolic link. {NOT_FOLLOWED}", LINK_RULE) from exc
                raise
        finally:
            os.close(folder)
        refusal = _refusal(Path(relative), os.fstat(fd))
        if refusal:
            os.close(fd)
            raise refusal
        return fd

    def _chunks(self, relative: str) -> tuple[Any, str | None]:
        fd = self._open_inside(relative)
        fh = os.fdopen(fd, "rb")
        before = os.fstat(fd)

        def read():
            with fh:
                while chunk := fh.read(CHUNK):
                    yield chunk
                _check_settled(relative, before, os.fstat(fh.fileno()))

        return read(), f"{before.st_size}:{before.st_mtime_ns}"

    def fetch(self, drop: DropFile, dest: Path) -> Fetched:
        """As `DropZone.fetch`, with the bytes copied by the kernel (`copy_file_range`) and
        the copy hashed where it lies: no pass of the file through this process's buffers
        to write it. A 2M-row month (436 MB): 0.55-0.58 s of CPU to fetch, now 0.37-0.38."""
        if drop.refusal:
            raise drop.refusal
        fd = self._open_inside(drop.relative)
        with os.fdopen(fd, "rb") as src, open(dest, "w+b") as out:
            before = os.fstat(fd)
            # A kernel copy that stops short (a 0 from `copy_file_range` before the end, as
            # some file systems give) is made again through reads: a landed prefix would
            # be a delivery with rows missing and the hash of the prefix.
            copied = _kernel_copy(fd, out.fileno())
            if not copied or os.fstat(out.fileno()).st_size != before.st_size:
                os.lseek(fd, 0, os.SEEK_SET)
                out.seek(0)
                out.truncate()
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                out.flush()
            _check_settled(drop.relative, before, os.fstat(fd))
            # The hash is of the copy's own bytes, read back from the page cache.
            digest, ascii = _sha256_of(out.fileno())
            copy = copy_stamp(os.fstat(out.fileno()))
        return Fetched(digest, f"{before.st_size}:{before.st_mtime_ns}", copy, ascii)

    def put(self, relative: str, source: Path) -> None:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(Path(source).read_bytes())
        os.replace(tmp, target)


def _check_settled(relative: str, before: os.stat_result, after: os.stat_result) -> None:
    """ChangedWhileReading if the file's size or times moved while it was read."""
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
        before.st_size,
        before.st_mtime_ns,
        before.st_ctime_ns,
    ):
        raise ChangedWhileReading(
            f"{relative} changed while it was being read; it will be taken once it has settled"
        )


def _kernel_copy(source: int, dest: int) -> bool:
    """Copy the rest of `source` to `dest` in the kernel; False where the system cannot (no
    `copy_file_range`, or a file system without it), leaving the caller to copy instead."""
    copy = getattr(os, "copy_file_range", None)  # Linux only
    if copy is None:
        return False
    try:
        while copy(source, dest, 1 << 30):
            pass
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        return False
    return True


def _sha256_of(fd: int) -> tuple[str, bool]:
    """The SHA-256 of a file, mapped a window at a time (resident memory stays flat), or
    read a chunk at a time where the file system refuses to map it (some FUSE mounts); and
    whether every byte is ASCII, looked at in the same pass (a window already mapped and
    in memory: 0.015-0.02 s of CPU for 436 MB, where validation's own look at the file for
    its encoding reads it all again, 0.05 s)."""
    import numpy as np  # (imported by then by what validates: not for an idle run)

    digest = hashlib.sha256()
    ascii = True
    size = os.fstat(fd).st_size
    try:
        for offset in range(0, size, HASH_WINDOW):
            length = min(HASH_WINDOW, size - offset)
            flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0)
            with mmap.mmap(fd, length, flags=flags, prot=mmap.PROT_READ, offset=offset) as window:
                digest.update(window)
                ascii = ascii and _all_ascii(np.frombuffer(window, np.uint8))
    except OSError:
        digest, ascii = hashlib.sha256(), True
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
            ascii = ascii and chunk.isascii()
    return digest.hexdigest(), ascii


def _all_ascii(octets: Any) -> bool:
    """Whether every byte of a NumPy view is below 128 (the view is let go on return, so
    that its window can be unmapped)."""
    return not octets.size or int(octets.max()) < 128


def _refusal(path: Path, info: os.stat_result) -> RefusedFile | None:
    """Why an entry (by its `lstat`, or `fstat` once opened) must not be read, if it must not."""
    if stat.S_ISLNK(info.st_mode):
        what = "a folder" if path.is_dir() else "a file"
        return RefusedFile(
            f"is a symbolic link (to {what}, possibly outside the drop zone). {NOT_FOLLOWED}",
            LINK_RULE,
        )
    if not stat.S_ISREG(info.st_mode):
        return RefusedFile(
            "is not a regular file (a pipe, socket or device); nothing was read from it. "
            "Put the file itself in the drop zone.",
            NOT_REGULAR_RULE,
        )
    if info.st_nlink > 1:
        return RefusedFile(
            f"is a hard link shared with {info.st_nlink - 1} other name(s), which may be "
            "outside the drop zone; nothing was read from it. Copy the file in instead of "
            "linking it.",
            HARD_LINK_RULE,
        )
    return None


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


def open_dropzone(location: str | Path, settle_seconds: float = DEFAULT_SETTLE_SECONDS) -> DropZone:
    """The drop zone at `location`: an `s3://bucket/prefix` URL or a local folder (whose
    files are taken once unchanged for `settle_seconds`)."""
    if isinstance(location, str) and location.startswith("s3://"):
        return S3DropZone(location)
    return FolderDropZone(Path(location), settle_seconds)
