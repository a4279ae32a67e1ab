"""The names of the Dagster jobs, in a module that does not import Dagster: `datashare run`
names the job it runs before (and, with nothing new, without) loading the definitions."""

UNFILED_JOB = "unfiled_deliveries"  # files outside the agreed layout, recorded as rejected
TIMELINESS_JOB = "delivery_timeliness"  # the late-delivery check, daily
OVERSIGHT_JOB = "oversight"  # the oversight marts


def delivery_job_name(contract_name: str) -> str:
    """The job that takes, validates and publishes one month of a contract."""
    return f"{contract_name}_delivery"


# The code location's name, as workspace.yaml and pyproject's [tool.dagster] give it: runs
# that `datashare run` makes carry it, so the UI files them under their jobs.
CODE_LOCATION = "datashare"
DEFINITIONS_MODULE = "pipelines.orchestration.definitions"


# Dagster's tags for a run over a partition range (what `dagster job execute
# --partition-range` sets): the delivery jobs run a contract's pending months at once.
PARTITION_KEY_TAG = "dagster/partition"  # a run of one month
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
