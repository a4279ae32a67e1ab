"""The row engine reads ahead and writes Parquet in background threads: nothing may be lost,
reordered or silently dropped on the way, and a failure in either thread still stops the
delivery where the engine would have stopped without them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.validation.batch_threads import BackgroundWriter, read_ahead

SCHEMA = pa.schema([("_source_row", pa.int64())])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50), max_size=30))
def test_tables_are_written_in_the_order_given_whatever_their_sizes(tmp_path_factory, sizes):
    path = tmp_path_factory.mktemp("w") / "rows.parquet"
    start, expected = 0, []
    with pq.ParquetWriter(path, SCHEMA) as writer, BackgroundWriter(depth=1) as background:
        for size in sizes:
            rows = list(range(start, start + size))
            background.write(writer, pa.table({"_source_row": rows}, schema=SCHEMA))
            expected += rows
            start += size
    assert pq.read_table(path)["_source_row"].to_pylist() == expected


def test_a_table_is_written_in_the_writers_types(tmp_path):
    # The engine hands over polars' string views; the file keeps its agreed strings.
    schema = pa.schema([("_source_row", pa.int64()), ("type", pa.large_string())])
    path = tmp_path / "r.parquet"
    views = pa.table(
        {"_source_row": [1, 2], "type": pa.array(["Person search", None], pa.string_view())}
    )
    with pq.ParquetWriter(path, schema) as writer, BackgroundWriter() as background:
        background.write(writer, views)
    written = pq.read_table(path)
    assert written.schema == schema
    assert written["type"].to_pylist() == ["Person search", None]


def test_a_failed_write_is_raised_not_lost(tmp_path):
    wrong = pa.table({"other": ["a"]})
    with pytest.raises(ValueError, match="schema"):
        with pq.ParquetWriter(tmp_path / "r.parquet", SCHEMA) as writer:
            with BackgroundWriter() as background:
                background.write(writer, wrong)


def test_read_ahead_gives_every_batch_in_order_then_the_readers_error():
    def batches():
        yield from range(5)
        raise pa.ArrowInvalid("CSV parse error: Expected 15 columns, got 3")

    seen = []
    with pytest.raises(pa.ArrowInvalid, match="Expected 15 columns"):
        for batch in read_ahead(batches()):
            seen.append(batch)
    assert seen == [0, 1, 2, 3, 4]


def test_leaving_early_stops_the_reader():
    read = []

    def batches():
        for n in range(1000):
            read.append(n)
            yield n

    for batch in read_ahead(batches()):
        if batch == 2:
            break
    assert len(read) <= 5  # the reader stopped a batch or two ahead, not at the end
