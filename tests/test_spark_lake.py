"""The lake read by Spark with the statements `datashare lake ddl --engine spark` gives.

A real Spark (pyspark from PyPI, local mode, Java 17) declares every curated table and
oversight mart (each mart over its folder, `oversight/<mart>/`, which holds `data.parquet`)
of a demo home's folder lake with those statements, and reads the same rows, types, values
and column comments as `warehouse.duckdb`. The only differences are
the declared ones: Spark has the partition column `period` (equal to `_period` on every
row), and the warehouse's computed `_month` (and `month` of a mart by text period) is
the warehouse's own.

Not here: Spark over the S3 lake. Spark reads S3 through Hadoop's S3A connector
(`hadoop-aws` and the AWS SDK bundle), which pyspark's wheel does not ship and which
comes only from Maven Central, out of reach of this project's machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

# pandera looks for pyspark once, when first imported, and if it finds it imports
# pyspark.pandas (a FutureWarning under pandas 3, and time): so it is imported before
# pyspark is put on the path below, as every datashare command runs without it.
from pipelines.cli.main import main
from pipelines.oversight.lake_ddl import _literal, ddl_statements, lake_tables
from pipelines.oversight.mart_runner import MARTS
from pipelines.validation.row_validation import curated_schema  # noqa: F401 - imports pandera first
from schemas.contract import load_contracts
from tests.conftest import copy_home

# `make test` installs pyspark here (Makefile target `spark`), beside the venv rather than
# in it; a user who installed the `spark` extra has it in the venv itself.
SPARK_SITE = Path(sys.prefix) / "spark"
# pyspark's Arrow conversion checks the pandas version (3 here, which it does not list yet);
# the tests compare Arrow tables and use no pandas.
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")
# The JVM for a few hundred rows a table: its client compiler only (the server compiler's
# optimizing of Spark's classes was half the JVM's CPU over this module, 41 s of 48, and the
# tables are too small to gain from it) and one GC thread, as the machine's other core runs
# the other pytest worker. The JVM's CPU over the module: 41 s -> 18 s; what Spark reads and
# runs is the same. Nor does it verify the bytecode of Spark's jars as it loads their thousands
# of classes (the JDK's own are not verified either): a build's jars, not code from elsewhere.
JVM_OPTIONS = (
    "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    " -XX:+UnlockDiagnosticVMOptions -XX:-BytecodeVerificationRemote"
)


def _stop_jvm() -> int | None:
    """Spark's JVM ended (it exits when its stdin closes, as when Python exits): its exit
    status, once it has written anything it writes at exit."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None or getattr(gateway, "proc", None) is None:
        return None
    gateway.shutdown()
    gateway.proc.stdin.close()
    status = gateway.proc.wait(timeout=300)
    SparkContext._gateway = SparkContext._jvm = None
    return status


@pytest.fixture(scope="module", autouse=True)
def _spark_importable():
    """pyspark importable for this module only. Left on the path, it changes what pandera
    imports in every later test of the same pytest process (a run's validation step then
    ended in SystemExit), so the path and pyspark's modules go when the module ends."""
    added = str(SPARK_SITE) not in sys.path and SPARK_SITE.is_dir()
    if added:
        sys.path.append(str(SPARK_SITE))
    yield
    if added:
        sys.path.remove(str(SPARK_SITE))
        for name in [m for m in sys.modules if m.split(".")[0] in ("pyspark", "py4j")]:
            del sys.modules[name]


def _spark_or_skip():
    """pyspark's SparkSession, or a skip (a failure on CI) saying what is missing."""
    reason = None
    if shutil.which("java") is None:
        reason = "no Java (make test installs Debian's openjdk-17-jre-headless as root)"
    else:
        try:
            from pyspark.sql import SparkSession

            return SparkSession
        except ImportError:
            reason = "no pyspark (make test installs it; or pip install -e '.[spark]')"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the Spark tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def home(shared_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's demo home: eight months of every contract (the survey is
    quarterly); this module adds a month to it."""
    return copy_home(shared_demo, tmp_path_factory.mktemp("spark") / "home")


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory):
    """One local Spark session for the module: one core, one shuffle partition, no UI, no
    whole-stage generated code, its catalog in a scratch folder, timestamps shown in UTC as
    the lake stores them."""
    session_class = _spark_or_skip()
    scratch = tmp_path_factory.mktemp("spark-session")
    started = time.monotonic()
    spark = (
        session_class.builder.master("local[1]")
        .appName("datashare-lake-test")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # No whole-stage Java generated per query (a Janino compile each, which tables this
        # small never repay): a public setting an analyst may use too; the same Parquet
        # reader reads the same files, partitions, schema and values. (Spark's internal
        # NO_CODEGEN mode, for its own tests, is left alone: no analyst's Spark takes it.)
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={scratch} {JVM_OPTIONS}")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    print(f"Spark session started in {time.monotonic() - started:.1f} s")
    yield spark
    spark.stop()
    # The JVM ended here, not left to the worker's exit: it holds hundreds of MB.
    _stop_jvm()


def _statements(script: str) -> list[str]:
    """The statements of a `datashare lake ddl` script (comment lines dropped)."""
    body = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip()]


@pytest.fixture(scope="module")
def declared(home: Path, spark) -> list[str]:
    """Every statement of `datashare lake ddl --engine spark`, run in the Spark session."""
    started = time.monotonic()
    # Through the command's own entry point, in this process: a `datashare` process of its
    # own cost two seconds of imports.
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.delenv("DATASHARE_LAKE", raising=False)
        status = main(["--home", str(home), "lake", "ddl", "--engine", "spark"])
    assert status == 0, out.getvalue()
    statements = _statements(out.getvalue())
    for statement in statements:
        spark.sql(statement)
    print(f"{len(statements)} statements written and run in {time.monotonic() - started:.1f} s")
    return statements


@pytest.fixture(scope="module")
def warehouse(home: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        yield con


TABLES = [t.qualified for t in lake_tables(load_contracts(), MARTS.values())]
# Computed by the warehouse's views, not stored in the lake.
WAREHOUSE_ONLY = {"_month"}


def _normal(schema: pa.Schema) -> pa.Schema:
    """Arrow types as both engines mean them: string is string however large; an instant
    is an instant in whichever zone it is shown."""

    def normal(t: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(t):
            return pa.string()
        if pa.types.is_timestamp(t):
            return pa.timestamp("us", tz="UTC" if t.tz else None)
        return t

    return pa.schema([pa.field(f.name, normal(f.type)) for f in schema])


STORED = {
    t.qualified: {c.name for c in t.columns} for t in lake_tables(load_contracts(), MARTS.values())
}


def _warehouse_only(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """The warehouse's columns of `table` that are not in the lake's files."""
    schema, name = table.split(".")
    columns = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?",
        [schema, name],
    ).fetchall()
    return {c for (c,) in columns} - STORED[table]


@pytest.mark.slow
def test_every_table_and_mart_is_declared(declared: list[str], spark):
    found = {
        f"{db}.{row.tableName}"
        for db in ("curated", "oversight")
        for row in spark.sql(f"SHOW TABLES IN {db}").collect()
    }
    assert found == set(TABLES)
    assert len(TABLES) == len(load_contracts()) + len(MARTS)


@pytest.mark.slow
@pytest.mark.parametrize("table", TABLES)
def test_spark_reads_the_warehouses_rows_types_and_values(
    declared: list[str], spark, warehouse: duckdb.DuckDBPyConnection, table: str
):
    extra = _warehouse_only(warehouse, table)
    # What the warehouse adds is the month as a DATE, nothing stored.
    assert extra <= WAREHOUSE_ONLY | {"month"}, extra
    ours = warehouse.sql(f"SELECT * EXCLUDE ({', '.join(extra)}) FROM {table}" if extra
                         else f"SELECT * FROM {table}").to_arrow_table()  # fmt: skip
    # One Spark job a table: what Spark reads, partition column and all, compared here.
    theirs = spark.table(table).toArrow()
    if table.startswith("curated."):
        # The partition folder, read as a column: the same month as _period on every row.
        apart = duckdb.sql("SELECT count(*) FROM theirs WHERE period IS DISTINCT FROM _period")
        assert apart.fetchall() == [(0,)]
        theirs = theirs.drop_columns(["period"])
    assert _normal(theirs.schema) == _normal(ours.schema), table
    # Every table and mart has rows on the demo home, so nothing passes for being empty.
    assert theirs.num_rows == ours.num_rows > 0, table
    con = duckdb.connect()
    con.register("a", theirs)
    con.register("b", ours)
    differing = con.execute(
        "SELECT count(*) FROM ((SELECT * FROM a EXCEPT ALL SELECT * FROM b) "
        "UNION ALL (SELECT * FROM b EXCEPT ALL SELECT * FROM a))"
    ).fetchone()[0]
    assert differing == 0, table


@pytest.mark.slow
@pytest.mark.parametrize("table", TABLES)
def test_spark_shows_the_warehouses_column_comments(
    declared: list[str], spark, warehouse: duckdb.DuckDBPyConnection, table: str
):
    schema, name = table.split(".")
    ours = dict(
        warehouse.execute(
            "SELECT column_name, comment FROM duckdb_columns() "
            "WHERE schema_name = ? AND table_name = ?",
            [schema, name],
        ).fetchall()
    )
    theirs = {f.name: f.metadata.get("comment") for f in spark.table(table).schema.fields}
    for column, comment in theirs.items():
        if column == "period" and table.startswith("curated."):
            assert "_period" in comment
        else:
            assert comment == ours[column], (table, column)


@pytest.mark.slow
def test_a_month_published_later_is_read_after_the_repair_statement(
    home: Path, declared: list[str], spark, tmp_path: Path
):
    # What a platform team does each month: the DDL's MSCK REPAIR finds a new month's
    # folder. A copy of the lake with the last month copied under a later period stands in.
    copy = tmp_path / "lake"
    shutil.copytree(home / "lake" / "curated", copy / "curated")
    folder = copy / "curated" / "contract=workforce"
    last = sorted(p.name for p in folder.glob("period=*"))[-1]
    shutil.copytree(folder / last, folder / "period=2099-01")
    table = next(t for t in lake_tables(load_contracts(), []) if t.name == "workforce")
    for statement in ddl_statements(
        "spark", str(copy), [dataclasses.replace(table, schema="later")]
    ):
        spark.sql(statement)
    month = spark.table("curated.workforce").where(f"period = '{last[len('period=') :]}'").count()
    assert month > 0
    assert spark.table("later.workforce").where("period = '2099-01'").count() == month
    assert (
        spark.table("later.workforce").count() == spark.table("curated.workforce").count() + month
    )


def test_the_s3_lake_is_named_as_each_engine_reaches_it():
    tables = lake_tables(load_contracts(), MARTS.values())
    spark_sql = " ".join(ddl_statements("spark", "s3://mopac-lake/datashare", tables))
    trino_sql = " ".join(ddl_statements("trino", "s3://mopac-lake/datashare", tables))
    # Spark reads S3 through Hadoop's S3A; Trino and Athena take s3:// as it is.
    assert "LOCATION 's3a://mopac-lake/datashare/curated/contract=stop_and_search'" in spark_sql
    assert "'s3://mopac-lake/datashare/curated/contract=stop_and_search'" in trino_sql
    assert "s3a://" not in trino_sql
    # Every engine declares every mart, over its folder (one file in it).
    where = "mopac-lake/datashare/oversight/stop_search_disproportionality"
    assert f"LOCATION 's3a://{where}'" in spark_sql
    assert f"external_location = 's3://{where}', format = 'PARQUET')" in trino_sql
    athena = ddl_statements("athena", "s3://mopac-lake/datashare", tables)
    assert f"LOCATION 's3://{where}/'" in " ".join(athena)
    for engine_sql in (spark_sql, trino_sql, " ".join(athena)):
        assert ".parquet'" not in engine_sql  # a table over a folder, never over a file
    assert sum("CREATE EXTERNAL TABLE" in s for s in athena) == len(load_contracts()) + len(MARTS)
    with pytest.raises(ValueError, match="Athena reads S3 only"):
        ddl_statements("athena", "/srv/lake", tables)


# Any character a description may hold, with what a literal must escape drawn often: from
# every character alone, ten examples would hardly ever hold a quote or a backslash.
COMMENT_CHARACTERS = st.one_of(
    st.sampled_from("'\\\"`;\\n"), st.characters(blacklist_categories=("Cs", "Cc"))
)

# What a wrong escape gets wrong, every time the tests run.
TRICKY_COMMENTS = ["the force's own", "C:\\share\\new", "\\'", "''", '"quoted"', "a\\nb"]


@pytest.mark.slow
# Each example sends eight to sixteen texts in one statement (five statements, at least 40
# texts, as the ten of four to eight texts and the 40 of one text each did before): a
# Spark query is most of an example's time, and a text's escaping does not depend on the
# others beside it. Trino's quoting, DuckDB's, is held over a hundred examples below.
@settings(max_examples=5, deadline=None)
@given(st.lists(st.text(alphabet=COMMENT_CHARACTERS, max_size=40), min_size=8, max_size=16))
@example(TRICKY_COMMENTS)
def test_any_comment_reaches_spark_as_written(spark, texts: list[str]):
    # A contract's description is free text: quotes and backslashes survive the statement.
    columns = ", ".join(f"{_literal('spark', text)} AS t{i}" for i, text in enumerate(texts))
    assert list(spark.sql(f"SELECT {columns}").collect()[0]) == texts


@given(st.text(alphabet=COMMENT_CHARACTERS, max_size=40))
@example("".join(TRICKY_COMMENTS))
def test_any_comment_reaches_trino_as_written(text: str):
    # Trino's literals are standard SQL's, as DuckDB's are: a quote is doubled.
    assert duckdb.sql(f"SELECT {_literal('trino', text)}").fetchall()[0][0] == text
