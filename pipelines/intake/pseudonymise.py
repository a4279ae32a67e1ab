"""Pseudonymisation: identifiers the agreement marks are replaced by keyed tokens on landing.

A token is HMAC-SHA256(key, value), so the same identifier gives the same token in every
delivery (analysts can still count and join) while nobody without the key can reverse it.
The key comes from `DATASHARE_PSEUDONYM_KEY`, or from a key file readable only by its owner
(`$DATASHARE_HOME/pseudonym.key`, made on first use). It is never logged or written to
the lake.

Rotating the key: set the new key, then rebuild the curated partitions from the landing
copies (`datashare run` after removing the curated and staging areas); tokens made with the
old key stop matching, so rotate only between analysis cycles and say so to analysts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

KEY_ENV = "DATASHARE_PSEUDONYM_KEY"
TOKEN_PREFIX = "psn_"


class PseudonymKeyError(RuntimeError):
    """The pseudonymisation key is missing or not protected."""


def load_key(home: Path) -> bytes:
    """The key from the environment, else the home's key file (created owner-only if absent)."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    path = home / "pseudonym.key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PseudonymKeyError(
            f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
        )
    return path.read_text().strip().encode()


def token(key: bytes, value: str) -> str:
    return TOKEN_PREFIX + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def pseudonymise(frame: pl.DataFrame, columns: list[str], key: bytes) -> pl.DataFrame:
    """Replace each value in `columns` by its token; blanks stay blank."""
    import polars as pl  # here, not at the top: an idle run imports this module

    for name in columns:
        distinct = frame[name].drop_nulls().unique().to_list()
        mapping = {v: token(key, v) for v in distinct}
        frame = frame.with_columns(pl.col(name).replace_strict(mapping, default=None))
    return frame
