"""Dagster's DefaultRunLauncher, with the worker health check that run monitoring asks for.

The DefaultRunLauncher starts each run as a process of the code server that the daemon
runs; a run worker that dies while that code server lives is failed by the code server
itself. But when the daemon dies (killed, the machine restarted, `systemctl stop`), its
code server and every run worker die with it, and each run stays STARTED in the instance
for ever: the DefaultRunLauncher cannot tell Dagster's run monitoring whether a worker is
alive, so nothing fails the run, and it keeps its contract-month's place in the run queue.

`LocalRunLauncher` answers run monitoring's question by asking the code server that
started the run (the address Dagster records on the run) whether it is still running it:
a server that is gone, or that no longer has the run, means the worker is gone, and run
monitoring fails the run; run retries then run it again from where it stopped. Nothing
else changes: runs are launched exactly as the DefaultRunLauncher launches them.
"""

from __future__ import annotations

import json

import dagster as dg
import grpc
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._grpc.client import DagsterGrpcClient
from dagster._grpc.types import GetCurrentRunsResult
from dagster._serdes import deserialize_value


class LocalRunLauncher(dg.DefaultRunLauncher):
    """Launches runs on the daemon's code server, and tells run monitoring when a run's
    worker has gone with that server."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """RUNNING while the code server that started `run` still runs it; FAILED once
        that server is gone or has let it go."""
        raw = run.tags.get(GRPC_INFO_TAG)
        if not raw:
            # Not launched through a code server (`datashare run` executes its runs in its
            # own process): nothing to ask, so it is left to the run's own process.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "not launched by a run launcher")
        info = json.loads(raw)
        client = DagsterGrpcClient(
            port=info.get("port"),
            socket=info.get("socket"),
            host=info.get("host", "localhost"),
            use_ssl=bool(info.get("use_ssl", False)),
        )
        try:
            current = deserialize_value(client.get_current_runs(), GetCurrentRunsResult)
        except DagsterUserCodeUnreachableError as exc:
            cause = exc.__cause__
            if isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.UNAVAILABLE:
                return CheckRunHealthResult(
                    WorkerStatus.FAILED,
                    f"the code server that started it ({_address(info)}) is gone, and its "
                    "run worker with it",
                )
            # Slow or busy is not gone: ask again at the next poll.
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"could not ask: {exc}", True)
        if run.run_id in current.current_runs:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the code server at {_address(info)} is no longer running it",
        )


def _address(info: dict) -> str:
    if info.get("socket"):
        return f"socket {info['socket']}"
    return f"{info.get('host', 'localhost')}:{info.get('port')}"
