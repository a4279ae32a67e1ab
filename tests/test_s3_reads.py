"""DuckDB reading the lake on S3: what an analyst's query over an S3 lake reads is the file.

DuckDB reads `s3://` through pyarrow, registered as a Python filesystem
(`pipelines.lake.object_store`), and reads a Parquet file's row groups on several threads
through one handle, each read a `seek` then a `read`. With one position shared by the
threads, a curated month of 300,000 rows read from an S3 lake failed about one query in ten
("don't know what type", "dictionary offset out of range", "only N bytes returned"): the
bytes of another thread's offset.
"""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.lake.object_store import duckdb_s3_filesystem, let_duckdb_read_s3
from tests.s3_server import LAKE_BUCKET


def test_each_thread_reads_the_bytes_at_the_offset_it_sought(s3):
    server, prefix = s3
    blob = bytes(range(256)) * 4096  # 1 MiB, each offset's byte its own
    key = f"{prefix}/blob.bin"
    server.client().put_object(Bucket=LAKE_BUCKET, Key=key, Body=blob)
    f = duckdb_s3_filesystem().open(f"s3://{LAKE_BUCKET}/{key}", "rb")
    sought, other_done = threading.Event(), threading.Event()
    got = {}

    def first() -> None:  # seeks, and reads only after the other thread has sought and read
        f.seek(1000)
        sought.set()
        other_done.wait(30)
        got["first"] = f.read(64)

    def second() -> None:
        sought.wait(30)
        f.seek(500_000)
        got["second"] = f.read(64)
        other_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    f.close()
    assert got["second"] == blob[500_000:500_064]
    assert got["first"] == blob[1000:1064], "a thread read at another thread's offset"


def test_a_big_month_on_s3_reads_as_it_does_from_a_file(s3, tmp_path):
    # A month of many row groups (DuckDB gives them to its threads), read through the same
    # filesystem the warehouse's views use: every query gives what the local file gives.
    server, prefix = s3
    rows = 300_000
    rng = np.random.default_rng(7)
    text = rng.bytes(16 * rows).hex()
    table = pa.table(
        {
            "n": rng.integers(0, 1_000, rows),
            "token": [text[i * 32 : (i + 1) * 32] for i in range(rows)],
            "_period": ["2022-06"] * rows,
        }
    )
    local = tmp_path / "data.parquet"
    pq.write_table(table, local, row_group_size=20_000, compression="zstd")
    key = f"{prefix}/curated/contract=stop_and_search/period=2022-06/data.parquet"
    server.client().upload_file(str(local), LAKE_BUCKET, key)
    query = (
        "SELECT _period, count(*), sum(n), count(DISTINCT token) FROM read_parquet('{}') GROUP BY 1"
    )
    want = duckdb.sql(query.format(local)).fetchall()
    assert want == [("2022-06", rows, int(table["n"].to_numpy().sum()), rows)]
    for _ in range(8):
        with duckdb.connect(config={"threads": 4}) as con:
            let_duckdb_read_s3(con)
            assert con.execute(query.format(f"s3://{LAKE_BUCKET}/{key}")).fetchall() == want
