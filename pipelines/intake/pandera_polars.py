"""pandera's polars API (`pa`), imported without pandera's pandas API.

`import pandera.polars` runs pandera's package `__init__` first, which imports pandas and
pandera's whole pandas API (its pandas schemas, engine, typing and backends) whenever pandas
is installed, for `import pandera as pa` on pandas frames. Nothing here checks a pandas
frame: the row checks are polars (`pandera.polars`). pandera's `__init__` has a branch for
an install without pandas (its polars-only install): the same polars API, checks and
backends, without the pandas ones. So the first import of pandera in a process is made
with pandas reported missing to it: only to that one import, in its own thread; anything
else may import pandas meanwhile or later, as before (pyarrow does, in a run, the first
time it converts a list). Where pandas or pandera is imported already (a test process, a
script), pandera is imported whole, as it always was.

Measured here after Dagster and polars (load ~20): `import pandera.polars` 0.54-0.58 s of
CPU, without the pandas API 0.13-0.15 s; with pandas imported after it, 0.35 s against
0.41-0.46 s. tests/test_startup_imports.py checks that both ways judge deliveries alike.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading


class _PandasMissingHere(importlib.abc.MetaPathFinder):
    """Reports pandas missing (as Python does when it is not installed) to one thread."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if threading.get_ident() == self.thread and name.split(".")[0] == "pandas":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _import_pandera_without_pandas() -> None:
    """Import the `pandera` package itself with pandas reported missing, unless pandas or
    pandera is imported already (then pandera is imported as it always was)."""
    if "pandera" in sys.modules or "pandas" in sys.modules:
        return
    missing = _PandasMissingHere()
    sys.meta_path.insert(0, missing)
    try:
        import pandera  # noqa: F401
    finally:
        sys.meta_path.remove(missing)


_import_pandera_without_pandas()

import pandera.polars as pa  # noqa: E402  (after the package itself: see above)

__all__ = ["pa"]
