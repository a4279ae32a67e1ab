"""`datashare contracts lint|diff|show`: check, compare and read the data contracts.

Kept apart from pipelines/cli/main.py so these commands stay fast (no Dagster import) and so the
main CLI only needs `add_contracts_commands` and `run_contracts_command`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from schemas.contract import contracts_dir
from schemas.contract_diff import diff_files
from schemas.contract_page import render_file


def add_contracts_commands(subparsers: Any) -> None:
    """Add `contracts` (with `lint`, `diff` and `show`) to the `datashare` sub-commands."""
    contracts = subparsers.add_parser(
        "contracts",
        help="check, compare and show the data contracts",
        description="Check, compare and show the data contracts (ODCS v3.1.0 with our "
        "sharing-agreement conventions, see data_contracts/README.md).",
    )
    commands = contracts.add_subparsers(dest="contracts_command", required=True)

    lint = commands.add_parser(
        "lint",
        help="check contracts against ODCS v3.1.0 and our conventions",
        description="Check each contract against the official ODCS v3.1.0 JSON schema and "
        "our own rules for the sharing-agreement terms. Exit 1 when any error is found.",
    )
    lint.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="contract files or folders (default: every data_contracts/*.yaml)",
    )
    lint.add_argument("--strict", action="store_true", help="treat warnings as errors")

    diff = commands.add_parser(
        "diff",
        help="what changed between two versions of a contract",
        description="Classify each change as breaking, governance (needs a variation of the "
        "data-sharing agreement), additive or editorial, and check the version bump. Exit 1 "
        "when the new version is not bumped enough.",
    )
    diff.add_argument("old", type=Path, help="the current contract file")
    diff.add_argument("new", type=Path, help="the proposed contract file")

    show = commands.add_parser(
        "show",
        help="the agreement as a readable Markdown page",
        description="Render a contract as a Markdown page for people who never open YAML.",
    )
    show.add_argument("name", help="contract name (e.g. stop_and_search) or a contract file")
    show.add_argument("--output", "-o", type=Path, help="write the page to this file")


def run_contracts_command(args: argparse.Namespace) -> int:
    """Run the `contracts` sub-command in `args`; the exit code."""
    if args.contracts_command == "lint":
        return cmd_lint(args.paths, strict=args.strict)
    if args.contracts_command == "diff":
        return cmd_diff(args.old, args.new)
    return cmd_show(args.name, args.output)


def cmd_lint(paths: list[Path], strict: bool = False) -> int:
    """Print every finding; 1 if any error (or any warning with `strict`)."""
    # The lint reads the ODCS schema with jsonschema: imported by the commands that use
    # it, not by every `datashare` command at start-up (a run's, an idle run's).
    from schemas.contract_lint import contract_paths, display_name, lint_files

    files = contract_paths(paths)
    if not files:
        where = ", ".join(str(p) for p in paths) if paths else str(contracts_dir())
        print(f"No contract files found in {where}.", file=sys.stderr)
        return 1
    findings = lint_files(files)
    for finding in findings:
        print(finding)
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    failed = {f.file for f in findings if f.level == "error" or strict}
    for path in files:
        if display_name(path) not in failed:
            print(f"{display_name(path)}: OK")
    print(
        f"{len(files)} contract{'s' if len(files) != 1 else ''} checked: "
        f"{errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''}."
    )
    return 1 if errors or (strict and warnings) else 0


def cmd_diff(old: Path, new: Path) -> int:
    """Print the change report; 1 if the version bump is not enough, 2 if unreadable."""
    try:
        report = diff_files(old, new)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        print(f"datashare contracts diff: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    return 0 if report.ok else 1


def _contract_file(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return path
    return contracts_dir() / f"{name}.yaml"


def cmd_show(name: str, output: Path | None) -> int:
    """Print (or write to `output`) the Markdown page of one contract."""
    path = _contract_file(name)
    if not path.is_file():
        known = sorted(p.stem for p in contracts_dir().glob("*.yaml"))
        print(
            f"datashare contracts show: no contract {name!r} ({path}); "
            f"known: {', '.join(known) or 'none'}",
            file=sys.stderr,
        )
        return 2
    from schemas.contract_lint import display_name

    try:
        page = render_file(path, display_name(path))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        print(f"datashare contracts show: {exc}", file=sys.stderr)
        return 2
    if output is None:
        sys.stdout.write(page)
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    print(f"Wrote {output}")
    return 0
