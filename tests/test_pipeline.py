"""The pipeline end to end: Dagster assets, `datashare run` and `datashare demo`."""

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from assets.curated import build_curated_asset
from assets.intake import build_intake_asset
from assets.resources import (
    DropZoneResource,
    LakeResource,
    PseudonymKeyResource,
    WarehouseResource,
)
from assets.validation import build_validation_asset
from pipelines.cli.main import REPO_ROOT, main
from pipelines.lake.store import open_lake
from pipelines.orchestration.definitions import build_definitions
from pipelines.warehouse.catalog import build_warehouse
from schemas.contract import load_contracts
from tests.catalog_reading import catalog_as_read
from tests.conftest import (
    DEMO_ARGS,
    DEMO_MONTHS,
    SharedGreatExpectations,
    build_template,
    drop,
    make_home,
    restore_template,
)

# Every run in these tests uses the worker's great-expectations helper (tests/conftest.py),
# rather than importing great-expectations again in a process of its own.
pytestmark = pytest.mark.usefixtures("ge_helper")


def _query(settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def _run() -> str:
    """`datashare run`, in this process, on the home the environment names: what it printed
    (for a home built once for a module, where capsys is not to hand)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run"]) == 0
    return out.getvalue()


def test_definitions_load_every_contract_with_its_check_and_job(home):
    defs = build_definitions(home)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "landing/stop_and_search",
        "validated/stop_and_search",
        "curated/stop_and_search",
    } <= keys
    checks = {str(k) for k in graph.asset_check_keys}
    assert any("contract_conformance" in k for k in checks)
    job = defs.resolve_job_def("stop_and_search_delivery")
    assert "2022-06" in job.partitions_def.get_partition_keys()
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())
    assert (
        workspace["load_from"][0]["python_module"]["module_name"]
        == "pipelines.orchestration.definitions"
    )


def test_materialize_the_graph_into_a_tmp_home(home, stop_and_search, real_stop_and_search):
    drop(home, "stop_and_search", "2022-06", real_stop_and_search)
    result = dg.materialize(
        [
            build_intake_asset(stop_and_search),
            build_validation_asset(stop_and_search),
            build_curated_asset(stop_and_search),
        ],
        partition_key="2022-06",
        instance=dg.DagsterInstance.get(),
        resources={
            "dropzone": DropZoneResource(root=str(home.dropzone), settle_seconds=0),
            "lake": LakeResource(root=str(home.lake)),
            "warehouse": WarehouseResource(path=str(home.warehouse)),
            "pseudonym_key": PseudonymKeyResource(home=str(home.home)),
        },
    )
    assert result.success
    curated = result.asset_materializations_for_node("curated__stop_and_search")[0]
    assert curated.metadata["dagster/row_count"].value == 16_332
    assert "| type |" in curated.metadata["preview"].value
    columns = [c.name for c in curated.metadata["dagster/column_schema"].schema.columns]
    assert columns[:2] == ["type", "date"] and columns[-3:] == [
        "_delivery_id",
        "_source_row",
        "_period",
    ]
    # The real file breaks only a minor completeness rule: published, nothing to raise.
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert sorted(checks) == ["breaches_to_follow_up", "contract_conformance"]
    assert all(c.passed for c in checks.values())
    assert checks["contract_conformance"].metadata["minor_breaches"].value == 1
    assert _query(home, "SELECT count(*) FROM curated.stop_and_search") == [(16_332,)]


def _good_and_bad(home, june):
    """June 2022's real file, and a PDF for July, June's rows sent as September's and a file
    outside the layout, taken by one run: what the run printed."""
    drop(home, "stop_and_search", "2022-06", june)
    bad = home.dropzone / "stop_and_search" / "2022-07" / "2022-07-stop-and-search.csv"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"%PDF-1.7\n" + bytes(range(256)))
    # June's rows sent as September's: every row falls outside the month.
    lines = june.read_text(encoding="utf-8").splitlines(keepends=True)
    wrong_month = home.dropzone / "stop_and_search" / "2022-09" / "2022-09.csv"
    wrong_month.parent.mkdir(parents=True)
    wrong_month.write_text("".join(lines[:11]), encoding="utf-8")
    stray = home.dropzone / "stop_and_search" / "june.csv"
    stray.write_text("Type\n")

    return _run()


@pytest.fixture(scope="module")
def good_and_bad(
    tmp_path_factory, real_stop_and_search, ge_helper_process: SharedGreatExpectations
):
    """The home `_good_and_bad` built, once for the module (the first run of both tests
    below, a real month's whole run): the template's folder and what the run printed."""
    with ge_helper_process.installed():
        return build_template(
            tmp_path_factory, "good-and-bad", lambda home: _good_and_bad(home, real_stop_and_search)
        )


@pytest.mark.slow
def test_run_takes_good_and_bad_deliveries_and_goes_on(good_and_bad, monkeypatch, capsys):
    folder, out = good_and_bad
    home = restore_template(folder, monkeypatch)
    bad = home.dropzone / "stop_and_search" / "2022-07" / "2022-07-stop-and-search.csv"
    assert "rows published:     16,332" in out
    # The PDF, june.csv outside the layout (recorded, kept), and September's file, from
    # which nothing can be published: held back, and the month still counts as undelivered.
    assert "3 critical" in out
    assert "stop_and_search/june.csv is not in the agreed layout" in out

    deliveries = _query(
        home, "SELECT period, status, reason FROM governance.deliveries ORDER BY period"
    )
    assert deliveries[0][:2] == ("2022-06", "published")
    assert deliveries[1][:2] == ("2022-07", "rejected")
    assert "PDF document" in deliveries[1][2]
    assert deliveries[2][:2] == ("2022-09", "held")
    rows = _query(
        home,
        "SELECT count(*), count(DISTINCT _source_row), min(_source_row), max(_source_row) FROM ("
        " SELECT _source_row FROM curated.stop_and_search WHERE _period = '2022-06'"
        " UNION ALL SELECT _source_row FROM governance.quarantine WHERE _period = '2022-06')",
    )
    assert rows == [(16_332, 16_332, 1, 16_332)]
    # Analysts see quarantined rows with classified fields withheld.
    records = [json.loads(r) for (r,) in _query(home, "SELECT record FROM governance.quarantine")]
    assert len(records) == 10
    assert all(r["Self-defined ethnicity"] == "[withheld]" for r in records)
    assert all(r["Type"] != "[withheld]" for r in records)
    critical = _query(
        home,
        "SELECT contract, rule FROM governance.breaches WHERE severity = 'critical' ORDER BY 1, 2",
    )
    assert critical == [
        ("stop_and_search", "delivery.nothing_usable"),
        ("stop_and_search", "file.format"),
        ("unfiled", "file.layout"),
    ]
    # The unreadable file's bytes are kept in the lake.
    (landing,) = _query(
        home, "SELECT landing_path FROM governance.deliveries WHERE period = '2022-07'"
    )
    assert (home.lake / landing[0]).read_bytes() == bad.read_bytes()

    # A second run finds nothing new and changes nothing.
    before = sorted(p.name for p in home.lake.rglob("*"))
    assert main(["run"]) == 0
    assert "Nothing new in the drop zone" in capsys.readouterr().out
    assert sorted(p.name for p in home.lake.rglob("*")) == before


@pytest.mark.slow
def test_duplicate_is_not_processed_and_restatement_replaces_the_month(
    good_and_bad, real_stop_and_search, tmp_path, monkeypatch, capsys
):
    # After June's first run (beside the other months' files, none of them June's).
    home = restore_template(good_and_bad[0], monkeypatch)
    drop(home, "stop_and_search", "2022-06", real_stop_and_search, name="resent.csv")
    assert main(["run"]) == 0
    assert "1 duplicate(s)" in capsys.readouterr().out
    assert _query(home, "SELECT count(*) FROM curated.stop_and_search") == [(16_332,)]

    restated = tmp_path / "restated.csv"
    lines = real_stop_and_search.read_text(encoding="utf-8").splitlines(keepends=True)
    # The restated month has 100 rows, one of them with no Type (quarantined).
    blank_type = "," + lines[1].split(",", 1)[1]
    restated.write_text("".join([lines[0], blank_type, *lines[2:101]]), encoding="utf-8")
    drop(home, "stop_and_search", "2022-06", restated)
    os.utime(home.dropzone / "stop_and_search" / "2022-06" / "restated.csv", None)
    assert main(["run"]) == 0
    assert _query(home, "SELECT count(*) FROM curated.stop_and_search") == [(99,)]
    statuses = dict(
        _query(home, "SELECT source_path, status FROM governance.deliveries WHERE period='2022-06'")
    )
    assert statuses["stop_and_search/2022-06/restated.csv"] == "published"
    assert statuses[f"stop_and_search/2022-06/{real_stop_and_search.name}"] == "superseded"
    assert statuses["stop_and_search/2022-06/resent.csv"] == "duplicate"
    current = _query(home, "SELECT DISTINCT _delivery_id FROM curated.stop_and_search")
    quarantined = _query(
        home, "SELECT DISTINCT _delivery_id FROM governance.quarantine WHERE _period = '2022-06'"
    )
    # Quarantine shows the restated delivery's held-back row, not the superseded month's
    # (September's held rows are there too, under their own month).
    assert len(current) == 1 and quarantined == current


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def summary_figures(out: str) -> dict[str, int]:
    """Every figure `datashare run` (or `demo`) printed, by what it counts."""
    figures: dict[str, int] = {}
    new = re.search(r"Demo deliveries in .*?: (\d+) new, (\d+) already there", out)
    if new:
        figures["files in the drop zone"] = int(new.group(1)) + int(new.group(2))
    taken = re.search(r"files taken:\s+(\d+) \((.*)\)", out)
    figures["files"] = int(taken.group(1))
    for count, status in re.findall(
        r"(\d+) (published|superseded|held|rejected|duplicate)", taken.group(2)
    ):
        figures[status] = int(count)
    figures["rows published"] = _number(re.search(r"rows published:\s+([\d,]+)", out).group(1))
    quarantined = re.search(r"rows quarantined:\s+([\d,]+)(?: \(and ([\d,]+))?", out)
    figures["rows quarantined"] = _number(quarantined.group(1))
    figures["rows quarantined, superseded"] = _number(quarantined.group(2) or "0")
    breaches = re.search(
        r"breaches raised:\s+([\d,]+) \(([\d,]+) critical, ([\d,]+) major, ([\d,]+) minor", out
    )
    for name, value in zip(
        ("breaches", "critical", "major", "minor"), breaches.groups(), strict=True
    ):
        figures[name] = _number(value)
    late = re.search(r"Late deliveries: (\d+) period", out)
    figures["late"] = int(late.group(1)) if late else 0
    for table, rows, months in re.findall(r"curated\.(\w+): ([\d,]+) rows over (\d+) month", out):
        figures[f"curated.{table}"] = _number(rows)
        figures[f"curated.{table} months"] = int(months)
    for table, rows in re.findall(r"governance\.(\w+): ([\d,]+) rows", out):
        figures[f"governance.{table}"] = _number(rows)
    return figures


def warehouse_figures(settings, names: list[str]) -> dict[str, int]:
    """The same figures, each from a query of the warehouse (on a home the run started)."""
    # One connection for the forty queries: opening the demo's warehouse (its catalog of
    # every contract's views) cost as much as most of the queries.
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        one = lambda sql: con.execute(sql).fetchall()[0][0] or 0  # noqa: E731
        figures = {
            "files in the drop zone": one("SELECT count(*) FROM governance.deliveries"),
            "files": one("SELECT count(*) FROM governance.deliveries"),
            "rows published": one(
                "SELECT sum(rows_curated) FROM governance.deliveries WHERE status = 'published'"
            ),
            "rows quarantined": one("SELECT count(*) FROM governance.quarantine"),
            "rows quarantined, superseded": one(
                "SELECT (SELECT count(*) FROM governance.quarantine_history) - "
                "(SELECT count(*) FROM governance.quarantine)"
            ),
            "breaches": one(
                "SELECT count(*) FROM governance.breaches WHERE rule <> 'delivery.late'"
            ),
            "late": one("SELECT count(*) FROM governance.breaches WHERE rule = 'delivery.late'"),
        }
        for status in ("published", "superseded", "held", "rejected", "duplicate"):
            figures[status] = one(
                f"SELECT count(*) FROM governance.deliveries WHERE status = '{status}'"
            )
        for severity in ("critical", "major", "minor"):
            figures[severity] = one(
                "SELECT count(*) FROM governance.breaches "
                f"WHERE rule <> 'delivery.late' AND severity = '{severity}'"
            )
        for name in names:
            figures[f"curated.{name}"] = one(f"SELECT count(*) FROM curated.{name}")
            figures[f"curated.{name} months"] = one(
                f"SELECT count(DISTINCT _period) FROM curated.{name}"
            )
        for table in ("deliveries", "quarantine", "breaches"):
            figures[f"governance.{table}"] = one(f"SELECT count(*) FROM governance.{table}")
        return figures


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_every_figure_it_prints_is_the_warehouses(
    home, shared_demo, capsys
):
    """The session's `datashare demo` (every contract for eight months, tests/conftest.py,
    run once for every module that looks at a demo home): what it printed is what its
    warehouse holds; then the demo again, in this test's copy of the home."""
    out = (shared_demo / "demo-stdout.txt").read_text(encoding="utf-8")
    shutil.copytree(shared_demo / "home", home.home, dirs_exist_ok=True)
    demo = ["demo", *DEMO_ARGS]
    # First the months. Stop and search: a duplicate, a renamed column then its correction,
    # a spreadsheet; use of force: a manifest that disagrees with its file.
    months, then, correction = out.partition("Then the force sends 1 corrected file(s)")
    assert then, out
    assert "files taken:        69 (65 published, 0 superseded, 1 held back" in months
    assert "2 rejected as unreadable, off-contract or not read, 1 duplicate(s)" in months
    # Then a stop-and-search month's corrected file, in a second pass: a restatement (minor,
    # naming both files), not a second file for the month.
    assert "files taken:        1 (1 published, 0 superseded, 0 held back" in correction
    assert "; and 1 file(s) taken by an earlier run superseded by this one's" in correction
    ((severity, detail),) = _query(
        home, "SELECT severity, detail FROM governance.breaches WHERE rule = 'delivery.restated'"
    )
    assert severity == "minor" and detail.startswith("restated-") and "(300 rows)" in detail
    assert not _query(
        home, "SELECT * FROM governance.breaches WHERE rule = 'delivery.multiple_files'"
    )
    assert "curated.census_2021_population: 48 rows" in correction
    assert "Oversight pack: " in correction
    assert (home.home / "reports" / "oversight-pack.html").exists()
    first, second = summary_figures(months), summary_figures(correction)
    names = [
        k.removeprefix("curated.") for k in second if k.startswith("curated.") and " " not in k
    ]
    expected = warehouse_figures(home, names)
    # What the warehouse holds is what the second pass printed ...
    assert {k: v for k, v in second.items() if k.startswith(("curated.", "governance."))} == {
        k: v for k, v in expected.items() if k.startswith(("curated.", "governance."))
    }
    assert len(names) == 10 and second["late"] == expected["late"] == 1
    # ... and what the two passes took adds up to it: the month's first file, published by
    # the first pass, is said apart by the second, which superseded it.
    replaced = 1
    assert first["files in the drop zone"] + 1 == expected["files in the drop zone"]
    assert first["files"] + second["files"] == expected["files"]
    assert first["published"] + second["published"] - replaced == expected["published"]
    assert first["superseded"] + second["superseded"] + replaced == expected["superseded"]
    for key in ("held", "rejected", "duplicate", "breaches"):
        assert first[key] + second[key] == expected[key], key
    for key in ("critical", "major", "minor", "rows quarantined, superseded"):
        assert first[key] + second[key] == expected[key], key
    # The replaced month's rows (300 delivered, less any quarantined: in the eight-month demo
    # it is a defective month) leave the published figure as the corrected file's come in.
    ((replaced_rows,),) = _query(
        home,
        "SELECT rows_delivered - rows_quarantined FROM governance.deliveries "
        "WHERE status = 'superseded'",
    )
    assert 0 < replaced_rows <= 300
    assert (
        first["rows published"] + second["rows published"] - replaced_rows
        == expected["rows published"]
    )
    assert (
        first["rows quarantined"]
        - second["rows quarantined, superseded"]
        + second["rows quarantined"]
        == expected["rows quarantined"]
    )
    curated, quarantined = _query(
        home,
        "SELECT (SELECT count(*) FROM curated.stop_and_search),"
        " (SELECT count(*) FROM governance.quarantine WHERE contract = 'stop_and_search')",
    )[0]
    assert curated + quarantined == (DEMO_MONTHS - 1) * 300  # all but the spreadsheet's month
    assert _query(home, "SELECT count(*) > 0 FROM oversight.stop_search_disproportionality")[0][0]

    assert main(demo) == 0
    again = capsys.readouterr().out
    assert "0 new, 69 already there (and 1 manifest(s) beside them)" in again
    assert "corrected file" not in again
    assert "Nothing new in the drop zone" in again and "(70 file(s) there" in again


def test_home_defaults_to_dot_datashare_in_the_current_folder(tmp_path, monkeypatch):
    from pipelines.home.settings import load_settings

    monkeypatch.delenv("DATASHARE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.home == Path(tmp_path / ".datashare").resolve()
    assert settings.warehouse.parent == settings.home


@pytest.mark.slow
def test_a_month_with_half_the_usual_rows_is_a_volume_breach_with_data_docs(
    a_fifth_month, monkeypatch
):
    # After a first run that published three months of stop and search, 300 rows each (see
    # `_three_contracts`), a month of 150 (`a_fifth_month`).
    home = _restore_fifth_month(a_fifth_month, monkeypatch)
    (detail,) = _query(
        home,
        "SELECT detail FROM governance.breaches WHERE rule = 'dataset.volume' "
        "AND period = '2025-05' AND severity = 'major'",
    )[0]
    assert "150 rows" in detail
    pages = list(
        (home.lake / "docs" / "contract=stop_and_search" / "period=2025-05").rglob("*.html")
    )
    assert pages and any("150" in p.read_text(errors="ignore") for p in pages)


def test_one_run_takes_a_contracts_months_and_a_held_month_blocks_none_of_the_others(
    three_contracts, monkeypatch
):
    # Stop and search's four months, February's held back (see `_three_contracts`).
    months = ["2025-01", "2025-02", "2025-03", "2025-04"]
    home = restore_template(three_contracts[0], monkeypatch)

    instance = dg.DagsterInstance.get()
    (run,) = instance.get_runs(dg.RunsFilter(job_name="stop_and_search_delivery"))
    assert run.tags["dagster/asset_partition_range_start"] == "2025-01"
    assert run.tags["dagster/asset_partition_range_end"] == "2025-04"
    # Filed under the code location, as the UI's Overview timeline and job page list runs.
    assert run.remote_job_origin.location_name == "datashare"
    assert run.remote_job_origin.repository_origin.repository_name == "__repository__"

    def latest(prefix: str) -> dict[str, dg.AssetMaterialization]:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey([prefix, "stop_and_search"])), limit=50
        ).records
        found: dict[str, dg.AssetMaterialization] = {}
        for r in records:  # newest first
            assert r.run_id == run.run_id
            found.setdefault(r.partition_key, r.asset_materialization)
        return found

    assert sorted(latest("landing")) == months
    validated = latest("validated")
    outcomes = {p: m.metadata["outcome"].value for p, m in validated.items()}
    assert outcomes == {
        "2025-01": "published",
        "2025-02": "held back: not published",
        "2025-03": "published",
        "2025-04": "published",
    }
    assert all(m.metadata["dagster/row_count"].value == 300 for m in validated.values())
    # Each month's checks, on its own: February red, the others green.
    key = dg.AssetCheckKey(dg.AssetKey(["validated", "stop_and_search"]), "contract_conformance")
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    passed = {r.partition: r.event.dagster_event.event_specific_data.passed for r in records}
    assert passed == {"2025-01": True, "2025-02": False, "2025-03": True, "2025-04": True}
    # The held month has no curated month; the ones either side of it are published whole.
    curated = latest("curated")
    assert sorted(curated) == ["2025-01", "2025-03", "2025-04"]
    assert all(m.metadata["dagster/row_count"].value == 300 for m in curated.values())
    assert _query(
        home, "SELECT _period, count(*) FROM curated.stop_and_search GROUP BY 1 ORDER BY 1"
    ) == [("2025-01", 300), ("2025-03", 300), ("2025-04", 300)]


def _three_contracts(home) -> str:
    """Stop and search for January to April 2025 (300 rows, no defect), February's manifest
    disagreeing with its file; use of force and complaints for January and February (200
    rows, no defect); all taken by one run: what the run printed."""
    from pipelines.demo.synthetic import write_delivery

    contracts = load_contracts()
    for i, period in enumerate(["2025-01", "2025-02", "2025-03", "2025-04"]):
        path = home.dropzone / "stop_and_search" / period / "s.csv"
        write_delivery(contracts["stop_and_search"], period, path, rows=300, seed=i, defect_rate=0)
    # February's manifest disagrees with its file: held back, not published.
    held = home.dropzone / "stop_and_search" / "2025-02" / "s.csv"
    sha = hashlib.sha256(held.read_bytes()).hexdigest()
    manifest = held.with_name("s.csv.manifest.json")
    manifest.write_text(json.dumps({"rows": 312, "sha256": sha}))
    for name in ("use_of_force", "complaints"):
        for i, period in enumerate(["2025-01", "2025-02"]):
            path = home.dropzone / name / period / f"{name}.csv"
            write_delivery(contracts[name], period, path, rows=200, seed=i, defect_rate=0)
    return _run()


@pytest.fixture(scope="module")
def three_contracts(tmp_path_factory, ge_helper_process: SharedGreatExpectations):
    """The home `_three_contracts` built, once for the module (three contracts side by side
    in one run, a held month among them), which the five tests reading it or going on from
    it share (it was three homes, three whole first runs): the template's folder and what
    the run printed. Its run uses the worker's great-expectations helper, not one of its own."""
    with ge_helper_process.installed():
        return build_template(tmp_path_factory, "three-contracts", _three_contracts)


@dataclass(frozen=True)
class FifthMonth:
    """What `a_fifth_month`'s run left and what was seen around it."""

    folder: Path  # three_contracts' folder; the home after the run is kept in FIFTH
    runs_before: frozenset[str]  # Dagster runs on record before it
    warehouse_before: tuple[int, int]  # the warehouse file's inode and mtime before it
    warehouse_after: tuple[int, int]


FIFTH = "fifth-month"


@pytest.fixture(scope="module")
def a_fifth_month(three_contracts, stop_and_search, ge_helper_process) -> FifthMonth:
    """After `_three_contracts`' first run, May 2025 of stop and search with 150 rows (half
    the usual 300) taken by a second run: one run that the volume test and the new-month
    test each read (it was a run each). The home after it is kept beside the template's."""
    from pipelines.demo.synthetic import write_delivery

    folder = three_contracts[0]
    with pytest.MonkeyPatch.context() as patch, ge_helper_process.installed():
        home = restore_template(folder, patch)
        before = frozenset(r.run_id for r in dg.DagsterInstance.get().get_runs())
        path = home.dropzone / "stop_and_search" / "2025-05" / "d.csv"
        write_delivery(stop_and_search, "2025-05", path, rows=150, seed=9, defect_rate=0)
        stat = home.warehouse.stat()
        _run()
        after = home.warehouse.stat()
    shutil.copytree(folder / "live" / "home", folder / FIFTH, symlinks=True)
    return FifthMonth(
        folder,
        before,
        (stat.st_ino, stat.st_mtime_ns),
        (after.st_ino, after.st_mtime_ns),
    )


def _restore_fifth_month(fifth: FifthMonth, monkeypatch: pytest.MonkeyPatch):
    """`a_fifth_month`'s home, put back at the path it was made at, as this test's own."""
    live = fifth.folder / "live"
    shutil.rmtree(live / "home", ignore_errors=True)
    shutil.copytree(fifth.folder / FIFTH, live / "home", symlinks=True)
    return make_home(live, monkeypatch)


def test_contracts_run_side_by_side_each_in_one_run_of_its_months(three_contracts, monkeypatch):
    folder, out = three_contracts
    home = restore_template(folder, monkeypatch)
    # Two workers (the machine's cores, the run queue's limit), one run per contract.
    assert "Running 8 contract-month(s) through Dagster, 2 contracts at a time:" in out
    assert "Ran 8 contract-month(s) through Dagster." in out
    assert out.count("2 period(s) through Dagster in") == 2
    assert out.count("4 period(s) through Dagster in") == 1
    # Each worker closed its Dagster databases before it ended (without Python's teardown,
    # pending_runs), and so did the run: no WAL left beside one, every run recorded whole.
    assert sorted(p.name for p in (home.dagster_home / "history").rglob("*-wal")) == []
    instance = dg.DagsterInstance.get()
    runs = [r for r in instance.get_runs() if r.job_name.endswith("_delivery")]
    assert sorted(r.job_name for r in runs) == [
        "complaints_delivery",
        "stop_and_search_delivery",
        "use_of_force_delivery",
    ]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert all(r.remote_job_origin.location_name == "datashare" for r in runs)
    for name in ("use_of_force", "complaints"):
        assert _query(
            home, f"SELECT _period, count(*) FROM curated.{name} GROUP BY 1 ORDER BY 1"
        ) == [("2025-01", 200), ("2025-02", 200)]
    # Stop and search's held February blocks neither its other months nor the others'.
    assert _query(
        home, "SELECT _period, count(*) FROM curated.stop_and_search GROUP BY 1 ORDER BY 1"
    ) == [("2025-01", 300), ("2025-03", 300), ("2025-04", 300)]


@pytest.mark.slow
def test_a_new_month_recomputes_only_the_marts_reading_it_and_an_idle_run_launches_nothing(
    a_fifth_month, monkeypatch
):
    from pipelines.oversight.mart_runner import marts_reading

    contracts = load_contracts()
    # After a first run of three contracts (stop and search's four months, use of force's
    # and complaints' two), which computed every mart reading them, a run of one new month
    # of stop and search (`a_fifth_month`: 150 rows).
    home = _restore_fifth_month(a_fifth_month, monkeypatch)
    instance = dg.DagsterInstance.get()
    runs = [r for r in instance.get_runs() if r.run_id not in a_fifth_month.runs_before]
    oversight = [r for r in runs if r.job_name == "oversight"]
    assert len(oversight) == 1
    recomputed = {
        e.asset_key
        for e in instance.get_records_for_run(
            oversight[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        for e in [e.event_log_entry.dagster_event]
    }
    expected = {
        dg.AssetKey(["oversight", m]) for m in marts_reading({"stop_and_search"}, contracts)
    }
    assert recomputed == expected and dg.AssetKey(["oversight", "use_of_force_tactics"]) not in (
        recomputed
    )
    # The month is in the warehouse without the catalog being rebuilt for it.
    curated = instance.get_latest_materialization_event(dg.AssetKey(["curated", "stop_and_search"]))
    assert curated.asset_materialization.partition == "2025-05"
    assert curated.asset_materialization.metadata["catalog_rebuilt"].value is False
    assert (
        _query(home, "SELECT count(*) FROM curated.stop_and_search WHERE _period = '2025-05'")[0][0]
        == 150
    )
    # The warehouse file is the one the first run built, and what an analyst reads in it,
    # comments and rows, is what a fresh build gives (tests/test_catalog_current.py's
    # one-new-month run, held here rather than by two runs of its own).
    assert a_fifth_month.warehouse_after == a_fifth_month.warehouse_before
    kept = catalog_as_read(home.warehouse)
    (months,) = _query(home, "SELECT count(DISTINCT _period) FROM curated.stop_and_search")[0]
    (in_marts,) = _query(
        home,
        "SELECT count(*) FROM oversight.stop_search_outcomes "
        "WHERE month = DATE '2025-05-01' AND time_window = 'month'",
    )[0]
    assert months == 4 and in_marts > 0
    fresh = build_warehouse(open_lake(home.lake), contracts, home.home / "fresh.duckdb")
    assert catalog_as_read(fresh) == kept

    # Nothing new: no Dagster run at all, and the warehouse file is left as it was.
    built = home.warehouse.stat().st_mtime_ns
    seen = {r.run_id for r in instance.get_runs()}
    assert main(["run"]) == 0
    assert {r.run_id for r in instance.get_runs()} == seen
    assert home.warehouse.stat().st_mtime_ns == built


def test_the_catalog_is_rebuilt_only_when_its_views_cannot_show_the_lake(
    three_contracts, stop_and_search, monkeypatch
):
    import dataclasses

    from pipelines.warehouse.catalog import catalog_shows

    # After a run that published three months of stop and search (and held one back).
    home = restore_template(three_contracts[0], monkeypatch)
    lake = open_lake(home.lake)
    # A month more is read through the same views; nothing to rebuild.
    assert catalog_shows(home.warehouse, lake, stop_and_search)
    # A new contract version, a column the views lack, a contract with no data yet (an
    # empty stand-in table) and another lake each need a rebuild.
    assert not catalog_shows(
        home.warehouse, lake, dataclasses.replace(stop_and_search, version="9")
    )
    extra = dataclasses.replace(stop_and_search.columns[0], name="new_column")
    wider = dataclasses.replace(stop_and_search, columns=(*stop_and_search.columns, extra))
    assert not catalog_shows(home.warehouse, lake, wider)
    assert not catalog_shows(home.warehouse, lake, load_contracts()["workforce"])
    assert not catalog_shows(home.warehouse, open_lake(home.home / "other-lake"), stop_and_search)
    assert not catalog_shows(home.home / "missing.duckdb", lake, stop_and_search)
