"""Where the oversight marts are in the lake, and moving a previous version's marts there.

Each mart is a folder holding one file, `oversight/<mart>/data.parquet`. Trino's Hive
connector and Athena declare a table over a folder, never over a single file, so a folder
per mart lets every engine declare every mart (`datashare lake ddl`).

Lakes written by earlier versions hold each mart as one file, `oversight/<mart>.parquet`.
`migrate_mart_files` moves each into its folder, byte for byte. `build_warehouse` calls it
before it makes the views, and `datashare run` before it looks for marts never computed
(then rebuilding the warehouse, even with nothing new), so this version's first run or
`datashare warehouse rebuild` migrates a lake. Until then, and while it runs, `mart_keys`
reads either layout and gives each mart exactly once: its folder's file if there is one,
else the old file. A warehouse an earlier version built reads the old files until it is
rebuilt, which both of those do straight after moving them.
"""

from __future__ import annotations

from pipelines.lake.store import Lake

AREA = "oversight"
MART_FILE = "data.parquet"


def mart_folder(mart: str) -> str:
    """The folder of `mart` under the lake root: what an engine declares its table over."""
    return f"{AREA}/{mart}"


def mart_key(mart: str) -> str:
    """The file `mart` is written to (one file in a folder of its own)."""
    return f"{mart_folder(mart)}/{MART_FILE}"


def previous_mart_key(mart: str) -> str:
    """Where earlier versions wrote `mart`: one file, straight under `oversight/`."""
    return f"{AREA}/{mart}.parquet"


def mart_keys(lake: Lake) -> dict[str, str]:
    """Every mart in `lake`, by name: the key of its file, each mart once, either layout."""
    # The old files are listed before the folders: a mart moved between the two listings
    # is then found in its folder, never missed in both.
    found = {k.split("/")[1].removesuffix(".parquet"): k for k in lake.glob(f"{AREA}/*.parquet")}
    found |= {k.split("/")[1]: k for k in lake.glob(f"{AREA}/*/{MART_FILE}")}
    return dict(sorted(found.items()))


def migrate_mart_files(lake: Lake) -> list[str]:
    """Move every mart an earlier version kept as `oversight/<mart>.parquet` into its folder.

    Returns the marts moved. Where the folder already holds the mart (this version wrote it
    since), the old file is out of date and is removed instead. Safe to run from several
    processes at once, and again: a lake with no old files is left as it is. A lake this
    process may only read (an analyst's read-only S3 credentials) is left as it is too:
    `mart_keys` reads the old layout.
    """
    moved = []
    for key in lake.glob(f"{AREA}/*.parquet"):
        mart = key.split("/")[1].removesuffix(".parquet")
        try:
            if lake.move_once(key, mart_key(mart)):
                moved.append(mart)
        except PermissionError:
            break
    return moved
