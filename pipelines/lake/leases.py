"""Leases: one run at a time works on a contract-month, however the runs were started.

Two `datashare run` at once, or a run the sensor launched beside one started by hand, must
not both take, validate and publish the same month: each delivery is validated once and
reported by the run that did it. So intake, validation and publication each hold the
month's lease while they work, and `datashare run` holds it around the whole month. A run
that finds the lease held waits for it (up to `DATASHARE_LEASE_WAIT_SECONDS`, default 30
minutes), then finds the work done; if it still cannot have it, it says who holds it.

The lake keeps the lease (`Lake.try_lease`): a `flock` in a folder lake, which the kernel
releases when the holder's process ends; a conditional-write object in an S3 lake, renewed
every `HEARTBEAT` seconds and taken over once it has not been renewed for `TTL` seconds,
or at once when its holder was a process on this machine that has ended.

Within one process the lease is re-entrant, so the steps of a `datashare run` (executed
in that process) pass through the lease it already holds.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from pipelines.lake.register import holding
from pipelines.lake.store import Lake

DEFAULT_WAIT_SECONDS = 1800.0
TTL = timedelta(seconds=120)
HEARTBEAT = 30.0

_HOST = socket.gethostname()
_held: dict[tuple[str, str], int] = {}  # (lake, lease) held by this process: depth
_held_lock = threading.Lock()


class LeaseBusy(RuntimeError):
    """Another run held the lease for longer than this one would wait."""


def wait_seconds() -> float:
    """`DATASHARE_LEASE_WAIT_SECONDS`, or the default."""
    raw = os.environ.get("DATASHARE_LEASE_WAIT_SECONDS", "").strip()
    try:
        return max(float(raw), 0.0) if raw else DEFAULT_WAIT_SECONDS
    except ValueError:
        return DEFAULT_WAIT_SECONDS


def _holder(run: str) -> dict:
    now = datetime.now(UTC)
    return {
        "host": _HOST,
        "pid": os.getpid(),
        "token": uuid.uuid4().hex,
        "run": run,
        "since": now.isoformat(timespec="seconds"),
        "expires": (now + TTL).isoformat(timespec="seconds"),
    }


def _stale(holder: dict) -> bool:
    """A holder that stopped renewing, or a process on this machine that has ended."""
    try:
        if datetime.fromisoformat(holder["expires"]) < datetime.now(UTC):
            return True
    except (KeyError, TypeError, ValueError):
        return True  # unreadable: not a lease anyone is keeping
    if holder.get("host") == _HOST:
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, TypeError, ValueError):
            return False
    return False


def describe(holder: dict | None) -> str:
    """Who holds a lease, in words."""
    if not holder:
        return "another run"
    return (
        f"{holder.get('run') or 'another run'} (process {holder.get('pid')} on "
        f"{holder.get('host')}, since {holder.get('since')})"
    )


@contextmanager
def month_lease(
    lake: Lake,
    contract: str,
    period: str | None,
    run: str = "datashare run",
    wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the lease of one contract-month (or of `contract` alone) while the block runs.

    Waits up to `wait` seconds (default `wait_seconds()`) for another holder, telling
    `on_wait` once; raises LeaseBusy if it is still held then.
    """
    name = f"{contract}={period}" if period else contract
    key = (lake.url, name)
    with _held_lock:
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_lock:
                _held[key] -= 1
        return

    holder = _holder(run)
    deadline = time.monotonic() + (wait_seconds() if wait is None else wait)
    pause, told = 0.1, False
    while (handle := lake.try_lease(name, holder, _stale)) is None:
        busy = (
            f"{contract} {period or ''}".strip()
            + f" is being processed by {describe(lake.lease_holder(name))}"
        )
        if time.monotonic() >= deadline:
            raise LeaseBusy(f"{busy}; this run left it to that one.")
        if on_wait and not told:
            on_wait(f"{busy}; waiting for it to finish.")
            told = True
        time.sleep(pause)
        pause = min(pause * 2, 2.0)
    with _held_lock:
        _held[key] = 1
    stop = threading.Event()
    beat = threading.Thread(target=_renew, args=(lake, handle, holder, stop), daemon=True)
    beat.start()
    try:
        # Held: no other run changes this month now, so the contract's register reads
        # share one listing, made from here on (`register.holding`).
        with holding(lake, contract):
            yield
    finally:
        stop.set()
        beat.join()
        with _held_lock:
            del _held[key]
        lake.release_lease(handle)


def _renew(lake: Lake, handle: object, holder: dict, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT):
        holder["expires"] = (datetime.now(UTC) + TTL).isoformat(timespec="seconds")
        try:
            if not lake.renew_lease(handle, holder):
                return  # taken over as stale: the work it guards is idempotent
        except Exception:  # a lost connection: the next beat tries again
            continue
