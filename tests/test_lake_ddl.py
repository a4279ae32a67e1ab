"""`datashare lake ddl --engine trino|athena`: the statements parse as those engines' SQL
and declare what the lake actually holds.

Neither Trino nor Athena can be run here, so each statement is parsed by `sqlglot` in the
engine's dialect (a statement that does not parse fails), and every CREATE TABLE is read
back: its location must be a folder of the lake, and its columns, in order and with their
types, those of the Parquet files in that folder, read from a demo home's lake. Spark's
statements are run by a real Spark in tests/test_spark_lake.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from pipelines.cli.main import main
from pipelines.oversight.lake_ddl import LakeColumn, LakeTable, ddl_statements, lake_tables
from pipelines.oversight.mart_runner import MARTS
from schemas.contract import load_contracts
from tests.conftest import copy_home

S3_LAKE = "s3://mopac-lake/datashare"
TABLES = lake_tables(load_contracts(), MARTS.values())
SYNC = re.compile(r"CALL system\.sync_partition_metadata\('(\w+)', '(\w+)', 'FULL'\)")
T = exp.DataType.Type


def _parse(engine: str, statement: str) -> exp.Expression:
    """The statement as `engine`'s SQL; a syntax error raises."""
    return sqlglot.parse_one(statement, read=engine, error_level=sqlglot.ErrorLevel.RAISE)


@dataclasses.dataclass
class Declared:
    """A CREATE TABLE as the engine reads it."""

    name: str  # schema.table
    columns: list[tuple[str, exp.DataType, str]]  # name, type, comment (partition excluded)
    partition: tuple[str, exp.DataType] | None
    location: str
    comment: str


def _comment(column: exp.ColumnDef) -> str:
    found = column.find(exp.CommentColumnConstraint)
    return found.this.this if found else ""


def _declared(engine: str, statement: str) -> Declared:
    create = _parse(engine, statement)
    assert isinstance(create, exp.Create) and create.kind == "TABLE", statement[:200]
    assert create.args.get("exists"), "IF NOT EXISTS: running the script again is harmless"
    props = create.args["properties"].expressions
    defs = list(create.this.expressions)
    partition = None
    by = next((p for p in props if isinstance(p, exp.PartitionedByProperty)), None)
    if engine == "trino":
        where = next(p for p in props if p.name == "external_location").args["value"].this
        if by is not None:
            # Trino lists the partition column last among the columns and names it again.
            assert [e.this for e in by.this.expressions] == [defs[-1].name]
            last = defs.pop()
            partition = (last.name, last.args["kind"])
    else:
        where = next(p for p in props if isinstance(p, exp.LocationProperty)).this.this
        if by is not None:
            (part,) = by.this.expressions
            partition = (part.name, part.args["kind"])
    fmt = next(p for p in props if isinstance(p, exp.FileFormatProperty))
    assert fmt.name.upper() == "PARQUET"
    comment = next(p for p in props if isinstance(p, exp.SchemaCommentProperty)).this.this
    columns = [(d.name, d.args["kind"], _comment(d)) for d in defs]
    return Declared(create.this.this.sql(), columns, partition, where, comment)


def _creates(engine: str, statements: list[str]) -> list[Declared]:
    return [_declared(engine, s) for s in statements if s.startswith("CREATE") and " TABLE " in s]


# The engines' types of the Parquet the pipeline writes, written out here from the engines'
# documentation (Trino's Hive connector, Athena's data types), not from lake_ddl's mapping.
def _type_problem(declared: exp.DataType, written: pa.DataType) -> str | None:
    kind = declared.this
    if kind in (T.VARCHAR, T.TEXT):
        ok = pa.types.is_string(written) or pa.types.is_large_string(written)
    elif kind == T.BOOLEAN:
        ok = pa.types.is_boolean(written)
    elif kind in (T.TINYINT, T.SMALLINT, T.INT, T.BIGINT):
        bits = {T.TINYINT: 8, T.SMALLINT: 16, T.INT: 32, T.BIGINT: 64}[kind]
        ok = pa.types.is_signed_integer(written) and written.bit_width == bits
    elif kind == T.FLOAT:  # Trino's REAL, Athena's FLOAT: 32 bits
        ok = pa.types.is_float32(written)
    elif kind == T.DOUBLE:
        ok = pa.types.is_float64(written)
    elif kind == T.DECIMAL:
        precision, scale = (int(e.this.this) for e in declared.expressions)
        ok = pa.types.is_decimal(written) and (written.precision, written.scale) == (
            precision,
            scale,
        )
    elif kind == T.DATE:
        ok = pa.types.is_date32(written)
    elif kind == T.TIMESTAMP:
        ok = pa.types.is_timestamp(written)
    else:
        ok = False
    return None if ok else f"declared {declared.sql()}, written {written}"


def _problems(table: Declared, written: pa.Schema) -> list[str]:
    """How the declared columns differ from the Parquet file's, in order and type."""
    names = [name for name, _, _ in table.columns]
    if names != written.names:
        return [f"{table.name}: columns {names} but the file has {written.names}"]
    return [
        f"{table.name}.{name}: {problem}"
        for (name, kind, _), field in zip(table.columns, written, strict=True)
        if (problem := _type_problem(kind, field.type))
    ]


# -- every statement parses, and declares every table once -----------------------------------


@pytest.mark.parametrize("engine", ["trino", "athena"])
def test_every_statement_parses_and_every_table_and_mart_is_declared_once(engine: str):
    statements = ddl_statements(engine, S3_LAKE, TABLES)
    for statement in statements:
        if statement.startswith("CALL"):
            # sqlglot keeps CALL as an opaque command: its procedure call is parsed here.
            schema, name = SYNC.fullmatch(statement).groups()
            assert f"{schema}.{name}" in {t.qualified for t in TABLES if t.partitioned}
            _parse(engine, "SELECT " + statement.removeprefix("CALL "))
        else:
            assert isinstance(_parse(engine, statement), exp.Create), statement[:200]
    creates = _creates(engine, statements)
    assert sorted(c.name for c in creates) == sorted(t.qualified for t in TABLES)
    assert {t.schema for t in TABLES} == {"curated", "oversight"}
    assert sum(t.schema == "oversight" for t in TABLES) == len(MARTS)
    by_name = {t.qualified: t for t in TABLES}
    for declared in creates:
        table = by_name[declared.name]
        # Over the table's folder: a mart's is oversight/<mart>, never a single file.
        assert declared.location.rstrip("/") == f"{S3_LAKE}/{table.key}"
        assert (declared.partition is not None) == table.partitioned
        assert declared.comment == table.comment
        assert [(n, c) for n, _, c in declared.columns] == [
            (c.name, c.comment) for c in table.columns
        ]
    if engine == "trino":
        synced = {m.groups() for s in statements if (m := SYNC.fullmatch(s))}
        assert synced == {(t.schema, t.name) for t in TABLES if t.partitioned}


COMMENTS = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)


@settings(max_examples=60, deadline=None)
@given(table_comment=COMMENTS, column_comment=COMMENTS, partitioned=st.booleans())
def test_any_comment_reaches_trino_and_athena_as_written(
    table_comment: str, column_comment: str, partitioned: bool
):
    # A contract's or a measure's description is free text: quotes, backslashes and `;`
    # survive each engine's literal rules.
    column = LakeColumn("n", pa.int64(), column_comment)
    table = LakeTable("oversight", "t", "oversight/t", (column,), table_comment, partitioned)
    for engine in ("trino", "athena"):
        (declared,) = _creates(engine, ddl_statements(engine, S3_LAKE, [table]))
        assert declared.comment == table_comment
        assert declared.columns[0][2] == column_comment


# -- the statements against the Parquet a demo home's lake holds ------------------------------


@pytest.fixture(scope="module")
def home(shared_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_home(shared_demo, tmp_path_factory.mktemp("lake-ddl") / "home")


def _ddl(home: Path, engine: str, lake: str) -> list[str]:
    """`datashare lake ddl` as a platform team runs it, through the command's own entry
    point in this process (a `datashare` process of its own cost each test two seconds of
    imports): its statements, comments dropped."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.delenv("DATASHARE_LAKE", raising=False)
        status = main(["--home", str(home), "lake", "ddl", "--engine", engine, "--lake", lake])
    assert status == 0, out.getvalue()
    body = "\n".join(line for line in out.getvalue().splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip()]


def _written(lake: Path, table: Declared) -> tuple[list[Path], pa.Schema]:
    """The Parquet files under the table's folder, and their (one) schema."""
    key = table.location.removeprefix(f"{S3_LAKE}/").removeprefix(f"file://{lake}/")
    folder = lake / key.rstrip("/")
    files = sorted(folder.rglob("*.parquet"))
    schemas = {pq.read_schema(f).remove_metadata() for f in files}
    assert len(schemas) == 1, (table.name, schemas)
    return [f.relative_to(folder) for f in files], schemas.pop()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["trino", "athena"])
def test_each_table_declares_the_columns_and_types_of_the_parquet_in_its_folder(
    home: Path, engine: str
):
    lake = (home / "lake").resolve()
    # Trino is given the folder lake itself (file://); Athena, which reads S3 only, the
    # lake as it would be in a bucket: the same keys under an s3:// prefix.
    creates = _creates(engine, _ddl(home, engine, str(lake) if engine == "trino" else S3_LAKE))
    assert len(creates) == len(load_contracts()) + len(MARTS)
    problems = []
    for table in creates:
        files, schema = _written(lake, table)
        # Every table has Parquet on the demo home, so nothing passes for being empty.
        assert files, table.name
        if table.partition is None:
            # A mart: the one file in its folder.
            assert table.name.startswith("oversight.") and files == [Path("data.parquet")]
        else:
            name, kind = table.partition
            assert name == "period" and kind.this in (T.VARCHAR, T.TEXT)
            assert all(re.fullmatch(r"period=\d{4}-\d{2}", f.parts[0]) for f in files), files
        problems += _problems(table, schema)
    assert problems == []


def test_a_wrong_column_or_type_is_caught():
    # The check above is sharp: one declared type or column off, and it says which.
    written = pa.schema([("month", pa.date32()), ("searches", pa.int64()), ("rate", pa.float64())])
    good = LakeTable(
        "oversight",
        "m",
        "oversight/m",
        tuple(LakeColumn(f.name, f.type, "") for f in written),
        "",
        False,
    )
    for engine in ("trino", "athena"):
        (ok,) = _creates(engine, ddl_statements(engine, S3_LAKE, [good]))
        assert _problems(ok, written) == []
        wrong_type = dataclasses.replace(
            good,
            columns=(*good.columns[:1], LakeColumn("searches", pa.int32(), ""), good.columns[2]),
        )
        (declared,) = _creates(engine, ddl_statements(engine, S3_LAKE, [wrong_type]))
        assert _problems(declared, written) == ["oversight.m.searches: declared INT, written int64"]
        missing = dataclasses.replace(good, columns=good.columns[:2])
        (declared,) = _creates(engine, ddl_statements(engine, S3_LAKE, [missing]))
        assert "columns ['month', 'searches'] but the file has" in _problems(declared, written)[0]
