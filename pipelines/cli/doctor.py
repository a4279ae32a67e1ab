"""`datashare doctor`: is this deployment ready to take deliveries? Said in words.

Each check gives a finding: `ok`, `warn` (works, but someone should look) or `fail` (a run
would stop on it). The home is never created (a missing home is a finding, not something
to make); in one that exists, the doctor writes what any `datashare` command would (the
Dagster instance configuration, Dagster's tables on a new database), and one small probe
object into the lake, removed at once, to prove it is writable.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.home.settings import Settings

Level = Literal["ok", "warn", "fail"]

# Below this the lake's disk fails the check (a month's landing copy, staging and curated
# copy can exceed it); below the warning figure someone should plan more space.
DISK_FAIL_BYTES = 1 << 30
DISK_WARN_BYTES = 10 << 30

# Every setting `datashare` reads, and what it is for.
SETTINGS = {
    "DATASHARE_HOME": "the home folder (default ./.datashare)",
    "DATASHARE_DROP_ZONE": "where the force drops files (default <home>/dropzone)",
    "DATASHARE_LAKE": "the lake (default <home>/lake)",
    "DATASHARE_SETTLE_SECONDS": "how long a folder file must be unchanged (default 60)",
    "DATASHARE_CONTRACTS": "the contracts folder (default: the bundled data_contracts/)",
    "DATASHARE_PSEUDONYM_KEY": "the pseudonymisation key (default <home>/pseudonym.key)",
    "AWS_ENDPOINT_URL_S3": "the S3 endpoint, for s3:// drop zones and lakes",
    "DATASHARE_EXECUTOR": "where delivery steps run: in_process (default) or celery (workers)",
    "DATASHARE_CELERY_BROKER": "the workers' Redis broker (DATASHARE_EXECUTOR=celery)",
}
# A broker URL may carry a password: it is shown by `_workers`, the password masked.
SECRET_SETTINGS = {"DATASHARE_PSEUDONYM_KEY", "DATASHARE_CELERY_BROKER"}


@dataclass
class Finding:
    level: Level
    check: str
    words: str

    def __str__(self) -> str:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[self.level]
        return f"{mark}  {self.check}: {self.words}"


def _settings(settings: Settings) -> list[Finding]:
    found = []
    for name, what in SETTINGS.items():
        raw = os.environ.get(name)
        if raw is None:
            shown = "not set, default used"
        elif name in SECRET_SETTINGS:
            shown = "set in the environment (value not shown)"
        else:
            shown = f"{raw!r}, from the environment"
        found.append(Finding("ok", f"setting {name}", f"{shown}; {what}"))
    where = (
        f"home {settings.home}, drop zone {settings.dropzone}, lake {settings.lake}, "
        f"warehouse {settings.warehouse}, Dagster {settings.dagster_home}"
    )
    found.append(Finding("ok", "settings in use", where))
    return found


def _home(settings: Settings) -> list[Finding]:
    if not settings.home.is_dir():
        return [
            Finding(
                "fail",
                "home",
                f"there is no home at {settings.home}: run `datashare run` (or `demo`) once "
                "to make it, or point DATASHARE_HOME or --home at the right folder",
            )
        ]
    return [Finding("ok", "home", f"{settings.home} exists")]


def _key(settings: Settings) -> list[Finding]:
    from pipelines.intake.pseudonymise import KEY_ENV

    if os.environ.get(KEY_ENV):
        return [Finding("ok", "pseudonymisation key", f"from {KEY_ENV} (value not shown)")]
    path = settings.home / "pseudonym.key"
    if not path.exists():
        return [
            Finding(
                "warn" if _pseudonymising() else "ok",
                "pseudonymisation key",
                f"no key at {path} and {KEY_ENV} unset: the first pseudonymised delivery makes "
                "a new key, so tokens would not match any made before. Restore the key from "
                "backup if this deployment had one",
            )
        ]
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return [
            Finding(
                "fail",
                "pseudonymisation key",
                f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}",
            )
        ]
    if info.st_uid != os.geteuid():
        return [
            Finding(
                "fail",
                "pseudonymisation key",
                f"{path} belongs to user {info.st_uid}, not to the user running datashare "
                f"({os.geteuid()}): chown it to the service user",
            )
        ]
    return [Finding("ok", "pseudonymisation key", f"{path}, owner-only (mode {mode:o})")]


def _pseudonymising() -> list[str]:
    from schemas.contract import load_contracts

    return [c.name for c in load_contracts().values() if c.pseudonymised]


def _dropzone(settings: Settings) -> list[Finding]:
    from pipelines.intake.dropzone import open_dropzone
    from schemas.contract import load_contracts

    if not settings.dropzone_is_s3 and not Path(settings.dropzone).is_dir():
        return [Finding("fail", "drop zone", f"{settings.dropzone} is not a folder")]
    try:
        files = open_dropzone(settings.dropzone).files(set(load_contracts()))
    except Exception as exc:  # any failure to list is the finding itself
        return [Finding("fail", "drop zone", f"{settings.dropzone} cannot be read: {exc}")]
    return [Finding("ok", "drop zone", f"{settings.dropzone} readable, {len(files)} file(s) in it")]


def _lake(settings: Settings) -> list[Finding]:
    from pipelines.lake.store import open_lake

    if not settings.lake_is_s3 and not Path(settings.lake).is_dir():
        return [Finding("fail", "lake", f"{settings.lake} is not a folder")]
    key = f"_doctor/probe-{uuid.uuid4().hex}"
    try:
        lake = open_lake(settings.lake)
        lake.write_bytes(key, b"datashare doctor probe\n")
        readable = lake.read_bytes(key) == b"datashare doctor probe\n"
        lake.delete(key)
    except Exception as exc:  # any failure to write is the finding itself
        return [Finding("fail", "lake", f"{settings.lake} is not writable: {exc}")]
    if not readable:
        return [Finding("fail", "lake", f"{settings.lake}: what was written read back different")]
    found = [Finding("ok", "lake", f"{settings.lake} readable and writable")]
    if not settings.lake_is_s3:
        free = shutil.disk_usage(settings.lake).free
        gib = free / (1 << 30)
        if free < DISK_FAIL_BYTES:
            found.append(Finding("fail", "disk", f"{gib:.1f} GiB free for the lake: free space"))
        elif free < DISK_WARN_BYTES:
            found.append(Finding("warn", "disk", f"only {gib:.1f} GiB free for the lake"))
        else:
            found.append(Finding("ok", "disk", f"{gib:,.0f} GiB free for the lake"))
    return found


def _instance(settings: Settings) -> list[Finding]:
    """The Dagster instance as the daemon and webserver will open it (`instance_health`)."""
    from pipelines.orchestration.instance import instance_health

    try:
        health = instance_health(settings)
    except Exception as exc:  # any failure to look is the finding itself
        return [Finding("fail", "Dagster instance", f"cannot be opened: {exc}")]
    found = [Finding("fail", "Dagster instance", words) for words in health.problems]
    found += [Finding("warn", "Dagster instance", words) for words in health.warnings]
    if health.ok:
        found.insert(0, Finding("ok", "Dagster instance", health.summary or "opens"))
    return found


def _contracts() -> list[Finding]:
    from schemas.contract_lint import contract_paths, lint_files

    files = contract_paths()
    if not files:
        return [Finding("fail", "contracts", "no contract files found")]
    findings = lint_files(files)
    errors = [f for f in findings if f.level == "error"]
    if errors:
        first = "; ".join(str(f) for f in errors[:3])
        return [
            Finding(
                "fail",
                "contracts",
                f"{len(errors)} error(s) (`datashare contracts lint` lists them): {first}",
            )
        ]
    warnings = len(findings) - len(errors)
    level: Level = "warn" if warnings else "ok"
    return [Finding(level, "contracts", f"{len(files)} checked, {warnings} warning(s)")]


def _workers(settings: Settings) -> list[Finding]:
    """With DATASHARE_EXECUTOR=celery: the broker answers, workers listen, and the drop
    zone, lake and instance are ones every machine shares (`pipelines.cli.worker`)."""
    from pipelines.home.executor import CELERY

    if settings.executor != CELERY:
        return []
    from pipelines.cli.worker import setup_findings

    return [Finding(level, "workers", words) for level, words in setup_findings(settings)]


def step_logs_findings(settings: Settings) -> list[Finding]:
    """Where a step's stdout and stderr go, as the instance's dagster.yaml says: the UI reads
    them there, so steps on workers need a store every machine shares (S3)."""
    import yaml

    from pipelines.home.executor import CELERY

    config = settings.dagster_home / "dagster.yaml"
    try:
        section = (yaml.safe_load(config.read_text()) or {}).get("compute_logs")
    except (OSError, yaml.YAMLError):
        return []  # the instance's own check says what is wrong with the file
    if not section:
        where = f"{settings.dagster_home / 'storage'} on the machine that runs each step"
        if settings.executor == CELERY:
            why = (
                f"{config} was edited by hand and has no compute_logs section"
                if settings.lake_is_s3
                else "the lake is a folder (with an S3 lake they go there)"
            )
            return [
                Finding("warn", "step logs", f"{where}: steps run on workers, so the UI here "
                        f"cannot show their logs; {why}")
            ]  # fmt: skip
        return [Finding("ok", "step logs", f"{where} (Dagster's default), where the UI reads them")]
    kind = f"{section.get('module', '?')}.{section.get('class', '?')}"
    if section.get("class") != "S3ComputeLogManager":
        return [Finding("ok", "step logs", f"as {config} says ({kind})")]
    options = section.get("config") or {}
    shown = "s3://{}/{}".format(*(_shown(options.get(f)) for f in ("bucket", "prefix")))
    return [
        Finding("ok", "step logs", f"{shown}: uploaded by the machine that runs each step, "
                "read from there by the UI on any machine")
    ]  # fmt: skip


def _shown(value: object) -> str:
    """A dagster.yaml value as it may be printed: `{env: VAR}` shows the variable's name."""
    if isinstance(value, dict) and "env" in value:
        return f"${{{value['env']}}}"
    return str(value or "")


def _warehouse(settings: Settings) -> list[Finding]:
    import duckdb

    if not settings.warehouse.exists():
        return [
            Finding("warn", "warehouse", f"not built yet at {settings.warehouse}: the first "
                    "run builds it (or `datashare warehouse rebuild`)")
        ]  # fmt: skip
    try:
        with duckdb.connect(str(settings.warehouse), read_only=True) as con:
            views = "SELECT count(*) FROM duckdb_views() WHERE NOT internal"
            (tables,) = con.execute(views).fetchone()
    except duckdb.Error as exc:
        return [
            Finding("fail", "warehouse", f"{settings.warehouse} does not open read-only: {exc}. "
                    "`datashare warehouse rebuild` recreates it from the lake")
        ]  # fmt: skip
    return [Finding("ok", "warehouse", f"opens read-only, {tables} view(s)")]


def diagnose(settings: Settings) -> list[Finding]:
    """Every check, in the order a deployment depends on them."""
    found = _settings(settings) + _contracts() + _home(settings)
    if found[-1].level == "fail":
        return found  # nothing else can be looked at without a home
    # A home that exists gets the instance configuration these settings call for (as any
    # `datashare` command would write it), so a new server is checked as it will run.
    try:
        settings.ensure_folders()
    except OSError as exc:
        found.append(Finding("fail", "home", f"its folders cannot be made: {exc}"))
    steps: list[Callable[[], list[Finding]]] = [
        lambda: _key(settings),
        lambda: _dropzone(settings),
        lambda: _lake(settings),
        lambda: _instance(settings),
        lambda: _workers(settings),
        lambda: step_logs_findings(settings),
        lambda: _warehouse(settings),
    ]
    for step in steps:
        found += step()
    return found


def report(findings: list[Finding]) -> tuple[str, int]:
    """The findings as text, and the exit code: 1 if anything would stop a run."""
    failed = [f for f in findings if f.level == "fail"]
    warned = [f for f in findings if f.level == "warn"]
    lines = [str(f) for f in findings]
    if failed:
        lines.append(
            f"\nNot ready: {len(failed)} problem(s) would stop a run, {len(warned)} warning(s)."
        )
    else:
        lines.append(f"\nReady: nothing would stop a run; {len(warned)} warning(s).")
    return "\n".join(lines), 1 if failed else 0
