"""The marts as files an analyst owns: `pipelines/oversight/marts/<mart>.sql` and `.yaml`.

On a demo home built by the command line: each SQL file runs as it is against
`warehouse.duckdb` (nothing but `curated.*` and `oversight_ref.*`), and gives the rows the
runner writes once the runner's own part (suppression, types, order) is added; every column
the SQL gives is described in the YAML and every described column comes from the SQL; and
the README's recipe for adding a mart, followed in a copy of the folder, gives a mart.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.oversight.definition import MARTS_DIR, load_mart, load_marts
from pipelines.oversight.mart_runner import MARTS, compute_mart, finish_sql, warehouse_connection
from pipelines.validation.agreed_values import NOT_AGREED, AgreedCategory
from pipelines.warehouse.reference import MAPPINGS_DIR, create_reference, reference_tables
from schemas.contract import load_contracts
from tests.conftest import copy_home

ROOT = Path(__file__).resolve().parent.parent
DATASHARE = Path(sys.executable).with_name("datashare")
FILE_MARTS = sorted(p.stem for p in MARTS_DIR.glob("*.sql"))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, shared_demo: Path) -> Path:
    """A demo home: eight months of every contract (the survey is quarterly), 300 rows each
    (the module's copy of the session's, tests/conftest.py)."""
    return copy_home(shared_demo, tmp_path_factory.mktemp("marts") / "home")


@pytest.fixture
def warehouse(home: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        yield con


def _sorted_rows(table: pa.Table) -> list[tuple]:
    rows = [tuple(r.values()) for r in table.to_pylist()]
    return sorted(rows, key=repr)


def assert_same_rows(a: pa.Table, b: pa.Table) -> None:
    """Same columns and types, and the same rows in any order (NaN equals NaN, as DuckDB
    compares)."""
    assert a.schema.remove_metadata() == b.schema.remove_metadata()
    con = duckdb.connect()
    con.register("a", a)
    con.register("b", b)
    differing = con.execute(
        "SELECT count(*) FROM ((SELECT * FROM a EXCEPT ALL SELECT * FROM b) "
        "UNION ALL (SELECT * FROM b EXCEPT ALL SELECT * FROM a))"
    ).fetchone()[0]
    assert (a.num_rows, differing) == (b.num_rows, 0)


def test_every_mart_is_a_sql_file_with_its_yaml():
    # The marts the pack shows are the files; each file names the mart it is.
    assert FILE_MARTS, "no mart files"
    for name in FILE_MARTS:
        assert (MARTS_DIR / f"{name}.yaml").exists(), name
        assert MARTS[name] == load_mart(MARTS_DIR / f"{name}.yaml")


@pytest.mark.parametrize("name", FILE_MARTS)
def test_sql_file_runs_as_it_is_and_gives_the_runners_rows(
    home: Path, warehouse: duckdb.DuckDBPyConnection, name: str
):
    sql = (MARTS_DIR / f"{name}.sql").read_text(encoding="utf-8")
    # Only the warehouse's own schemas: no Python, no templates.
    assert "{" not in sql, "a template left in the SQL"
    direct = warehouse.sql(sql).to_arrow_table()
    assert direct.num_rows > 0, f"{name} gives no rows on the demo home"
    # The runner adds suppression, types and order to exactly these rows.
    mart = MARTS[name]
    con = duckdb.connect()
    con.register("direct_rows", direct)
    finished = con.sql(finish_sql(mart, "SELECT * FROM direct_rows")).to_arrow_table()
    computed = compute_mart(name, home / "warehouse.duckdb")
    assert_same_rows(finished, computed)


def test_provenance_read_from_records_read_once_is_the_provenance_views_give(home: Path):
    """A connection that writes several marts reads the register's records once
    (`records_once`); every mart's provenance from it is, row for row, what the views
    over the lake give."""
    from pipelines.lake.provenance import mart_source_rows

    contracts = load_contracts()
    path = home / "warehouse.duckdb"
    with (
        warehouse_connection(path, contracts) as views,
        warehouse_connection(path, contracts, records_once=True) as once,
    ):
        kinds = dict(
            once.execute(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_schema = 'governance' AND table_catalog = current_database()"
            ).fetchall()
        )
        assert kinds["delivery_events"] == kinds["breach_records"] == "BASE TABLE"
        for mart in MARTS.values():
            sources = {c: contracts[c].version for c in mart.source_contracts(contracts)}
            rows = mart_source_rows(views, sources)
            assert rows and mart_source_rows(once, sources) == rows, mart.name


@pytest.mark.parametrize("name", FILE_MARTS)
def test_every_column_is_described(warehouse: duckdb.DuckDBPyConnection, name: str):
    spec = yaml.safe_load((MARTS_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    described = {c["name"]: c["description"] for c in spec["columns"]}
    assert all(len(text.split()) >= 3 for text in described.values()), described
    given = warehouse.sql((MARTS_DIR / f"{name}.sql").read_text()).columns
    # Every column the SQL gives is described, but its helper columns (`_order`, ...).
    assert {c for c in given if not c.startswith("_")} == set(described)
    # Suppression, order and latest figures name columns that exist.
    for s in spec.get("suppressions") or ():
        assert s["count"] in given and set(s["withheld"]) <= set(given)
    assert set(spec["order_by"]) <= set(given)


def test_reference_tables_are_the_mapping_files(warehouse: duckdb.DuckDBPyConnection):
    # The warehouse's oversight_ref tables hold what the mapping files and contracts say.
    for name, table in reference_tables(load_contracts()).items():
        stored = warehouse.sql(f"SELECT * FROM oversight_ref.{name}").to_arrow_table()
        assert _sorted_rows(stored) == _sorted_rows(table), name
        comment = warehouse.execute(
            "SELECT comment FROM duckdb_tables() WHERE schema_name = 'oversight_ref' "
            "AND table_name = ?",
            [name],
        ).fetchall()
        assert comment and comment[0][0], name
    black = warehouse.execute(
        "SELECT oversight_ref.ethnic_group('stop_and_search.self_defined_ethnicity', "
        "'Black/African/Caribbean/Black British - Any other Black/African/Caribbean background ')"
    ).fetchall()
    assert black == [("Black",)]


def test_a_warehouse_without_reference_tables_still_gives_the_marts(home: Path, tmp_path: Path):
    # A warehouse built by the previous version has no oversight_ref: the runner brings its own.
    old = tmp_path / "warehouse.duckdb"
    shutil.copyfile(home / "warehouse.duckdb", old)
    with duckdb.connect(str(old)) as con:
        con.execute("DROP SCHEMA oversight_ref CASCADE")
    # One runner's connection to each warehouse for every mart (one each per mart cost
    # 22 connections, a third of a second of CPU apiece).
    with (
        warehouse_connection(old) as without,
        warehouse_connection(home / "warehouse.duckdb") as built,
    ):
        for name in FILE_MARTS:
            assert_same_rows(compute_mart(name, without), compute_mart(name, built))


def test_readme_recipe_adds_a_mart(home: Path, tmp_path: Path):
    """Follow "How an analyst adds or changes a mart" in a copy of the marts folder."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How an analyst adds or changes a mart", 1)[1].split("\n## ", 1)[0]
    # The recipe's example files, as the README shows them.
    blocks = dict(re.findall(r"```(sql|yaml)\n(.*?)```", section, flags=re.S))
    assert {"sql", "yaml"} <= set(blocks), "the README shows a .sql and a .yaml"
    marts = tmp_path / "marts"
    shutil.copytree(MARTS_DIR, marts)
    spec = yaml.safe_load(blocks["yaml"])
    (marts / f"{spec['name']}.sql").write_text(blocks["sql"], encoding="utf-8")
    (marts / f"{spec['name']}.yaml").write_text(blocks["yaml"], encoding="utf-8")
    loaded = load_marts(marts)
    toy = loaded[spec["name"]]
    with warehouse_connection(home / "warehouse.duckdb") as con:
        from pipelines.oversight.mart_runner import mart_sql

        table = con.sql(mart_sql(toy)).to_arrow_table()
    assert table.num_rows > 0
    assert table.column_names == [c.name for c in toy.output_columns]
    # Its count below the threshold is withheld with a flag, as every publication mart's.
    flags = [c for c in table.column_names if c.endswith("_suppressed")]
    assert flags
    for row in table.to_pylist():
        for flag in flags:
            count = flag.removesuffix("_suppressed")
            assert row[flag] == (row[count] is None)
    # The runner's own marts are still there, unchanged, beside it.
    assert set(FILE_MARTS) < set(loaded)
    # A column the YAML does not describe is refused, naming the file and the column.
    spec["columns"][1]["description"] = " "
    (marts / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(ValueError, match=r"searches_by_gender.yaml: columns without a descr"):
        load_marts(marts)


@pytest.fixture(scope="module")
def reference() -> Iterator[duckdb.DuckDBPyConnection]:
    """oversight_ref alone, in memory, from the mapping files and contracts."""
    con = duckdb.connect()
    create_reference(con, load_contracts())
    yield con
    con.close()


ETHNICITY = yaml.safe_load((MAPPINGS_DIR / "ethnicity.yaml").read_text(encoding="utf-8"))
MAPPING_NAMES = sorted(k for k in ETHNICITY if k != "groups")
# Delivered-looking values: the mapped ones, with stray spaces or another case, and any text.
_known = sorted({str(v) for k in MAPPING_NAMES for v in ETHNICITY[k]})
_values = st.one_of(
    st.none(),
    st.sampled_from(_known),
    st.builds(lambda v, pad: pad + v + pad, st.sampled_from(_known), st.sampled_from(["", " "])),
    st.sampled_from(_known).map(str.upper),
    st.text(max_size=12),
)


@settings(max_examples=60, deadline=None)
@given(mapping=st.sampled_from(MAPPING_NAMES), value=_values)
def test_ethnic_group_macro_is_the_mapping_file(reference, mapping, value):
    # Blank is Not recorded, a listed value (spaces around it ignored) its group, any other
    # value Not mapped: never dropped, never guessed.
    listed = {str(k).strip(): str(v) for k, v in reversed(list(ETHNICITY[mapping].items()))}
    # Surrounding spaces as DuckDB's trim() takes them off (the marts always have).
    trimmed = reference.execute("SELECT trim(?::VARCHAR)", [value]).fetchall()[0][0]
    if value is None or trimmed == "":
        expected = "Not recorded"
    else:
        expected = listed.get(trimmed, "Not mapped")
    got = reference.execute("SELECT oversight_ref.ethnic_group(?, ?)", [mapping, value]).fetchall()
    assert got == [(expected,)]


CONTRACTS = load_contracts()
_agreed_columns = sorted(
    (c.name, col.name) for c in CONTRACTS.values() for col in c.columns if col.value_rules
)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_agreed_value_macro_is_the_agreement(reference, data):
    # A value the agreement lists, character for character, is itself; anything else it
    # keeps is 'Not an agreed value'; NULL stays NULL; a column with no list takes all.
    contract, column = data.draw(st.sampled_from([*_agreed_columns, ("workforce", "month")]))
    category = AgreedCategory(column, contract, (column,), column)
    agreed = category.values(CONTRACTS)
    listed = sorted(agreed or ())
    value = data.draw(
        st.one_of(
            st.none(),
            st.sampled_from(listed or ["x"]),
            st.sampled_from(listed or ["x"]).map(lambda v: v + " "),
            st.sampled_from(listed or ["x"]).map(str.upper),
            st.text(max_size=10),
        )
    )
    if value is None or agreed is None or value in agreed:
        expected = value
    else:
        expected = NOT_AGREED
    got = reference.execute(
        "SELECT oversight_ref.agreed_value(?, ?, ?::VARCHAR)", [contract, column, value]
    ).fetchall()
    assert got == [(expected,)]


def test_a_mart_added_as_files_reaches_the_warehouse_and_the_pack(home: Path, tmp_path: Path):
    """The README's toy mart in a copy of the folder (DATASHARE_MARTS): `datashare report
    --refresh` computes it, the warehouse has its view with the YAML's comments, and the
    pack has its section; no Python touched."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How an analyst adds or changes a mart", 1)[1].split("\n## ", 1)[0]
    blocks = dict(re.findall(r"```(sql|yaml)\n(.*?)```", section, flags=re.S))
    marts = tmp_path / "marts"
    shutil.copytree(MARTS_DIR, marts)
    (marts / "searches_by_gender.sql").write_text(blocks["sql"], encoding="utf-8")
    (marts / "searches_by_gender.yaml").write_text(blocks["yaml"], encoding="utf-8")
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATASHARE_", "DAGSTER_"))}
    env |= {
        "DATASHARE_HOME": str(copy),
        "DAGSTER_HOME": str(copy / "dagster"),
        "DATASHARE_MARTS": str(marts),
    }
    done = subprocess.run(
        [str(DATASHARE), "report", "--refresh"], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with duckdb.connect(str(copy / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT gender, sum(searches) FROM oversight.searches_by_gender GROUP BY ALL"
        ).fetchall()
        expected = con.execute(
            "SELECT coalesce(nullif(gender, ''), 'Not recorded'), count(*) "
            "FROM curated.stop_and_search GROUP BY ALL"
        ).fetchall()
        comments = dict(
            con.execute(
                "SELECT column_name, comment FROM duckdb_columns() "
                "WHERE schema_name = 'oversight' AND table_name = 'searches_by_gender'"
            ).fetchall()
        )
    # Every gender's searches, bar those withheld (fewer than 10 in a month).
    shown = dict(rows)
    assert set(shown) == {g for g, _ in expected}
    assert all(shown[g] is None or shown[g] <= n for g, n in expected)
    assert comments["gender"] == "The gender recorded, or Not recorded."
    assert "withheld for disclosure control" in comments["searches_suppressed"]
    pack = (copy / "reports" / "oversight-pack.html").read_text(encoding="utf-8")
    assert '<section id="searches_by_gender"><h2>Searches by gender</h2>' in pack
