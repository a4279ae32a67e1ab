"""What an analyst reads in a warehouse catalog, for tests that compare two catalogs
(tests/test_catalog_current.py, and tests/test_pipeline.py's new-month test)."""

from pathlib import Path

import duckdb


def catalog_as_read(path: Path) -> dict[str, object]:
    """What an analyst sees of a catalog: every object with its comment, every column with
    its comment, and each view's rows (sorted)."""
    with duckdb.connect(str(path), read_only=True) as con:
        objects = con.execute(
            "SELECT schema_name, view_name, comment FROM duckdb_views() "
            "WHERE NOT internal UNION ALL SELECT schema_name, table_name, comment "
            "FROM duckdb_tables() WHERE schema_name <> 'governance' OR table_name <> 'catalog' "
            "ORDER BY ALL"
        ).fetchall()
        columns = con.execute(
            "SELECT schema_name, table_name, column_name, data_type, comment "
            "FROM duckdb_columns() WHERE NOT internal "
            "AND NOT (schema_name = 'governance' AND table_name = 'catalog') ORDER BY ALL"
        ).fetchall()
        rows = {
            f"{schema}.{name}": sorted(
                con.execute(f"SELECT * FROM {schema}.{name}").fetchall(), key=repr
            )
            for schema, name, _ in objects
            if schema in ("curated", "oversight", "governance")
        }
    return {"objects": objects, "columns": columns, "rows": rows}
