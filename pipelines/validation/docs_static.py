"""The Data Docs' shared static folder (`docs/_static/` in the lake), without great-expectations.

Every delivery's pages link their CSS, JS and fonts from one folder in the lake (see
`data_docs`). Keeping it, and naming the link to it, needs no great-expectations: the run's
process does it while great-expectations itself is loaded and run in another
(`ge_process`), so importing this must not import it.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.lake.store import Lake

STATIC_FILES = Path(__file__).resolve().with_name("data_docs_static")
STATIC_KEY = "docs/_static"  # the lake's one copy of STATIC_FILES, beside the sites
VERSION_FILE = "VERSION"  # in STATIC_KEY: which content it holds, written last

_published: set[str] = set()  # lakes whose static folder this process found current


def data_asset_label(contract: str, period: str, delivery_id: str) -> str:
    """What the pages call the data validated: the contract, the month and the delivery."""
    return f"{contract} · {period} · delivery {delivery_id[:8]}"


def static_path(site_key: str) -> str:
    """The shared static folder as a link from the root of the site at `site_key`."""
    return posixpath.relpath(STATIC_KEY, site_key)


# -- the shared static folder ---------------------------------------------------------------


def _static_files() -> list[Path]:
    files = STATIC_FILES.rglob("*")
    return sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts)


@functools.cache
def static_version() -> str:
    """A digest of the static files: the lake's copy is rewritten when it differs."""
    digest = hashlib.sha256()
    for path in _static_files():
        digest.update(path.relative_to(STATIC_FILES).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _is_current(lake: Lake) -> bool:
    try:
        return lake.read_text(f"{STATIC_KEY}/{VERSION_FILE}").strip() == static_version()
    except OSError:
        return False


def publish_static(lake: Lake) -> None:
    """Make `docs/_static/` in `lake` hold this version of the static files.

    Checked once per lake per process; written only if missing or of another version. The
    version file goes in last, so a copy cut short is written again next time.
    """
    if lake.url in _published:
        return
    if not _is_current(lake):
        try:
            with lake.writing_folder(STATIC_KEY) as folder:
                shutil.copytree(
                    STATIC_FILES,
                    folder,
                    dirs_exist_ok=True,
                    copy_function=shutil.copyfile,  # the lake's modes, not the package's
                    ignore=shutil.ignore_patterns("__pycache__"),
                )
            lake.write_bytes(f"{STATIC_KEY}/{VERSION_FILE}", static_version().encode())
        except OSError:
            # Another process swapped its copy in first (a folder cannot replace a folder
            # that is not empty): theirs will do once its version file is in.
            if not any(_is_current(lake) or time.sleep(0.1) for _ in range(20)):
                raise
    _published.add(lake.url)
