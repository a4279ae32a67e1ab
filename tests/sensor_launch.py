"""Launch the runs the `new_deliveries` sensor asks for, as Dagster's daemon would.

The real sensor is evaluated against the home's instance, and each run it requests is
executed with `dg.execute_job` and the job's own executor (one process per step), which is
what the run worker of a launched run does. The fault tests start this beside a
`datashare run` in another process: `python -m tests.sensor_launch`.
"""

from __future__ import annotations

import os
import sys

import dagster as dg

from pipelines.home.settings import load_settings
from pipelines.orchestration.definitions import build_definitions
from pipelines.orchestration.delivery_sensor import SENSOR_NAME
from pipelines.orchestration.instance import open_instance

JOB_VARIABLE = "DATASHARE_SENSOR_JOB"


def requested_job() -> dg.JobDefinition:
    """The job named in the environment (reconstructed in each step's process)."""
    return build_definitions().resolve_job_def(os.environ[JOB_VARIABLE])


def main() -> int:
    defs = build_definitions()
    instance = open_instance(load_settings())
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    context = dg.build_sensor_context(instance=instance, resources=defs.resources)
    requests = sensor(context).run_requests or []
    # Said at once, so a test can start something beside the runs it is about to launch.
    print(f"asked for {len(requests)} run(s)", flush=True)
    for request in requests:
        os.environ[JOB_VARIABLE] = request.job_name
        tags = dict(request.tags)
        if request.partition_key:
            tags["dagster/partition"] = request.partition_key
        result = dg.execute_job(dg.reconstructable(requested_job), instance=instance, tags=tags)
        print(
            f"{request.job_name} {request.partition_key}: {result.run_id} success={result.success}"
        )
    print(f"launched {len(requests)} run(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
