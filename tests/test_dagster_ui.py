"""What a data engineer sees in the real Dagster webserver after `datashare demo`.

One demo home and one `dagster-webserver` process are shared by the module (and by
tests/test_browser_ui.py, on the same worker: conftest's `demo_webserver`); every assertion goes
through the webserver's GraphQL endpoint, the same API the UI's pages are built on.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.demo.estate import demo_periods
from schemas.contract import load_contracts
from tests.conftest import DEMO_MONTHS, UI_DEMO_CONTRACTS
from tests.webserver import Webserver, location_loaded

# Each runs the whole pipeline: `pytest -m 'not slow'` leaves them out.
pytestmark = pytest.mark.slow

CONTRACT = "stop_and_search"
JOB = f"{CONTRACT}_delivery"
LANDING = ["landing", CONTRACT]
VALIDATED = ["validated", CONTRACT]
CURATED = ["curated", CONTRACT]
CHECK = "contract_conformance"
FOLLOW_UP = "breaches_to_follow_up"
# Eight months of stop and search to the last closed month; the third from last arrives only
# as a spreadsheet (rejected), the second and third of the eight are published (the demo's
# first defective months are the first, fourth and seventh).
DEMO_PERIODS = demo_periods(load_contracts()[CONTRACT], DEMO_MONTHS)
REJECTED_PERIOD = DEMO_PERIODS[-3]
# The fifth from last is restated: its corrected file arrives once the months are published,
# and the demo's second `datashare run` takes it in a run of its own.
RESTATED_PERIOD = DEMO_PERIODS[-5]
FIRST, SECOND = DEMO_PERIODS[0], DEMO_PERIODS[1]

METADATA_FRAGMENT = """
fragment Meta on MetadataEntry {
  __typename
  label
  ... on IntMetadataEntry { intValue }
  ... on TextMetadataEntry { text }
  ... on MarkdownMetadataEntry { mdStr }
  ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
}
"""

ASSET_NODES_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    partitionDefinition { type fmt description }
    jobNames
  }
}
"""

CURATED_QUERY = (
    """
query Curated($key: AssetKeyInput!, $partition: String!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      partitionKeys
      latestMaterializationByPartition(partitions: [$partition]) {
        partition
        runId
        metadataEntries { ...Meta }
      }
    }
  }
}
"""
    + METADATA_FRAGMENT
)

CHECK_QUERY = """
query Check($key: AssetKeyInput!, $check: String!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      hasAssetChecks
      assetChecksOrError {
        __typename
        ... on AssetChecks { checks { name description } }
      }
    }
  }
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 100) {
    runId
    status
    partition
    evaluation { success severity partition }
  }
}
"""

CHECK_PARTITION_QUERY = """
query CheckPartition($key: AssetKeyInput!, $check: String!, $partition: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition, limit: 1) {
    runId
    status
    partition
    evaluation { success severity partition }
  }
}
"""

RUNS_QUERY = """
query Runs($job: String!) {
  runsOrError(filter: {pipelineName: $job}, limit: 50) {
    __typename
    ... on PythonError { message }
    ... on Runs {
      results {
        runId jobName status tags { key value }
        repositoryOrigin { repositoryName repositoryLocationName }
      }
    }
  }
}
"""

# What the job's own page asks for: the runs filed under the job in its code location.
JOB_RUNS_QUERY = """
query JobRuns($job: String!) {
  pipelineOrError(params: {
    pipelineName: $job, repositoryName: "__repository__", repositoryLocationName: "datashare"
  }) {
    __typename
    ... on Pipeline { runs(limit: 50) { runId } }
  }
}
"""


@pytest.fixture(scope="module")
def webserver(shared_demo: Path, demo_webserver: Webserver) -> Webserver:
    """The real `dagster-webserver` on a copy of the session's demo home (eight months of
    every contract, as `datashare demo` made it), which tests/test_browser_ui.py looks at
    too: conftest's `demo_webserver`, one per worker. Module-scoped, so that the module's
    tests are one unit of `make test`'s work and the webserver starts once for them."""
    assert CONTRACT in UI_DEMO_CONTRACTS and len(DEMO_PERIODS) == DEMO_MONTHS
    stdout = (shared_demo / "demo-stdout.txt").read_text(encoding="utf-8")
    # Every month of every contract the demo sent something for, in the demo's first pass.
    months = sum(len(demo_periods(c, DEMO_MONTHS)) for c in load_contracts().values())
    assert f"Ran {months} contract-month(s) through Dagster." in stdout, stdout
    return demo_webserver


def _asset_node(server: Webserver, path: list[str]) -> dict:
    nodes = server.graphql(ASSET_NODES_QUERY)["assetNodes"]
    by_key = {tuple(n["assetKey"]["path"]): n for n in nodes}
    assert tuple(path) in by_key, sorted(by_key)
    return by_key[tuple(path)]


def _metadata(entries: list[dict]) -> dict[str, dict]:
    return {e["label"]: e for e in entries}


def _delivery_runs(server: Webserver) -> list[dict]:
    runs = server.graphql(RUNS_QUERY, {"job": JOB})["runsOrError"]
    assert runs["__typename"] == "Runs", runs
    return runs["results"]


def _runs_by_month(server: Webserver) -> tuple[dict, dict]:
    """The contract's two delivery runs: the one over the demo's months, and the one that
    took the restated month's corrected file."""
    runs = {}
    for run in _delivery_runs(server):
        tags = {t["key"]: t["value"] for t in run["tags"]}
        # A run of one month is tagged with its partition, a run of several with a range.
        first = tags.get("dagster/asset_partition_range_start") or tags["dagster/partition"]
        runs[first] = run
    assert sorted(runs) == sorted([FIRST, RESTATED_PERIOD]), runs
    return runs[FIRST], runs[RESTATED_PERIOD]


def _run_of(server: Webserver, period: str) -> str:
    """The run that last took `period`."""
    months, correction = _runs_by_month(server)
    return (correction if period == RESTATED_PERIOD else months)["runId"]


def test_code_location_loads(webserver: Webserver) -> None:
    assert location_loaded(webserver)


def test_assets_sit_in_their_groups_with_delivery_partitions(webserver: Webserver) -> None:
    expected = {"intake": LANDING, "validation": VALIDATED, "curated": CURATED}
    for group, path in expected.items():
        node = _asset_node(webserver, path)
        assert node["groupName"] == group, node
        assert node["isPartitioned"], node
        assert node["partitionDefinition"]["type"] == "TIME_WINDOW", node
        assert node["partitionDefinition"]["fmt"] == "%Y-%m", node
        assert JOB in node["jobNames"], node
    curated = _asset_node(webserver, CURATED)
    assert curated["partitionDefinition"]["description"].startswith("Monthly"), curated


def test_curated_partition_keys_are_months_from_2019(webserver: Webserver) -> None:
    data = webserver.graphql(CURATED_QUERY, {"key": {"path": CURATED}, "partition": SECOND})
    keys = data["assetNodeOrError"]["partitionKeys"]
    assert keys[:3] == ["2019-01", "2019-02", "2019-03"], keys[:3]
    assert {FIRST, SECOND} <= set(keys)
    assert all(len(k) == 7 and k[4] == "-" for k in keys), keys


def test_curated_month_materialization_shows_rows_schema_and_preview(webserver: Webserver) -> None:
    data = webserver.graphql(CURATED_QUERY, {"key": {"path": CURATED}, "partition": SECOND})
    (latest,) = data["assetNodeOrError"]["latestMaterializationByPartition"]
    assert latest is not None, f"no materialization of curated/stop_and_search for {SECOND}"
    assert latest["partition"] == SECOND
    metadata = _metadata(latest["metadataEntries"])

    row_count = metadata["dagster/row_count"]
    assert row_count["__typename"] == "IntMetadataEntry", row_count
    assert row_count["intValue"] > 0, row_count
    with duckdb.connect(str(webserver.home / "warehouse.duckdb"), read_only=True) as con:
        (in_warehouse,) = con.execute(
            f"SELECT count(*) FROM curated.{CONTRACT} WHERE _period = '{SECOND}'"
        ).fetchone()
    assert row_count["intValue"] == in_warehouse

    preview = metadata["preview"]
    assert preview["__typename"] == "MarkdownMetadataEntry", preview
    header = preview["mdStr"].splitlines()[0]
    assert header.startswith("| type |"), header
    assert len(preview["mdStr"].splitlines()) == 2 + 10  # header, rule, ten rows

    schema = metadata["dagster/column_schema"]
    assert schema["__typename"] == "TableSchemaMetadataEntry", schema
    columns = {c["name"]: c for c in schema["schema"]["columns"]}
    contract = load_contracts()[CONTRACT]
    agreed = [c.name for c in contract.columns]
    assert list(columns) == [*agreed, "_delivery_id", "_source_row", "_period"]
    assert all(columns[name]["description"] for name in agreed), columns


def _evaluations(server: Webserver, check: str) -> dict[str, dict]:
    """The check's latest evaluation of each demo month, by month, each from the run that
    last took the month."""
    data = server.graphql(CHECK_QUERY, {"key": {"path": VALIDATED}, "check": check})
    months, correction = _runs_by_month(server)
    latest: dict[str, dict] = {}
    for execution in data["assetCheckExecutions"]:  # newest first
        assert execution["evaluation"], execution
        if execution["partition"] not in latest:
            assert execution["runId"] == _run_of(server, execution["partition"]), execution
        else:
            assert execution["runId"] == months["runId"], execution
        assert execution["partition"] == execution["evaluation"]["partition"], execution
        latest.setdefault(execution["partition"], execution["evaluation"])
    return latest


def test_conformance_check_is_red_only_for_the_month_not_published(webserver: Webserver) -> None:
    data = webserver.graphql(CHECK_QUERY, {"key": {"path": VALIDATED}, "check": CHECK})
    node = data["assetNodeOrError"]
    assert node["hasAssetChecks"]
    checks = node["assetChecksOrError"]
    assert checks["__typename"] == "AssetChecks", checks
    assert sorted(c["name"] for c in checks["checks"]) == sorted([CHECK, FOLLOW_UP])

    evaluations = _evaluations(webserver, CHECK)
    assert sorted(evaluations) == DEMO_PERIODS, sorted(evaluations)
    # A month that arrived only as a spreadsheet: rejected, nothing published, an error ...
    rejected = evaluations.pop(REJECTED_PERIOD)
    assert rejected["success"] is False and rejected["severity"] == "ERROR", rejected
    # ... and every month that published passes, defective rows or not: the engineer's
    # monitor is green where nothing is to be done.
    assert all(e["success"] for e in evaluations.values()), evaluations


def test_follow_up_check_warns_where_the_lead_has_breaches_to_raise(webserver: Webserver) -> None:
    evaluations = _evaluations(webserver, FOLLOW_UP)
    assert sorted(evaluations) == DEMO_PERIODS, sorted(evaluations)
    with duckdb.connect(str(webserver.home / "warehouse.duckdb"), read_only=True) as con:
        # The month's check stands on its published delivery, else on what was sent: a
        # first attempt replaced by a good one is not the force's to fix any more.
        serious = {
            period
            for (period,) in con.execute(
                """
                WITH judged AS (
                    SELECT period, delivery_id FROM governance.deliveries d
                    WHERE contract = $c AND (status = 'published' OR NOT EXISTS (
                        SELECT 1 FROM governance.deliveries p WHERE p.contract = d.contract
                        AND p.period = d.period AND p.status = 'published'))
                )
                SELECT DISTINCT b.period FROM governance.breaches b
                JOIN judged j ON b.period = j.period AND b.delivery_id = j.delivery_id
                WHERE b.contract = $c AND b.severity IN ('critical', 'major')
                """,
                {"c": CONTRACT},
            ).fetchall()
        }
    assert serious and set(DEMO_PERIODS) - serious, serious  # some months clean, some not
    for period, evaluation in evaluations.items():
        # Only ever a warning: a lead's follow-up, never an outage.
        assert evaluation["severity"] == "WARN", (period, evaluation)
        assert evaluation["success"] is (period not in serious), (period, evaluation)


def test_conformance_check_for_the_rejected_month_shows_failed(webserver: Webserver) -> None:
    variables = {"key": {"path": VALIDATED}, "check": CHECK, "partition": REJECTED_PERIOD}
    (latest,) = webserver.graphql(CHECK_PARTITION_QUERY, variables)["assetCheckExecutions"]
    assert latest["partition"] == REJECTED_PERIOD, latest
    assert latest["status"] == "FAILED", latest
    assert latest["evaluation"] is not None, latest
    assert latest["evaluation"]["success"] is False, latest
    assert latest["evaluation"]["partition"] == REJECTED_PERIOD, latest


def test_one_delivery_run_took_every_month_and_is_in_the_run_list(webserver: Webserver) -> None:
    # The demo's eight months in one run of the contract's job, over their partition range
    # (the restated month's corrected file, sent after, in a second run of its own).
    run, _correction = _runs_by_month(webserver)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/asset_partition_range_start"] == DEMO_PERIODS[0], tags
    assert tags["dagster/asset_partition_range_end"] == DEMO_PERIODS[-1], tags
    assert run["jobName"] == JOB, run
    # Filed under the code location, as a run launched from the UI is.
    assert run["repositoryOrigin"] == {
        "repositoryName": "__repository__",
        "repositoryLocationName": "datashare",
    }, run
    # A rejected delivery is an outcome the run records (its check fails), not a crash:
    # the run succeeds, and the month's check says what became of it.
    assert run["status"] == "SUCCESS", run


VALIDATED_MONTHS_QUERY = (
    """
query Months($key: AssetKeyInput!, $partitions: [String!]!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      latestMaterializationByPartition(partitions: $partitions) {
        partition
        runId
        metadataEntries { ...Meta }
      }
    }
  }
}
"""
    + METADATA_FRAGMENT
)


def test_each_month_of_the_run_has_its_own_materialization(webserver: Webserver) -> None:
    """One run for the months (a second for the restated one), but each month materialized
    on its own, with its own rows and outcome (as the warehouse has them); the month with
    nothing published has no curated month."""
    variables = {"key": {"path": VALIDATED}, "partitions": DEMO_PERIODS}
    node = webserver.graphql(VALIDATED_MONTHS_QUERY, variables)["assetNodeOrError"]
    months = {m["partition"]: m for m in node["latestMaterializationByPartition"]}
    assert sorted(months) == DEMO_PERIODS, sorted(months)
    with duckdb.connect(str(webserver.home / "warehouse.duckdb"), read_only=True) as con:
        published = dict(
            con.execute(f"SELECT _period, count(*) FROM curated.{CONTRACT} GROUP BY 1").fetchall()
        )
    for period, month in months.items():
        assert month["runId"] == _run_of(webserver, period), month
        metadata = _metadata(month["metadataEntries"])
        outcome = metadata["outcome"]["text"]
        if period == REJECTED_PERIOD:
            assert outcome == "rejected: not published", metadata
        else:
            assert outcome.startswith("published"), (period, outcome)
            delivered = metadata["rows_delivered"]["intValue"]
            passed = metadata["rows_passed"]["intValue"]
            assert delivered >= published[period] > 0, (period, delivered, published)
            assert passed >= published[period], (period, passed, published)
    assert REJECTED_PERIOD not in published
    variables = {"key": {"path": CURATED}, "partitions": DEMO_PERIODS}
    node = webserver.graphql(VALIDATED_MONTHS_QUERY, variables)["assetNodeOrError"]
    curated = {m["partition"]: m for m in node["latestMaterializationByPartition"] if m}
    assert sorted(curated) == sorted(published), sorted(curated)
    for period, month in curated.items():
        rows = _metadata(month["metadataEntries"])["dagster/row_count"]["intValue"]
        assert rows == published[period], (period, rows, published[period])


def test_the_job_page_lists_the_runs_datashare_made(webserver: Webserver) -> None:
    """The job's page (and the Overview timeline) list only runs filed under the code
    location; the runs `datashare demo` made must be among them."""
    job = webserver.graphql(JOB_RUNS_QUERY, {"job": JOB})["pipelineOrError"]
    assert job["__typename"] == "Pipeline", job
    listed = {r["runId"] for r in job["runs"]}
    made = {r["runId"] for r in _delivery_runs(webserver)}
    assert made and made <= listed, (made, listed)


AUTOMATION_QUERY = """
{
  repositoryOrError(repositorySelector: {
    repositoryName: "__repository__", repositoryLocationName: "datashare"
  }) {
    __typename
    ... on Repository {
      schedules { name scheduleState { status } }
      sensors { name sensorState { status } }
    }
  }
}
"""


def test_the_sensor_and_schedules_are_on(webserver: Webserver) -> None:
    """What the README promises runs by itself: taking new files, the daily late-delivery
    check and the daily retention erasure, all on as soon as the daemon runs."""
    repository = webserver.graphql(AUTOMATION_QUERY)["repositoryOrError"]
    assert repository["__typename"] == "Repository", repository
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    assert "retention_job_schedule" in schedules, schedules
    assert set(schedules.values()) == {"RUNNING"}, schedules
    assert "new_deliveries" in sensors and set(sensors.values()) == {"RUNNING"}, sensors
