"""Deleting from a folder lake removes the emptied folder, but never a file another process
put there meanwhile (a register fold, a re-send landing in the same month)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pyarrow as pa

from pipelines.lake.store import FolderLake

TABLE = pa.table({"x": [1]})


def test_the_last_file_gone_takes_its_folder_and_a_neighbour_keeps_it(tmp_path: Path) -> None:
    lake = FolderLake(tmp_path)
    lake.write_table("area/one/a.parquet", TABLE)
    lake.write_table("area/two/a.parquet", TABLE)
    lake.write_table("area/two/b.parquet", TABLE)
    lake.delete("area/one/a.parquet")
    lake.delete("area/two/a.parquet")
    assert not (tmp_path / "area/one").exists()
    assert [p.name for p in (tmp_path / "area/two").iterdir()] == ["b.parquet"]


def test_a_file_written_while_its_folder_empties_is_never_deleted(tmp_path: Path) -> None:
    lake = FolderLake(tmp_path)
    kept: list[str] = []
    for i in range(200):
        folder = f"area/month-{i}"
        lake.write_table(f"{folder}/old.parquet", TABLE)

        def write_beside(folder: str = folder) -> None:
            key = f"{folder}/new-{uuid.uuid4().hex}.parquet"
            try:
                lake.write_table(key, TABLE)
            except OSError:
                return  # its folder went as it wrote: the write failed loudly, nothing lost
            kept.append(key)

        writer = threading.Thread(target=write_beside)
        writer.start()
        lake.delete(f"{folder}/old.parquet")  # must not raise, whatever the writer does
        writer.join()
    assert kept, "no write landed: the test tried nothing"
    assert [k for k in kept if not lake.path(k).exists()] == []
