"""Each delivery's Data Docs, read from the lake's `docs/` area for the desk to serve.

A path from a request is a list of plain names inside `docs/`: an absolute path, `..`, `.`,
an empty name, a backslash or a NUL is refused before the lake is touched, and in a folder
lake the file is resolved (links followed) and refused unless it is still inside the
`docs/` folder, so a symbolic link cannot lead out of it.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

from pipelines.lake.store import FolderLake, Lake

DOCS_AREA = "docs"


class NotServed(LookupError):
    """A path the desk does not serve (outside the docs, or no such file)."""


@dataclass(frozen=True)
class DocsFile:
    body: bytes
    media_type: str


def safe_key(relative: str) -> str:
    """The lake key of `relative` inside `docs/`; raises NotServed for anything that could
    name a file outside it."""
    if not relative or relative.endswith("/"):
        relative += "index.html"
    if "\\" in relative or "\x00" in relative or relative.startswith("/"):
        raise NotServed(relative)
    names = relative.split("/")
    if any(n in ("", ".", "..") or ":" in n for n in names):
        raise NotServed(relative)
    return f"{DOCS_AREA}/{'/'.join(names)}"


def read_docs_file(lake: Lake, relative: str) -> DocsFile:
    """The file at `relative` under the lake's `docs/`, with its media type."""
    key = safe_key(relative)
    if isinstance(lake, FolderLake):
        root = (lake.root / DOCS_AREA).resolve()
        target = (lake.root / key).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise NotServed(relative)
        body = target.read_bytes()
    else:
        if not lake.exists(key):
            raise NotServed(relative)
        body = lake.read_bytes(key)
    media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type in ("application/javascript",):
        media_type += "; charset=utf-8"
    return DocsFile(body, media_type)


def docs_sites(lake: Lake) -> set[tuple[str, str, str]]:
    """(contract, period, delivery id) of every delivery whose Data Docs are in the lake."""
    out = set()
    for key in lake.glob(f"{DOCS_AREA}/contract=*/period=*/*/index.html"):
        _, contract, period, delivery_id, _ = key.split("/")
        out.add((contract.removeprefix("contract="), period.removeprefix("period="), delivery_id))
    return out


def site_path(contract: str, period: str, delivery_id: str) -> str:
    """The desk path of one delivery's Data Docs."""
    return f"/docs/contract={contract}/period={period}/{delivery_id}/index.html"


def docs_link(data_docs: str, desk_url: str | None = None) -> str:
    """Where to open a delivery's Data Docs: on the desk when its address is set
    (`DATASHARE_DESK_URL`, so one click from the Dagster UI opens them, where a browser
    refuses a `file://` link), else the lake's own URL as written."""
    if desk_url is None:
        from pipelines.desk.config import load_desk_config

        desk_url = load_desk_config().url
    from urllib.parse import quote, unquote

    marker = f"/{DOCS_AREA}/contract="
    plain = unquote(data_docs)  # a file:// URL writes '=' as %3D
    if not desk_url or marker not in plain:
        return data_docs
    relative = "contract=" + plain.split(marker, 1)[1]
    return f"{desk_url.rstrip('/')}/{DOCS_AREA}/{quote(relative, safe='/=')}"
