"""S3 connections, made once from the standard AWS settings for the drop zone and the lake.

Credentials, region and profile come from the usual environment variables and files;
`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` point everything at an S3-compatible store.
Three clients reach the same bucket: boto3 (listing the drop zone, every write to the
lake), pyarrow's `S3FileSystem` (reading Parquet datasets) and DuckDB, which reads
`s3://` through pyarrow registered as an fsspec filesystem, so no DuckDB extension
(httpfs) has to be downloaded.

Why boto3 for writes: pyarrow 26's S3 writes send `aws-chunked` bodies with a trailing
checksum, which SeaweedFS 4.x stored verbatim (a Parquet file with chunk headers in it,
unreadable) unless `AWS_REQUEST_CHECKSUM_CALCULATION=when_required` is set; boto3's
uploads were stored byte for byte.

`AWS_MAX_ATTEMPTS` (every attempt at a request, the first included) bounds the retries of
boto3 and pyarrow alike. Each request is retried by its own client and nowhere else (the
lake has no retry loop of its own around them). Unset, boto3 makes six attempts with
back-off and pyarrow three (about 1.5-2.5 s of back-off per read once the store is gone).
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs


@dataclass(frozen=True)
class S3Url:
    """`s3://bucket/prefix`, split."""

    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> S3Url:
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r}")
        return cls(bucket, prefix.strip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative


def s3_client():
    """A boto3 S3 client from the standard AWS settings (botocore reads the endpoint too)."""
    import boto3
    from botocore.config import Config

    # Five retries in botocore's standard mode, unless the standard AWS settings say otherwise:
    # botocore reads AWS_MAX_ATTEMPTS (every attempt, the first included) and AWS_RETRY_MODE
    # only where the client's configuration leaves them out.
    retries = {}
    if not os.environ.get("AWS_RETRY_MODE"):
        retries["mode"] = "standard"
    if not os.environ.get("AWS_MAX_ATTEMPTS"):
        retries["max_attempts"] = 5
    return boto3.client("s3", config=Config(retries=retries))


class InS3:
    """Something kept in a bucket under a prefix (`s3://bucket/prefix`), reached with a
    boto3 client made when first needed."""

    def __init__(self, url: str, client=None) -> None:
        self.where = S3Url.parse(url)
        self.url = str(self.where)
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = s3_client()
        return self._client

    def _key(self, relative: str) -> str:
        return self.where.key(relative)


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _region() -> str:
    import boto3

    return boto3.session.Session().region_name or "us-east-1"


def _max_attempts() -> int | None:
    """`AWS_MAX_ATTEMPTS` as a number of attempts (at least one), if it is set to one."""
    value = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def arrow_s3() -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem with the same endpoint, region and `AWS_MAX_ATTEMPTS` boto3 uses.

    Credentials are left to the AWS SDK's own chain (environment, profile, instance role),
    so expiring role credentials are refreshed. pyarrow sets a retry strategy of its own
    (three attempts), so the AWS SDK under it never reads `AWS_MAX_ATTEMPTS`: it is passed
    here, or a store that is gone costs every read three attempts whatever the setting says.
    """
    options: dict = {"region": _region()}
    if endpoint := _endpoint():
        parsed = urlparse(endpoint)
        options["endpoint_override"] = parsed.netloc or parsed.path
        options["scheme"] = parsed.scheme or "https"
    if attempts := _max_attempts():
        options["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=attempts)
    return pafs.S3FileSystem(**options)


class PositionalReads(io.RawIOBase):
    """An S3 object open for reading, as DuckDB's Python filesystem reads it: from several
    threads at once, each a `seek` then a `read`.

    DuckDB reads a Parquet file's row groups on several threads through one handle, and its
    Python filesystem reads at an offset as `seek(offset)` then `read(n)`. pyarrow's file
    lets go of the GIL in both, so on a shared position another thread's seek could land
    between them: the read then returned the wrong bytes ("don't know what type",
    "only N bytes returned": a 300,000-row curated month read from an S3 lake failed about
    one query in ten). Here each thread has its own position, and a read is pyarrow's
    positional `read_at` from the position its own thread last sought.
    """

    def __init__(self, stream: pa.NativeFile) -> None:
        super().__init__()
        self._stream = stream
        self._size = stream.size()
        self._positions = threading.local()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return getattr(self._positions, "at", 0)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self._size}[whence]
        self._positions.at = max(0, start + offset)
        return self._positions.at

    def read(self, size: int | None = -1) -> bytes:
        at = self.tell()
        if size is None or size < 0:
            size = self._size - at
        data = self._stream.read_at(max(0, min(size, self._size - at)), at)
        self._positions.at = at + len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


@cache
def _duckdb_s3(endpoint: str | None, region: str, attempts: int | None):
    """pyarrow's S3 filesystem, as the fsspec filesystem DuckDB asks for `s3://` paths."""
    # fsspec is imported here, not with the module: a lake in a folder never needs it, and
    # its import was a tenth of every command's start.
    from fsspec.implementations.arrow import ArrowFSWrapper, wrap_exceptions

    class DuckDBS3(ArrowFSWrapper):
        protocol = ("s3", "s3a")

        @wrap_exceptions  # pyarrow's errors as Python's (FileNotFoundError...), as ArrowFSWrapper's
        def _open(self, path, mode="rb", block_size=None, seekable=True, **kwargs):
            if mode != "rb" or not seekable:
                return super()._open(path, mode, block_size, seekable, **kwargs)
            return PositionalReads(self.fs.open_input_file(path))

    # One per endpoint, region and attempts (the cache key; arrow_s3 reads them).
    return DuckDBS3(arrow_s3())


def duckdb_s3_filesystem():
    """The fsspec filesystem DuckDB reads `s3://` paths through (one per S3 setting)."""
    return _duckdb_s3(_endpoint(), _region(), _max_attempts())


def let_duckdb_read_s3(con: duckdb.DuckDBPyConnection) -> None:
    """Make `read_parquet('s3://...')` work on this connection, without httpfs."""
    fs = duckdb_s3_filesystem()
    if fs.protocol[0] not in con.list_filesystems():
        con.register_filesystem(fs)
