"""The row engine's reading and writing, each in a background thread.

A delivery's batches are read (Arrow's CSV reader), checked (polars) and written (Arrow's
Parquet writer) one after the other. Arrow's reader and writer release the GIL while they
parse, encode and compress, so on a machine with a free core the next batch can be read,
and the last one written, while this one is checked. Order is kept: batches come out in
file order and tables are written in the order given, so the files are the same bytes as
when done in line. Memory grows by about one batch each way, not with the file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

T = TypeVar("T")
_END = object()


def read_ahead(batches: Iterator[T]) -> Iterator[T]:
    """The same batches, the next one read in a background thread while this one is used.

    What the reader raises is raised here, in the consumer, at the batch it stopped on.
    Leaving early (an error, or `close()`) stops the thread after the batch it is reading.
    """
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not hand_over((batch, None)):
                    return
            hand_over((_END, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            hand_over((None, exc))

    thread = threading.Thread(target=read, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            batch, error = ready.get()
            if error is not None:
                raise error
            if batch is _END:
                return
            yield batch
    finally:
        stop.set()
        thread.join()


class BackgroundWriter:
    """Writes Arrow tables to Parquet writers in one background thread, in the order given.

    Use it as a context manager inside the writers' own: leaving waits for every table to
    be written, and raises what a write raised (a write that fails also makes the next
    `write` raise). At most `depth` tables wait at once.
    """

    def __init__(self, depth: int = 2) -> None:
        self._waiting: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="parquet-writer", daemon=True)
        self._thread.start()

    def write(self, writer: pq.ParquetWriter, table: pa.Table) -> None:
        """Queue `table` to be written by `writer` after every table queued before it, cast
        to the writer's schema there (a copy of each string column, off the caller's
        thread)."""
        if self._error is not None:
            raise self._error
        self._waiting.put((writer, table))

    def _run(self) -> None:
        while (item := self._waiting.get()) is not None:
            if self._error is None:
                writer, table = item
                try:
                    writer.write_table(table.cast(writer.schema))
                except BaseException as exc:  # raised in the caller's thread
                    self._error = exc

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._waiting.put(None)
        self._thread.join()
        if kind is None and self._error is not None:
            raise self._error
