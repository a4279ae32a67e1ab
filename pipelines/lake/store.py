"""The lake: the source of truth, in a folder (the default) or in S3 (`s3://bucket/prefix`).

Layout under the lake root (every path below is a '/'-separated key relative to it):
    landing/contract=<c>/period=<p>/<sha256><suffix>     immutable copy of each delivery
    landing/contract=<c>/period=<p>/<sha256>.manifest.json  the force's manifest, if sent
    landing/unfiled/<sha256><suffix>                     a file outside the agreed layout
    quarantine/contract=<c>/period=<p>/<sha256>.parquet  failing rows with their reasons
    quarantine_masked/contract=<c>/period=<p>/<sha256>.parquet  the same, classified fields withheld
    staging/contract=<c>/period=<p>/<sha256>.parquet     passing rows awaiting publication
    curated/contract=<c>/period=<p>/data.parquet         the published month
    oversight/<mart>/data.parquet                        an oversight mart (a folder each, so
                                                         Trino and Athena can declare it)
    docs/contract=<c>/period=<p>/<sha256>/               Data Docs of each delivery
    governance/...                                       delivery events, breaches, erasures

Nothing is edited in place: a reader sees the old file or the new one, never half of one.
In a folder a file is written under a temporary name and renamed in; in S3 an object
appears whole when its upload completes, so it is written locally and then uploaded.

Landing, quarantine and staging hold data in the clear. In a folder they are readable by
the owner only (file modes); in S3 they are separate prefixes, for the bucket policy to
keep to the pipeline's role (see the README).

The code above this module sees one interface (`Lake`) and never knows which kind it has.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import functools
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.lake.object_store import InS3, arrow_s3, let_duckdb_read_s3

PRIVATE_AREAS = ("landing", "quarantine", "staging")
READ_THREADS = 8  # files `read_all` reads at once
SMALL_OBJECT = 8 << 20  # below this an object is uploaded in one request
GLOB_CHARS = set("*?[")


class Lake(ABC):
    """Where the pipeline keeps everything, addressed by keys such as `curated/...`."""

    url: str  # what people (and DuckDB) call the root: a folder or `s3://bucket/prefix`
    filesystem: pafs.FileSystem  # pyarrow's view of it, for reading datasets
    base: str  # the root as a path inside `filesystem`

    # -- layout --------------------------------------------------------------------------

    @staticmethod
    def _area(area: str, contract: str, period: str | None = None) -> str:
        key = f"{area}/contract={contract}"
        return f"{key}/period={period}" if period is not None else key

    def landing_path(self, contract: str, period: str, delivery_id: str, suffix: str) -> str:
        return f"{self._area('landing', contract, period)}/{delivery_id}{suffix}"

    def manifest_path(self, contract: str, period: str, delivery_id: str) -> str:
        return f"{self._area('landing', contract, period)}/{delivery_id}.manifest.json"

    def unfiled_path(self, delivery_id: str, suffix: str) -> str:
        """Where the bytes of a file outside the agreed layout are kept."""
        return f"landing/unfiled/{delivery_id}{suffix}"

    def quarantine_path(self, contract: str, period: str, delivery_id: str) -> str:
        return f"{self._area('quarantine', contract, period)}/{delivery_id}.parquet"

    def masked_quarantine_path(self, contract: str, period: str, delivery_id: str) -> str:
        """The analysts' copy of a quarantine file, with classified fields withheld."""
        return f"{self._area('quarantine_masked', contract, period)}/{delivery_id}.parquet"

    def staging_path(self, contract: str, period: str, delivery_id: str) -> str:
        return f"{self._area('staging', contract, period)}/{delivery_id}.parquet"

    def curated_path(self, contract: str, period: str) -> str:
        return f"{self._area('curated', contract, period)}/data.parquet"

    def breaches_path(self, contract: str, period: str, delivery_id: str) -> str:
        return f"{self._area('governance/breaches', contract, period)}/{delivery_id}.parquet"

    def delivery_events_dir(self, contract: str) -> str:
        return self._area("governance/deliveries", contract)

    def docs_dir(self, contract: str, period: str, delivery_id: str) -> str:
        return f"{self._area('docs', contract, period)}/{delivery_id}"

    @staticmethod
    def is_private(key: str) -> bool:
        return key.split("/", 1)[0] in PRIVATE_AREAS

    # -- reading (the same for every kind of lake) ----------------------------------------

    def __str__(self) -> str:
        return self.url

    def location(self, key: str) -> str:
        """`key` as a path inside `self.filesystem`."""
        return f"{self.base}/{key}"

    def url_of(self, key: str) -> str:
        """`key` (or a glob pattern) as DuckDB and people name it."""
        return f"{self.url}/{key}"

    @abstractmethod
    def uri(self, key: str) -> str:
        """A link to `key`: `file://...` or `s3://...`."""

    def exists(self, key: str) -> bool:
        return self.filesystem.get_file_info(self.location(key)).type == pafs.FileType.File

    def size(self, key: str) -> int:
        return self.filesystem.get_file_info(self.location(key)).size

    def open(self, key: str) -> pa.NativeFile:
        """A seekable binary reader of `key`."""
        return self.filesystem.open_input_file(self.location(key))

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def parquet_file(self, key: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.location(key), filesystem=self.filesystem)

    def read_table(self, key: str, columns: list[str] | None = None) -> pa.Table:
        # Through `ParquetFile`, not `pq.read_table`: that builds a `pyarrow.dataset`, whose
        # import loads pandas (half a second of every command, an idle run's included).
        with _missing_is_not_found():
            return self.parquet_file(key).read(columns=columns)

    def read_all(self, keys: list[str], schema: pa.Schema) -> pa.Table:
        """Many small record files as one table, each file's columns as `schema` has them
        (a column a file lacks, written before it existed, is empty there).

        File by file and concatenated, not one `pyarrow.dataset` scan: the same table, but
        the dataset module imports pandas, which no command otherwise needs. Several files
        are read side by side, as the scan read them (pyarrow lets go of the GIL while it
        reads): on S3 each is a request or two."""
        if not keys:  # (`schema.empty_table()` would import pandas, through `pa.array`)
            return pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)

        def read(key: str) -> pa.Table:
            return _conformed(self.parquet_file(key).read(), schema)

        with _missing_is_not_found():
            if len(keys) < 3:
                return pa.concat_tables([read(k) for k in keys])
            with ThreadPoolExecutor(min(READ_THREADS, len(keys))) as pool:
                return pa.concat_tables(list(pool.map(read, keys)))

    def glob(self, pattern: str) -> list[str]:
        """Keys of the files matching `pattern` (`*` stays within one path segment).

        Names starting with a dot are files being written, and never match.
        """
        parts = pattern.split("/")
        return sorted(
            key
            for key, names in self._files(parts[:-1], below=False)
            if len(names) == len(parts)
            and all(fnmatch.fnmatchcase(n, p) for n, p in zip(names, parts, strict=True))
        )

    def glob_below(self, pattern: str) -> list[str]:
        """Keys of every file anywhere under the folders matching `pattern`."""
        parts = pattern.split("/")
        return sorted(
            key
            for key, names in self._files(parts, below=True)
            if len(names) > len(parts)
            and all(fnmatch.fnmatchcase(n, p) for n, p in zip(names, parts, strict=False))
        )

    def _files(self, folders: list[str], below: bool) -> Iterator[tuple[str, list[str]]]:
        """(key, its segments) of each finished file in `folders` (or `below` them), listed
        from their literal leading part."""
        fixed = 0
        while fixed < len(folders) and not GLOB_CHARS & set(folders[fixed]):
            fixed += 1
        prefix = "/".join(folders[:fixed])
        selector = pafs.FileSelector(
            self.location(prefix) if prefix else self.base,
            recursive=below or fixed < len(folders),
            allow_not_found=True,
        )
        for info in self.filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            key = info.path[len(self.base) + 1 :]
            names = key.split("/")
            if not any(n.startswith(".") for n in names):
                yield key, names

    def readable_by(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """Let a DuckDB connection read `url_of(...)` paths; returns it."""
        return con

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """`key` as a local file, for readers that need one (removed afterwards if copied)."""
        with self.scratch_file(Path(key).name) as tmp:
            with self.open(key) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            yield tmp

    @contextmanager
    def scratch_file(self, name: str = "scratch") -> Iterator[Path]:
        """A private local temporary file, removed afterwards."""
        folder = Path(tempfile.mkdtemp(prefix="datashare-"))  # mode 0700
        try:
            yield folder / name
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- writing (each kind its own way) --------------------------------------------------

    @abstractmethod
    def writing(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """Yield a local temporary path; it becomes `key` whole if the block succeeds."""

    @abstractmethod
    def writing_folder(self, key: str) -> contextlib.AbstractContextManager[Path]:
        """Yield a local temporary folder; it replaces the folder `key` if the block succeeds."""

    @abstractmethod
    def incoming(self) -> contextlib.AbstractContextManager[Path]:
        """A private local temporary file for a delivery being fetched, removed unless moved in."""

    @abstractmethod
    def move_in(self, tmp: Path, key: str, read_only: bool = False) -> None:
        """Make the finished temporary file `tmp` the file `key`, whole."""

    @abstractmethod
    def write_table_once(self, key: str, table: pa.Table) -> bool:
        """Write `key` only if nothing is there yet, atomically; False if it already was.

        Of two racing writers exactly one wins.
        """

    @abstractmethod
    def promote(self, source: str, key: str) -> None:
        """Make the private file `source` the analysts' file `key`, whole, and remove `source`."""

    @abstractmethod
    def move_once(self, source: str, key: str) -> bool:
        """Move `source` to `key` unless a file is at `key` already; `source` goes either way.

        True if it moved. Of a racing writer of `key` and this move, the writer's file is
        the one kept; `source` already gone (moved by another process) is False. A lake this
        process may not write raises `PermissionError`.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key` if it is there (and the folder above it, if that is left empty)."""

    def delete_many(self, keys: list[str]) -> None:
        """Remove every one of `keys` that is there."""
        for key in keys:
            self.delete(key)

    # -- leases (see `pipelines.lake.leases`, which decides when to wait and for how long) ------

    @abstractmethod
    def try_lease(self, name: str, holder: dict, stale: Callable[[dict], bool]) -> object | None:
        """Take the lease `name` for `holder` (who, since when, until when) if nobody holds
        it, or if its holder is `stale`; a handle, or None if someone else holds it."""

    @abstractmethod
    def lease_holder(self, name: str) -> dict | None:
        """Who holds the lease `name`, as they recorded it (None if nobody, or unknown)."""

    @abstractmethod
    def renew_lease(self, handle: object, holder: dict) -> bool:
        """Extend a held lease; False if it was lost (taken over as stale)."""

    @abstractmethod
    def release_lease(self, handle: object) -> None:
        """Give a held lease back."""

    def write_table(self, key: str, table: pa.Table) -> None:
        with self.writing(key) as tmp:
            pq.write_table(table, tmp, compression="zstd")

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.writing(key) as tmp:
            tmp.write_bytes(data)

    def copy_in(self, source: Path, key: str) -> None:
        with self.writing(key) as tmp:
            shutil.copyfile(source, tmp)


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in its order and types, as a dataset scan
    with that schema reads a file: a column the file lacks is all nulls, one `schema`
    lacks is left out."""
    columns = [
        _as_type(table.column(f.name), f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _as_type(column: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray:
    """`column` as `type_`, cast only when it is another type: a cast imports
    `pyarrow.compute` (0.15 s), which a run reading files already in their schema (an
    idle run's register) never needs."""
    return column if column.type == type_ else column.cast(type_)


@contextmanager
def _missing_is_not_found() -> Iterator[None]:
    """A file gone since it was listed is `FileNotFoundError` on every kind of lake
    (pyarrow reports S3's missing key as a plain `OSError`)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as error:
        if any(s in str(error) for s in ("NO_SUCH_KEY", "RESOURCE_NOT_FOUND", "does not exist")):
            raise FileNotFoundError(str(error)) from error
        raise


class FolderLake(Lake):
    """A lake rooted in a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.url = str(self.root)
        self.base = self.root.as_posix()
        self.filesystem = pafs.LocalFileSystem()

    def path(self, key: str) -> Path:
        return self.root / key

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        yield self.path(key)  # already local: no copy

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
    def writing(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        self._prepare(path)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            yield tmp
            if self.is_private(key):
                os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @contextmanager
    def writing_folder(self, key: str) -> Iterator[Path]:
        target = self.path(key)
        self._prepare(target)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
        try:
            tmp.mkdir()
            yield tmp
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)

    @contextmanager
    def incoming(self) -> Iterator[Path]:
        """Copies left by a run that was killed mid-copy are swept once a day old."""
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

    def move_in(self, tmp: Path, key: str, read_only: bool = False) -> None:
        path = self.path(key)
        self._prepare(path)
        if read_only:
            os.chmod(tmp, 0o400)
        elif self.is_private(key):
            os.chmod(tmp, 0o600)
        os.replace(tmp, path)  # atomic: `incoming` is on the same file system

    def write_table_once(self, key: str, table: pa.Table) -> bool:
        # Written aside and hard-linked into place: the link fails if another writer got
        # there first.
        path = self.path(key)
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

    def move_once(self, source: str, key: str) -> bool:
        # Hard-linked into place, as in write_table_once: the link fails if `key` is there.
        target = self.path(key)
        self._prepare(target)
        try:
            os.link(self.path(source), target)
            moved = True
        except FileExistsError:
            moved = False
        except FileNotFoundError:
            return False
        self.delete(source)
        return moved

    def promote(self, source: str, key: str) -> None:
        staged, target = self.path(source), self.path(key)
        self._prepare(target)
        os.chmod(staged, 0o644)  # curated data is for analysts; staging was owner-only
        os.replace(staged, target)

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        folder = path.parent
        if folder != self.root:
            # rmdir removes the folder only if it is empty at that instant: a file another
            # process renames into it meanwhile is kept (a look-then-rmtree would delete it).
            with suppress(OSError):
                folder.rmdir()

    # A lease is an exclusive `flock` on a file under `.leases/`: the kernel gives it back
    # when its holder's process ends, however it ends, so a folder lease is never stale.

    def _lease_file(self, name: str) -> Path:
        folder = self.root / ".leases"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder / f"{name}.lock"

    def try_lease(self, name: str, holder: dict, stale: Callable[[dict], bool]) -> object | None:
        fd = os.open(self._lease_file(name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        return _FolderLease(fd)

    def lease_holder(self, name: str) -> dict | None:
        try:
            return json.loads(self._lease_file(name).read_text() or "null")
        except (OSError, ValueError):
            return None

    def renew_lease(self, handle: object, holder: dict) -> bool:
        return True  # held until released or the process ends

    def release_lease(self, handle: object) -> None:
        assert isinstance(handle, _FolderLease)
        os.ftruncate(handle.fd, 0)
        fcntl.flock(handle.fd, fcntl.LOCK_UN)
        os.close(handle.fd)


class _FolderLease:
    def __init__(self, fd: int) -> None:
        self.fd = fd


class S3Lake(InS3, Lake):
    """A lake in an S3 bucket, under a prefix: `s3://bucket/prefix`.

    Writes go through boto3 (an object appears whole when its upload completes, and a
    conditional put makes write-once atomic); reads go through pyarrow's S3 filesystem.
    """

    def __init__(self, url: str, client=None) -> None:
        super().__init__(url, client)
        self.base = f"{self.where.bucket}/{self.where.prefix}".rstrip("/")
        self.filesystem = arrow_s3()

    def uri(self, key: str) -> str:
        return self.url_of(key)

    def readable_by(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        let_duckdb_read_s3(con)
        return con

    def _upload(self, tmp: Path, key: str) -> None:
        if tmp.stat().st_size < SMALL_OBJECT:
            # Most writes are small records: one PUT, without a transfer manager's threads.
            with open(tmp, "rb") as body:
                self.client.put_object(Bucket=self.where.bucket, Key=self._key(key), Body=body)
        else:
            self.client.upload_file(str(tmp), self.where.bucket, self._key(key))

    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        with self.scratch_file(Path(key).name) as tmp:
            yield tmp
            self._upload(tmp, key)

    @contextmanager
    def writing_folder(self, key: str) -> Iterator[Path]:
        folder = Path(tempfile.mkdtemp(prefix="datashare-"))
        try:
            yield folder
            written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
            for relative in sorted(written):
                self._upload(folder / relative, f"{key}/{relative}")
            for stale in self.glob_below(key):  # what the previous version had and this lacks
                if stale[len(key) + 1 :] not in written:
                    self.delete(stale)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def incoming(self) -> Iterator[Path]:
        with self.scratch_file("incoming.tmp") as tmp:
            yield tmp

    def move_in(self, tmp: Path, key: str, read_only: bool = False) -> None:
        self._upload(tmp, key)
        tmp.unlink(missing_ok=True)

    def write_table_once(self, key: str, table: pa.Table) -> bool:
        from botocore.exceptions import ClientError

        body = io.BytesIO()
        pq.write_table(table, body, compression="zstd")
        try:
            self.client.put_object(
                Bucket=self.where.bucket,
                Key=self._key(key),
                Body=body.getvalue(),
                IfNoneMatch="*",  # S3 conditional write: fails if the key exists
            )
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return False
            raise

    def move_once(self, source: str, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with _missing_is_not_found():
                data = self.read_bytes(source)
        except FileNotFoundError:
            return False
        try:
            # A conditional put, as in write_table_once: fails if `key` is there already.
            self.client.put_object(
                Bucket=self.where.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
            moved = True
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "AccessDenied":
                raise PermissionError(f"may not write {self.url_of(key)}") from error
            if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            moved = False
        self.delete(source)
        return moved

    def promote(self, source: str, key: str) -> None:
        bucket = self.where.bucket
        # A server-side copy: the curated object appears whole, then staging is removed.
        self.client.copy({"Bucket": bucket, "Key": self._key(source)}, bucket, self._key(key))
        self.delete(source)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.where.bucket, Key=self._key(key))

    def delete_many(self, keys: list[str]) -> None:
        # One request per thousand keys, so a fold's files vanish together.
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self.client.delete_objects(
                Bucket=self.where.bucket, Delete={"Objects": batch, "Quiet": True}
            )

    # A lease is an object under `leases/`, written with S3's conditional writes: created
    # only if absent (`IfNoneMatch`), renewed, taken over when stale and removed only by
    # the writer of the version it read (`IfMatch`), so of two racing takers one wins.

    def _lease_key(self, name: str) -> str:
        return self._key(f"leases/{name}.json")

    def _conditional(self, call, **kwargs) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return call(Bucket=self.where.bucket, **kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404"):
                return None
            raise

    def try_lease(self, name: str, holder: dict, stale: Callable[[dict], bool]) -> object | None:
        key, body = self._lease_key(name), json.dumps(holder).encode()
        written = self._conditional(self.client.put_object, Key=key, Body=body, IfNoneMatch="*")
        if written is None:
            found = self._conditional(self.client.get_object, Key=key)
            if found is None:
                return None  # released a moment ago: try again on the next round
            try:
                current = json.loads(found["Body"].read())
            except ValueError:
                current = {}
            if not stale(current):
                return None
            written = self._conditional(
                self.client.put_object, Key=key, Body=body, IfMatch=found["ETag"]
            )
            if written is None:
                return None  # another taker won
        return {"key": key, "etag": written["ETag"]}

    def lease_holder(self, name: str) -> dict | None:
        found = self._conditional(self.client.get_object, Key=self._lease_key(name))
        try:
            return json.loads(found["Body"].read()) if found else None
        except ValueError:
            return None

    def renew_lease(self, handle: object, holder: dict) -> bool:
        assert isinstance(handle, dict)
        body = json.dumps(holder).encode()
        written = self._conditional(
            self.client.put_object, Key=handle["key"], Body=body, IfMatch=handle["etag"]
        )
        if written is None:
            return False
        handle["etag"] = written["ETag"]
        return True

    def release_lease(self, handle: object) -> None:
        assert isinstance(handle, dict)
        self._conditional(self.client.delete_object, Key=handle["key"], IfMatch=handle["etag"])


def open_lake(location: str | Path) -> Lake:
    """The lake at `location`: an `s3://bucket/prefix` URL or a local folder."""
    if isinstance(location, str) and location.startswith("s3://"):
        return _s3_lake(location, os.environ.get("AWS_ENDPOINT_URL_S3"))
    return FolderLake(Path(location))


@functools.lru_cache(maxsize=8)
def _s3_lake(url: str, endpoint: str | None) -> S3Lake:
    # One per process: making boto3 and pyarrow S3 clients costs more than most writes.
    return S3Lake(url)
