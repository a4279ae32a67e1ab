"""The drop zone: where the force puts deliveries, laid out `<contract>/<YYYY-MM>/<file>`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class DropFile:
    """A file found in the drop zone; `problem` says why it is outside the agreed layout."""

    path: Path
    relative: str
    contract: str | None
    period: str | None
    size: int
    mtime_ns: int
    problem: str | None = None


class FolderDropZone:
    """A drop zone in a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def files(self, known_contracts: set[str]) -> list[DropFile]:
        """Every file in the drop zone, each placed in the layout or told why not."""
        if not self.root.exists():
            return []
        found = []
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            if path.name.startswith("."):
                continue  # partial uploads and editor files; the force's files never start so
            rel = path.relative_to(self.root)
            stat = path.stat()
            parts = rel.parts
            contract = parts[0] if len(parts) == 3 else None
            period = parts[1] if len(parts) == 3 else None
            problem = None
            if len(parts) != 3:
                problem = "is not in the agreed layout <contract>/<YYYY-MM>/<file>"
            elif contract not in known_contracts:
                problem = f"names no agreed contract ({contract!r})"
            elif not PERIOD.match(period):
                problem = f"has a period folder {period!r} that is not YYYY-MM"
            found.append(
                DropFile(path, str(rel), contract, period, stat.st_size, stat.st_mtime_ns, problem)
            )
        return found

    def deliveries(self, contract: str, period: str) -> list[DropFile]:
        """The files delivered for one contract and period, oldest first."""
        folder = self.root / contract / period
        if not folder.is_dir():
            return []
        files = []
        for path in folder.iterdir():
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                rel = str(path.relative_to(self.root))
                files.append(DropFile(path, rel, contract, period, stat.st_size, stat.st_mtime_ns))
        return sorted(files, key=lambda f: (f.mtime_ns, f.relative))
