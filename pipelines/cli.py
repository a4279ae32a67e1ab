"""The `datashare` command line: demo, run, ui."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.breaches_cli import add_breaches_commands, run_breaches_command
from pipelines.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def _use_home(settings: Settings) -> None:
    """Point this process (and anything it starts) at one home and one Dagster instance."""
    settings.ensure_folders()
    os.environ["DATASHARE_HOME"] = str(settings.home)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)


def cmd_run(settings: Settings) -> int:
    """Process everything pending in the drop zone, recorded in the home's Dagster instance."""
    from pipelines.pending_runs import run_pending  # imports Dagster: keep `--help` fast

    _use_home(settings)
    report = run_pending(settings)
    print(report.text())
    return 0 if report.ok else 1


def cmd_demo(settings: Settings, rows: int) -> int:
    """Write the bundled demo deliveries into the drop zone, then run."""
    from pipelines.demo import write_demo_deliveries

    _use_home(settings)
    written = write_demo_deliveries(settings.dropzone, rows=rows)
    print(
        f"Demo deliveries in {settings.dropzone}: {written.new} new, {written.kept} already there."
    )
    return cmd_run(settings)


def cmd_ui(settings: Settings, host: str, port: int) -> int:
    """Start the Dagster UI (`dagster dev`) on this home."""
    _use_home(settings)
    dagster = Path(sys.executable).with_name("dagster")
    argv = [
        str(dagster), "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
        "-h", host, "-p", str(port),
    ]  # fmt: skip
    print(f"Dagster UI on http://{host}:{port} (home {settings.home}); Ctrl-C to stop.")
    sys.stdout.flush()
    os.chdir(REPO_ROOT)
    os.execv(argv[0], argv)
    return 0  # not reached


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="datashare",
        description="MPS to MOPAC data sharing: take deliveries, check them against their "
        "contracts, publish curated tables to DuckDB.",
    )
    parser.add_argument(
        "--home", help="installation folder (default: $DATASHARE_HOME or ./.datashare)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="write demo deliveries into the drop zone, then run")
    demo.add_argument("--rows", type=int, default=20_000, help="rows per monthly delivery")
    sub.add_parser("run", help="process everything pending in the drop zone")
    ui = sub.add_parser("ui", help="start the Dagster UI on this home")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    add_breaches_commands(sub)
    args = parser.parse_args(argv)

    settings = load_settings(args.home)
    if args.command == "breaches":
        return run_breaches_command(args, settings)
    if args.command == "run":
        return cmd_run(settings)
    if args.command == "demo":
        return cmd_demo(settings, args.rows)
    return cmd_ui(settings, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
