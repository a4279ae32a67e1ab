"""Provenance, reproducible packs and revisions (issue 23).

- Publishing keeps the month it replaces (`curated_history/`), on a folder lake and on S3,
  and retention erases it with the rest of the period; `months_as_of` picks, for any
  moment, the file that was the month then (Hypothesis: any number of restatements).
- The real June 2022 stop and search file through `datashare run`, then a restatement of
  the month: today's figure changes; `report --as-of` a moment before the restatement
  gives the first pack's figures exactly; the new pack marks the figure revised with the
  old and new values and the restating file; `explain` names the restating file and its
  SHA-256; `governance.mart_sources` matches an independent query of the curated view.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import re
import shutil
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.cli import report as report_command
from pipelines.cli.main import main
from pipelines.cli.report import recompute_as_of
from pipelines.lake.curated_history import AREA, months_as_of
from pipelines.lake.publishing import publish_delivery
from pipelines.lake.register import DeliveryEvent, Register
from pipelines.lake.retention import enforce_retention
from pipelines.lake.store import FolderLake, Lake, open_lake
from pipelines.oversight import definition as oversight_definition
from pipelines.oversight.mart_runner import MAPPINGS_DIR, MARTS
from pipelines.oversight.pack_archive import kept_packs
from schemas.contract import load_contracts
from tests.conftest import drop
from tests.s3_server import LAKE_BUCKET

CONTRACT = "stop_and_search"
PERIOD = "2022-06"


@pytest.fixture(params=["folder", pytest.param("s3", marks=pytest.mark.slow)])
def lake(request, tmp_path) -> Lake:
    if request.param == "folder":
        return FolderLake(tmp_path / "lake")
    _, prefix = request.getfixturevalue("s3")
    return open_lake(f"s3://{LAKE_BUCKET}/{prefix}")


def _publish(
    lake: Lake,
    register: Register,
    delivery_id: str,
    rows: int,
    contract: str = CONTRACT,
    file_name: str | None = None,
) -> datetime:
    """Stage `rows` rows of `delivery_id` for the month, publish them; when it was done."""
    table = pa.table(
        {
            "n": pa.array(range(rows), pa.int64()),
            "_delivery_id": [delivery_id] * rows,
            "_period": [PERIOD] * rows,
        }
    )
    lake.write_table(lake.staging_path(contract, PERIOD, delivery_id), table)
    register.record(
        DeliveryEvent(
            contract=contract,
            period=PERIOD,
            delivery_id=delivery_id,
            event="validated",
            source_path=f"{contract}/{PERIOD}/{file_name or delivery_id + '.csv'}",
        )
    )
    delivery = register.deliveries(contract)[delivery_id]
    publish_delivery(lake, register, delivery, contract=load_contracts()[contract])
    return datetime.now(UTC)


def _month_then(
    lake: Lake, register: Register, when: datetime, contract: str = CONTRACT
) -> tuple[set[str], int] | None:
    """The deliveries and rows of the month as it stood at `when` (None: not published)."""
    found = [m for m in months_as_of(lake, register.events(), when) if m.contract == contract]
    if not found:
        return None
    (month,) = found
    assert month.key is not None, month.why
    table = lake.read_table(month.key, ["_delivery_id"])
    return set(table.column(0).to_pylist()), table.num_rows


def test_a_month_in_parts_is_kept_as_it_stood_before_each_part_came(tmp_path):
    """street_crime's months come in parts (the Met's and the City of London's files)."""
    lake = FolderLake(tmp_path / "lake")
    register = Register(lake)
    met, city, met_again = "a" * 64, "b" * 64, "c" * 64
    first = _publish(lake, register, met, 4, "street_crime", "met.csv")
    second = _publish(lake, register, city, 2, "street_crime", "city.csv")
    third = _publish(lake, register, met_again, 3, "street_crime", "met.csv")
    assert _month_then(lake, register, first, "street_crime") == ({met}, 4)
    assert _month_then(lake, register, second, "street_crime") == ({met, city}, 6)
    assert _month_then(lake, register, third, "street_crime") == ({city, met_again}, 5)


def test_a_replaced_month_is_kept_found_as_of_any_moment_and_erased_by_retention(lake: Lake):
    register = Register(lake)
    before = datetime.now(UTC)
    first = _publish(lake, register, "a" * 64, 5)
    second = _publish(lake, register, "b" * 64, 3)
    # The first month's file was kept, unchanged, when the second replaced it.
    (kept,) = lake.glob(f"{AREA}/contract={CONTRACT}/period={PERIOD}/*.parquet")
    assert lake.read_table(kept).num_rows == 5
    assert _month_then(lake, register, before - timedelta(seconds=1)) is None
    assert _month_then(lake, register, first) == ({"a" * 64}, 5)
    assert _month_then(lake, register, second) == ({"b" * 64}, 3)
    # Retention erases the kept month with the rest of the period, and records it.
    erased = enforce_retention(lake, load_contracts(), True, "test", date(2100, 1, 1))
    assert kept in {e.path for e in erased}
    assert {e.area for e in erased} >= {"curated", AREA}
    assert not lake.exists(kept)


def test_a_month_replaced_before_history_was_kept_says_it_cannot_be_reproduced(tmp_path):
    lake = FolderLake(tmp_path / "lake")
    register = Register(lake)
    first = _publish(lake, register, "a" * 64, 5)
    _publish(lake, register, "b" * 64, 3)
    for key in lake.glob(f"{AREA}/contract={CONTRACT}/period={PERIOD}/*.parquet"):
        lake.delete(key)  # as an earlier version left it: the first file overwritten
    (month,) = months_as_of(lake, register.events(), first)
    assert month.key is None
    assert "not kept" in month.why


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=4))
def test_as_of_any_moment_the_month_is_the_delivery_published_last_before_it(sizes):
    with tempfile.TemporaryDirectory() as folder:
        lake = FolderLake(Path(folder) / "lake")
        register = Register(lake)
        start = datetime.now(UTC)
        moments = [_publish(lake, register, f"{i:064x}", rows) for i, rows in enumerate(sizes)]
        assert _month_then(lake, register, start - timedelta(seconds=1)) is None
        for i, (when, rows) in enumerate(zip(moments, sizes, strict=True)):
            then = _month_then(lake, register, when)
            assert then is not None
            assert then[1] == rows
            assert then[0] <= {f"{i:064x}"}  # an empty month has no delivery ids


# -- the whole pipeline --------------------------------------------------------------------


def _query(settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def _tables_equal(a: pa.Table | None, b: pa.Table | None) -> bool:
    """Same schema and the same rows in the same order (NaN equal to NaN: a share of no
    calls is NaN in both)."""
    if a is None or b is None:
        return a is b

    def rows(t: pa.Table) -> list[tuple]:
        return [
            tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r.values())
            for r in t.to_pylist()
        ]

    return a.schema.remove_metadata() == b.schema.remove_metadata() and rows(a) == rows(b)


@pytest.mark.slow
@pytest.mark.usefixtures("ge_helper")  # the worker's great-expectations helper
def test_a_restated_month_is_traced_reproduced_and_marked_revised(
    home, real_stop_and_search, tmp_path, capsys, monkeypatch
):
    drop(home, CONTRACT, PERIOD, real_stop_and_search)
    assert main(["run"]) == 0
    assert main(["report"]) == 0
    lake = open_lake(home.lake)
    (first_pack,) = kept_packs(lake)
    field_sql = (
        "SELECT curated_rows FROM oversight.data_quality WHERE contract = 'stop_and_search' "
        "AND period = '2022-06' AND field = 'age_range'"
    )
    (old_figure,) = _query(home, field_sql)[0]
    assert old_figure == 16_332
    first_id = hashlib.sha256(real_stop_and_search.read_bytes()).hexdigest()
    assert first_pack.manifest["marts"]["data_quality"] == [first_id]
    manifest = first_pack.manifest
    assert manifest["contracts"][CONTRACT] == load_contracts()[CONTRACT].version
    assert manifest["datashare_version"] == importlib.metadata.version("datashare")
    assert manifest["mappings"] == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(MAPPINGS_DIR.glob("*.yaml"))
    }
    # Each mart's SQL and YAML too: an analyst may change a definition between packs.
    marts_folder = Path(oversight_definition.__file__).parent / "marts"
    assert manifest["mart_definitions"] == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted([*marts_folder.glob("*.sql"), *marts_folder.glob("*.yaml")])
    }
    assert "data_quality.sql" in manifest["mart_definitions"]
    assert manifest["deliveries"][first_id]["file_name"] == real_stop_and_search.name
    before_restatement = datetime.now(UTC)

    # The force restates the month: 100 rows, one of them with no Type (quarantined).
    lines = real_stop_and_search.read_text(encoding="utf-8").splitlines(keepends=True)
    restated = tmp_path / "restated.csv"
    blank_type = "," + lines[1].split(",", 1)[1]
    restated.write_text("".join([lines[0], blank_type, *lines[2:101]]), encoding="utf-8")
    drop(home, CONTRACT, PERIOD, restated)
    restated_id = hashlib.sha256(restated.read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(["run"]) == 0

    # Today's figure changed.
    (new_figure,) = _query(home, field_sql)[0]
    assert new_figure == 99

    # governance.mart_sources matches an independent query of the curated view and the
    # register, for every mart reading stop and search.
    sources = _query(
        home,
        "SELECT mart, period, delivery_id, rows_used, file_name, sha256, received_at, "
        "restated_delivery_id, restated_file_name FROM governance.mart_sources "
        "WHERE contract = 'stop_and_search' ORDER BY mart",
    )
    independent = _query(
        home,
        "SELECT c._period, c._delivery_id, count(*), regexp_extract(d.source_path, '[^/]*$'), "
        "d.received_at FROM curated.stop_and_search c JOIN governance.deliveries d "
        "ON d.delivery_id = c._delivery_id GROUP BY ALL",
    )
    assert {s[0] for s in sources} == {
        "stop_search_disproportionality",
        "stop_search_outcomes",
        "data_quality",
    }
    for s in sources:
        assert [(s[1], s[2], s[3], s[4], s[6])] == independent
        assert s[5] == s[2] == restated_id
        assert (s[7], s[8]) == (first_id, real_stop_and_search.name)
    # The first month's file is kept for `--as-of`.
    (kept,) = lake.glob(f"{AREA}/contract={CONTRACT}/period={PERIOD}/*.parquet")
    assert set(lake.read_table(kept, ["_delivery_id"]).column(0).to_pylist()) == {first_id}

    # explain names the restating file, its SHA-256 and the file it restated.
    assert main(["explain", "data_quality", "--month", PERIOD]) == 0
    out = capsys.readouterr().out
    assert "restated.csv" in out and restated_id in out
    assert f"restates delivery {first_id[:12]} ({real_stop_and_search.name})" in out
    assert "99 row(s) used" in out

    # The new pack marks the figure revised: old value, new value, the restating file.
    assert main(["report"]) == 0
    assert "figure(s) revised since the previous pack" in capsys.readouterr().out
    page = (home.home / "reports" / "oversight-pack.html").read_text(encoding="utf-8")
    box = page[page.index('id="data_quality-revised"') :]
    box = box[: box.index("</div>")]
    row = next(r for r in box.split("<tr>") if "field age_range" in r and "curated rows" in r)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[1:3] == ["16,332", "99"]
    assert "restated.csv" in cells[3] and real_stop_and_search.name in cells[3]
    assert len(kept_packs(lake)) == 2
    # Each section states its sources.
    section = page[page.index('<section id="data_quality"') :]
    line = re.search(r"<p class=sources>(.*?)</p>", section).group(1)
    assert "<code>stop_and_search</code> 2022-06: restated.csv" in line

    # As of a moment before the restatement (`datashare report --as-of`), the first pack's
    # figures, exactly. The recomputation checked is the command's own, kept as it hands it
    # on to print and write (recomputing it in the test as well cost a second scratch
    # warehouse and every mart again).
    recomputed: list[report_command.AsOfPack] = []

    def recompute_and_keep(*args, **kwargs) -> report_command.AsOfPack:
        recomputed.append(recompute_as_of(*args, **kwargs))
        return recomputed[-1]

    monkeypatch.setattr(report_command, "recompute_as_of", recompute_and_keep)
    assert main(["report", "--as-of", before_restatement.isoformat()]) == 0
    (again,) = recomputed
    assert again.lost == []
    for name, table in again.tables.items():
        assert _tables_equal(table, first_pack.figures(lake, name)), name
    assert set(again.manifest["deliveries"]) == {first_id}
    assert "Recomputed as of" in again.path.read_text(encoding="utf-8")
    # It names the pack published then, computed from the same deliveries and versions.
    assert f"kept as {lake.url_of(first_pack.folder)}." in again.note
    assert "differ" not in again.note and "other deliveries" not in again.note
    # The command says so, and writes the manifest beside the page.
    assert "from 1 delivery(ies)" in capsys.readouterr().out
    written = again.path.with_suffix(".manifest.json").read_text(encoding="utf-8")
    assert json.loads(written) == json.loads(json.dumps(again.manifest))
    assert len(kept_packs(lake)) == 2  # a reproduction is not a new pack


def test_explain_on_a_warehouse_built_before_provenance_says_how_to_get_it(home, capsys):
    # A catalog as an earlier version built it: no governance.mart_sources.
    with duckdb.connect(str(home.warehouse)) as con:
        con.execute("CREATE SCHEMA governance")
        con.execute("CREATE TABLE governance.catalog AS SELECT ? AS lake", [str(home.lake)])
    assert main(["explain", "data_quality"]) == 1
    assert "built by an earlier version" in capsys.readouterr().out
    assert main(["explain", "no_such_mart"]) == 2
    assert "stop_search_outcomes" in capsys.readouterr().out
    # Its pack says, section by section, that the sources were not recorded.
    assert main(["report"]) == 0
    page = (home.home / "reports" / "oversight-pack.html").read_text(encoding="utf-8")
    assert page.count("<strong>Sources:</strong> not recorded") == len(MARTS)


@pytest.mark.slow
def test_on_the_demo_every_mart_is_reproduced_and_its_sources_are_the_curated_rows(
    home, shared_demo, capsys
):
    """Every contract (parts months, a wide layout, the census) for eight months: a copy of the
    session's `datashare demo` home (tests/conftest.py) as this test's home."""
    shutil.copytree(shared_demo / "home", home.home, dirs_exist_ok=True)
    lake = open_lake(home.lake)
    (pack,) = kept_packs(lake)
    contracts = load_contracts()
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        for name, mart in MARTS.items():
            recorded = con.execute(
                "SELECT contract, period, delivery_id, rows_used FROM governance.mart_sources "
                "WHERE mart = ? ORDER BY ALL",
                [name],
            ).fetchall()
            independent = sorted(
                row
                for contract in mart.source_contracts(contracts)
                for row in con.execute(
                    f"SELECT '{contract}', _period, _delivery_id, count(*) "
                    f"FROM curated.{contract} GROUP BY ALL"
                ).fetchall()
            )
            assert recorded == independent, name
    # explain a 12-month figure: every month its window read, with each month's file.
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        periods = [
            p
            for (p,) in con.execute(
                "SELECT DISTINCT _period FROM curated.stop_and_search ORDER BY 1"
            ).fetchall()
        ]
    capsys.readouterr()
    assert main(["explain", "stop_search_outcomes", "--month", periods[-1]]) == 0
    out = capsys.readouterr().out
    assert f"the 12 months to {periods[-1]} ({len(periods)} with deliveries read" in out
    for period in periods:
        assert f"\n{period}\n  stop_and_search\n    delivery " in out
    # As of now, the pack just written, figure for figure.
    again = recompute_as_of(datetime.now(UTC), home.home / "again.html", home)
    assert again.lost == []
    assert sum(1 for t in again.tables.values() if t is not None and t.num_rows) >= 9
    for name, table in again.tables.items():
        assert table is not None, name
        assert _tables_equal(table, pack.figures(lake, name)), name


# -- revisions ---------------------------------------------------------------------------

_QUALITY_KEYS = [
    (contract, field, period)
    for contract in ("stop_and_search", "complaints")
    for field in ("age_range", "handling")
    for period in ("2022-05", "2022-06")
]
_counts = st.one_of(st.none(), st.integers(min_value=0, max_value=40))


def _quality(rows: list[tuple]) -> pa.Table:
    """A data_quality mart table: (contract, field, period, curated, missing) per row."""
    from pipelines.oversight.mart_runner import MARTS

    mart = MARTS["data_quality"]
    records = []
    for contract, field, period, curated, missing in rows:
        share = float("nan") if not curated else (curated - (missing or 0)) * 100 / curated
        records.append(
            {
                "contract": contract,
                "period": period,
                "field": field,
                "field_role": "primary key",
                "curated_rows": curated,
                "missing_rows": missing,
                "agreed_max_missing_percent": None,
                "completeness_percent": share,
                "within_agreement": None,
            }
        )
    types = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64()}
    schema = pa.schema([(c.name, types.get(c.type, pa.bool_())) for c in mart.output_columns])
    return pa.Table.from_pylist(records, schema)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(_counts, _counts), min_size=len(_QUALITY_KEYS), max_size=len(_QUALITY_KEYS)),
    st.lists(st.tuples(_counts, _counts), min_size=len(_QUALITY_KEYS), max_size=len(_QUALITY_KEYS)),
    st.integers(min_value=0, max_value=len(_QUALITY_KEYS)),
)
def test_revisions_are_exactly_the_figures_that_differ(old_values, new_values, new_rows):
    """For any two packs of a mart (the new one with fewer or more rows), the revisions are
    the cells of rows in both whose figures differ, with the old and the new value."""
    from pipelines.oversight.pack_archive import figure_revisions, keep_pack, make_manifest

    old = [(*k, *v) for k, v in zip(_QUALITY_KEYS, old_values, strict=True)]
    new = [(*k, *v) for k, v in zip(_QUALITY_KEYS, new_values, strict=True)][:new_rows]
    with tempfile.TemporaryDirectory() as folder:
        lake = FolderLake(Path(folder) / "lake")
        page = Path(folder) / "oversight-pack.html"
        page.write_text("<p>pack</p>")
        kept = keep_pack(
            lake, page, {"data_quality": _quality(old)}, make_manifest([], {}, datetime.now(UTC))
        )
        found = figure_revisions(kept, lake, {"data_quality": _quality(new)}, [])
    expected = set()
    # Rows in both packs: the new one's first `new_rows`.
    for before, after in zip(_quality(old).to_pylist(), _quality(new).to_pylist(), strict=False):
        for column in ("curated_rows", "missing_rows", "completeness_percent"):
            a, b = before[column], after[column]
            same = a == b or (
                isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
            )
            if not same:
                expected.add((before["contract"], before["field"], before["period"], column))
    got = [
        (r.where["contract"], r.where["field"], r.where["period"], r.column, r.old, r.new)
        for r in found.get("data_quality", [])
    ]
    assert {g[:4] for g in got} == expected
    assert len(got) == len(expected)

    def same(a: object, b: object) -> bool:
        return a == b or (
            isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        )

    olds = {(r["contract"], r["field"], r["period"]): r for r in _quality(old).to_pylist()}
    news = {(r["contract"], r["field"], r["period"]): r for r in _quality(new).to_pylist()}
    for contract, field, period, column, was, now in got:
        assert same(was, olds[(contract, field, period)][column])
        assert same(now, news[(contract, field, period)][column])
