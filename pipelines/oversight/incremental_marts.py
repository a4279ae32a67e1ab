"""Recomputing only the months that changed: the incremental plan of the marts' runner.

A month-end run adds one month to years of history; recomputing every month of the
stop-and-search marts made the run's cost grow with the history (issue 21). A mart whose
YAML declares `incremental` (definition.Incremental) keeps, in its file's Parquet
metadata (`COMPUTED_FROM`), what it was computed from: a fingerprint of its SQL,
definition and reference data, and which deliveries' rows (and how many) each period
of each source contract held. The next computation compares: if only periods of the
declared contract changed, it recomputes the months from the first changed one to 11
months after the last (the 12-month windows that hold them), reading the curated rows of
those months and the 11 before, and replaces those months' rows in the file. Anything
it cannot reason about (no file yet, another fingerprint, another source contract
changed, a row outside its period's month, a new set of groups) recomputes everything.

`mart_runner.write_mart` asks `incremental_table` for a mart's plan over a connection of
the runner's own (`own_connection` .. `release_connection`: the per-connection answers
below are kept while it is open), and `read_changed_sources` for the provenance rows of the
periods that changed. No Dagster here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.lake.mart_files import mart_key
from pipelines.lake.provenance import PreviousSources, mart_source_rows
from pipelines.lake.store import Lake
from pipelines.oversight.definition import Incremental, Mart, mart_yaml
from pipelines.oversight.mart_queries import mart_sql, sql_string
from pipelines.warehouse import reference
from pipelines.warehouse.catalog import MONTH_COLUMN, MONTH_OF_PERIOD
from pipelines.warehouse.record_cache import curated_by_delivery, plain_curated_files
from schemas.contract import Contract

# The connections `mart_runner.warehouse_connection` opened (by id, while open): only in
# those is `curated.<table>` a view of the runner's that a slice may narrow for a while.
_OWN_CONNECTIONS: set[int] = set()


def own_connection(
    con: duckdb.DuckDBPyConnection, lake: Lake | None = None, kept: Path | None = None
) -> None:
    """`con` is the runner's own from now on: its curated views may be narrowed, and the
    answers below are kept for it until `release_connection`. `lake` and `kept`: the lake
    behind its warehouse and where what is read of the lake's files is kept
    (`record_cache.cache_folder`), for the counts of the curated rows by period."""
    _OWN_CONNECTIONS.add(id(con))
    if lake is not None and kept is not None:
        _KEPT[id(con)] = (lake, kept)


def release_connection(con: duckdb.DuckDBPyConnection) -> None:
    """Forget `con` and every answer kept for it (it is about to close)."""
    _OWN_CONNECTIONS.discard(id(con))
    _KEPT.pop(id(con), None)
    _USED.pop(id(con), None)
    _OUTSIDE.pop(id(con), None)
    _REFERENCE.pop(id(con), None)
    _PERIOD_SOURCES.pop(id(con), None)
    _VIEWS.pop(id(con), None)


COMPUTED_FROM = b"datashare:computed_from"
# Bumped when what is recorded, or how a slice is merged, changes: older files recompute.
INCREMENTAL_FORMAT = 1

# Per open connection, the deliveries and row counts by period of each contract (one scan
# of `_period` and `_delivery_id`, shared by the marts the connection computes). Read
# before the marts are computed, so that rows published meanwhile differ from what the
# file records, and the next computation takes them.
_USED: dict[int, dict[str, dict[str, list[list]]]] = {}
# Per open connection, the rows outside their period's month, by query (the same kind of
# snapshot as `_USED`).
_OUTSIDE: dict[int, dict[str, int]] = {}


# Per open connection of this module's whose lake keeps what is read of its files: the lake
# and the cache folder (`own_connection`).
_KEPT: dict[int, tuple[Lake, Path]] = {}

_USED_SQL = "SELECT _period, _delivery_id, {count} FROM {table} GROUP BY ALL ORDER BY ALL"


def _used_by_period(con: duckdb.DuckDBPyConnection, contract: str) -> dict[str, list[list]]:
    cache = _USED.setdefault(id(con), {})
    if contract not in cache:
        lake, kept = _KEPT.get(id(con), (None, None))
        files = None
        if lake is not None:
            files = plain_curated_files(_warehouse_views(con).get(contract), lake)
        if files is None:
            sql = _USED_SQL.format(count="count(*)", table=f"curated.{contract}")
            rows = con.execute(sql).fetchall()
        else:
            # What each month's file holds is kept while the file is unchanged: a scan of
            # the whole view opened every month's file three times for one new month
            # (issue 21, history row). The files the view reads, counted alike.
            con.register("_used", curated_by_delivery(con, lake, kept, contract, files))
            try:
                rows = con.execute(_USED_SQL.format(count="sum(n)", table="_used")).fetchall()
            finally:
                con.unregister("_used")
        by_period: dict[str, list[list]] = {}
        for period, delivery, n in rows:
            by_period.setdefault(str(period), []).append([delivery, int(n)])
        cache[contract] = by_period
    return cache[contract]


# Each mart's definition as YAML, by mart (kept with it: a Mart is never changed): the
# fingerprint of every mart a run writes reads it, and PyYAML's writer took 0.03 s of CPU a
# mart.
_DEFINITION_TEXT: dict[int, tuple[Mart, str]] = {}


def _definition_text(mart: Mart) -> str:
    """`mart_yaml(mart)`, written once per mart."""
    if id(mart) not in _DEFINITION_TEXT:
        _DEFINITION_TEXT[id(mart)] = (mart, mart_yaml(mart))
    return _DEFINITION_TEXT[id(mart)][1]


def _fingerprint(con: duckdb.DuckDBPyConnection, mart: Mart, contracts: dict[str, Contract]) -> str:
    """What, besides the curated rows, the mart's figures depend on: its whole query and
    definition, the reference tables and macros it reads, the source contracts' versions,
    DuckDB's version."""
    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        for part in parts:
            digest.update(str(part).encode())
            digest.update(b"\0")

    add(INCREMENTAL_FORMAT, duckdb.__version__, mart_sql(mart, contracts), _definition_text(mart))
    add(Path(reference.__file__).read_text(encoding="utf-8"))
    sources = [c for c in mart.source_contracts(contracts) if c in contracts]
    add(*(f"{c}={contracts[c].version}" for c in sources))
    add(*_reference_parts(con))
    return digest.hexdigest()


# Per open connection of this module's, the reference schema's tables and views as
# `_fingerprint` reads them: made when the connection opens and not changed after, so read
# once, not once per mart.
_REFERENCE: dict[int, list] = {}


def _reference_parts(con: duckdb.DuckDBPyConnection) -> list:
    """The reference tables (name, then every row) and views (names and SQL) in `con`."""
    if id(con) in _REFERENCE:
        return _REFERENCE[id(con)]
    parts: list = []
    tables = con.execute(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = 'oversight_ref' AND table_catalog = current_database() "
        "ORDER BY table_name"
    ).fetchall()
    for table, kind in tables:
        if kind == "BASE TABLE":
            rows = con.execute(f"SELECT * FROM oversight_ref.{table} ORDER BY ALL").fetchall()
            parts += [table, rows]
    parts.append(
        con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'oversight_ref' "
            "AND database_name = current_database() ORDER BY view_name"
        ).fetchall()
    )
    if id(con) in _OWN_CONNECTIONS:
        _REFERENCE[id(con)] = parts
    return parts


def _recorded(lake: Lake, name: str) -> tuple[pa.Table, dict] | None:
    """The mart's file as last written, and what it was computed from (None if unknown)."""
    try:
        table = lake.read_table(mart_key(name))
    except FileNotFoundError:
        return None
    raw = (table.schema.metadata or {}).get(COMPUTED_FROM)
    if not raw:
        return None
    return table, json.loads(raw)


def _month(period: str) -> int | None:
    """A `YYYY-MM` period as a month number (None for any other kind of period)."""
    try:
        year, month = (int(x) for x in period.split("-"))
    except ValueError:
        return None
    return year * 12 + month - 1 if len(period) == 7 and 1 <= month <= 12 else None


def _span(periods: list[str]) -> tuple[int, int]:
    """The first and the last of `periods` (all `YYYY-MM`), as month numbers."""
    months = [m for m in map(_month, periods) if m is not None]
    return min(months), max(months)


def _iso(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}-01"


def _columns_read(con: duckdb.DuckDBPyConnection, expression: str) -> list[str] | None:
    """The columns of a row that the SQL `expression` reads, from DuckDB's own parse of it;
    None when that cannot be told for sure (a subquery, a qualified name, no column)."""
    try:
        ((raw,),) = con.execute("SELECT json_serialize_sql(?)", [f"SELECT {expression}"]).fetchall()
    except duckdb.Error:
        return None
    tree = json.loads(raw)
    found: set[str] = set()
    unsure = bool(tree.get("error"))

    def walk(node: object) -> None:
        nonlocal unsure
        if isinstance(node, dict):
            if node.get("class") == "SUBQUERY":
                unsure = True
            if node.get("class") == "COLUMN_REF":
                names = node.get("column_names") or []
                if len(names) == 1:
                    found.add(str(names[0]))
                else:
                    unsure = True
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree.get("statements"))
    return None if unsure or not found else sorted(found)


def _rows_outside_month(
    con: duckdb.DuckDBPyConnection, inc: Incremental, periods: list[str] | None
) -> int:
    """Curated rows of `inc.contract` (of `periods`, or all) whose month is not their
    period's: a slice by period would miss or misplace them. Counted once per connection:
    both stop-and-search marts ask the same.

    `month_of_row` is worked out once per distinct value of the columns it reads and
    period, not once per row: a month of 2,000,000 searches has some 44,000 distinct
    timestamps, and the London month of each row (a time zone conversion) cost a quarter
    of a second of CPU; counted by distinct value, a sixth of that."""
    where = ""
    table = f"curated.{inc.contract}"
    if periods is not None:
        where = "WHERE _period IN (" + ", ".join(sql_string(p) for p in periods) + ")"
        # Those periods' files only (the periods asked about have rows: they are read).
        known = set(_used_by_period(con, inc.contract))
        table = _period_source(con, inc.contract, periods, known) or table
    columns = _columns_read(con, inc.month_of_row)
    if columns is None or MONTH_COLUMN in columns:
        sql = (
            f"SELECT count(*) FROM {table} "
            f"{where} {'AND' if where else 'WHERE'} ({inc.month_of_row}) IS DISTINCT FROM _month"
        )
    else:
        read = ", ".join(f'"{c}"' for c in [*columns, "_period"])
        sql = (
            f"SELECT coalesce(sum(_rows), 0) FROM ("
            f"  SELECT *, {MONTH_OF_PERIOD} FROM ("
            f"    SELECT {read}, count(*) AS _rows FROM {table} {where}"
            f"    GROUP BY ALL))"
            f" WHERE ({inc.month_of_row}) IS DISTINCT FROM _month"
        )
    counted = _OUTSIDE.setdefault(id(con), {})
    if sql not in counted:
        ((n,),) = con.execute(sql).fetchall()
        counted[sql] = int(n)
    return counted[sql]


Plan = tuple[pa.Table | None, dict | None, PreviousSources | None]


def incremental_table(
    mart: Mart,
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    contracts: dict[str, Contract],
) -> Plan:
    """The mart recomputed for the months that changed only, what it is now computed
    from, and which periods of which contracts changed since its last provenance record
    (`PreviousSources`: the rows of the others are that record's); (None, what it is
    computed from, None) when the whole mart must be computed, and (None, None, None) for
    a mart that is not incremental or a connection not of this module."""
    inc = mart.incremental
    if inc is None or id(con) not in _OWN_CONNECTIONS:
        return None, None, None
    if inc.by_period:
        return _incremental_by_period(mart, inc, con, lake, contracts)
    return _incremental_by_month(mart, inc, con, lake, contracts)


def _changed_periods(
    before: dict[str, dict], after: dict[str, dict], contracts: list[str]
) -> dict[str, list[str]]:
    """Per contract of `contracts`, the periods whose deliveries or row counts differ."""
    changed = {}
    for c in contracts:
        old, new = before.get(c, {}), after.get(c, {})
        periods = sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))
        if periods:
            changed[c] = periods
    return changed


def _previous_sources(old: dict, changed: dict[str, list[str]]) -> PreviousSources | None:
    """The last provenance record of a mart computed for `changed` only (None if unknown)."""
    key = old.get("sources_key")
    return PreviousSources(key, changed) if key else None


def _curated_views(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The curated views of the runner's own database (a table with no data yet has none)."""
    return {
        name
        for (name,) in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'curated' "
            "AND database_name = current_database()"
        ).fetchall()
    }


def _sources_now(
    mart: Mart, con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]
) -> tuple[list[str], dict]:
    """The contracts `mart` reads, and what it would be computed from now: its fingerprint
    and each source's deliveries and row counts by period."""
    sources = [c for c in mart.source_contracts(contracts) if c in contracts]
    now = {
        "fingerprint": _fingerprint(con, mart, contracts),
        "periods": {c: _used_by_period(con, c) for c in sources},
    }
    return sources, now


def _incremental_by_month(
    mart: Mart,
    inc: Incremental,
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    contracts: dict[str, Contract],
) -> Plan:
    """`incremental_table` for a mart declared by month window."""
    views = _curated_views(con)
    if inc.contract not in views:
        return None, None, None  # no curated rows yet: an empty table stands in
    if not con.execute(
        "SELECT 1 FROM duckdb_columns() WHERE database_name = 'warehouse' "
        "AND schema_name = 'curated' AND table_name = ? AND column_name = '_month'",
        [inc.contract],
    ).fetchall():
        return None, None, None  # a catalog built before `_month`: sliced by nothing
    sources, now = _sources_now(mart, con, contracts)
    months = [_month(p) for p in now["periods"][inc.contract]]
    if None in months:
        return None, None, None  # periods that are not months: always computed whole
    recorded = _recorded(lake, mart.name)
    others = [c for c in sources if c != inc.contract]
    changed: list[str] | None = None
    if recorded is not None:
        old_table, old = recorded
        if (
            old.get("fingerprint") == now["fingerprint"]
            and old.get("rows_in_period")
            and all(old["periods"].get(c) == now["periods"][c] for c in others)
        ):
            by_contract = _changed_periods(old["periods"], now["periods"], [inc.contract])
            changed = by_contract.get(inc.contract, [])
    if changed is None or any(_month(p) is None for p in changed):
        # Everything, and whether every row is in its period's month (so that a later run
        # may slice by period).
        now["rows_in_period"] = _rows_outside_month(con, inc, None) == 0
        return None, now, None
    present = [p for p in changed if p in now["periods"][inc.contract]]
    if present and _rows_outside_month(con, inc, present):
        now["rows_in_period"] = _rows_outside_month(con, inc, None) == 0
        return None, now, None
    now["rows_in_period"] = True
    kept = _previous_sources(old, {inc.contract: changed} if changed else {})
    if not changed:
        return old_table, now, kept  # nothing it reads changed: the same figures
    fresh = _slice(mart, inc, con, contracts, changed)
    merged = _merge(mart, inc, con, old_table, fresh, changed)
    return merged, now, (kept if merged is not None else None)


def _incremental_by_period(
    mart: Mart,
    inc: Incremental,
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    contracts: dict[str, Contract],
) -> Plan:
    """`incremental_table` for a mart declared by period: the periods of each contract
    whose deliveries or row counts changed since the file was written are computed again
    (every curated view narrowed to them) and swapped into the file's rows."""
    sources, now = _sources_now(mart, con, contracts)
    sliced = sources if inc.contract == "*" else [inc.contract]
    recorded = _recorded(lake, mart.name)
    if recorded is None:
        return None, now, None
    old_table, old = recorded
    others = [c for c in sources if c not in sliced]
    if old.get("fingerprint") != now["fingerprint"] or any(
        old["periods"].get(c) != now["periods"][c] for c in others
    ):
        return None, now, None
    changed = _changed_periods(old["periods"], now["periods"], sliced)
    kept = _previous_sources(old, changed)
    if not changed:
        return old_table, now, kept  # nothing it reads changed: the same figures
    fresh = _slice_periods(mart, con, contracts, sources, changed)
    return _merge_periods(mart, inc, con, old_table, fresh, changed), now, kept


def _slice_periods(
    mart: Mart,
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    sources: list[str],
    changed: dict[str, list[str]],
) -> pa.Table:
    """The mart over the curated rows of the changed periods only, of every source."""
    views = _curated_views(con)
    narrowed = {}
    for c in sources:
        periods = ", ".join(sql_string(p) for p in changed.get(c, [])) or "NULL"
        # A table with no data yet is no view, and is left as it is.
        layout = [f"{c}_releases"] if contracts[c].layout else []
        for name in [n for n in [c, *layout] if n in views]:
            # A contract without releases: its changed periods' files only.
            source = None
            if not layout:
                known = set(_used_by_period(con, c))
                source = _period_source(con, name, changed.get(c, []), known)
            narrowed[name] = (
                f"SELECT * FROM {source or f'warehouse.curated.{name}'} "
                f"WHERE _period IN ({periods})"
            )
    with _narrowed(con, narrowed):
        return con.sql(mart_sql(mart, contracts)).to_arrow_table()


@contextmanager
def _narrowed(con: duckdb.DuckDBPyConnection, views: dict[str, str]) -> Iterator[None]:
    """`curated.<name>` is the query `views[name]` for a while, then the whole view again.

    The whole view is renamed aside and back rather than made anew: making a view of the
    curated files binds it, which opens every month's file (union_by_name reads each
    footer), and a slice reading a year of files would open all the history's to end."""
    aside = []
    try:
        for name, query in views.items():
            con.execute(f"ALTER VIEW curated.{name} RENAME TO {_ASIDE}{name}")
            aside.append(name)
            con.execute(f"CREATE VIEW curated.{name} AS {query}")
        yield
    finally:
        for name in aside:
            con.execute(f"DROP VIEW IF EXISTS curated.{name}")
            con.execute(f"ALTER VIEW curated.{_ASIDE}{name} RENAME TO {name}")


# The name a narrowed view's whole view has meanwhile (`_narrowed`).
_ASIDE = "_whole_"


def _merge_periods(
    mart: Mart,
    inc: Incremental,
    con: duckdb.DuckDBPyConnection,
    old: pa.Table,
    fresh: pa.Table,
    changed: dict[str, list[str]],
) -> pa.Table:
    """`old` with the rows of the changed (contract, period)s replaced by `fresh`'s, in the
    mart's order (every column of which is the mart's, so both sort alike)."""
    pairs = pa.table(
        {
            "_contract": [c for c, periods in changed.items() for _ in periods],
            "_period": [p for periods in changed.values() for p in periods],
        }
    )
    contract = inc.contract_column or sql_string(inc.contract)
    with _registered(con, old=old, fresh=fresh, changed=pairs) as name:
        inside = (
            f"EXISTS (SELECT 1 FROM {name['changed']} WHERE _contract = {contract} "
            f"AND _period = {inc.period_column})"
        )
        order = ", ".join(f"{c} NULLS LAST" for c in mart.order_by)
        return con.sql(
            f"SELECT * EXCLUDE (_src, _pos) FROM ("
            f"  SELECT *, 0 AS _src FROM {name['old']} WHERE NOT {inside}"
            f"  UNION ALL BY NAME"
            f"  SELECT *, 1 AS _src FROM {name['fresh']} WHERE {inside}"
            f") ORDER BY {order}, _src, _pos"
        ).to_arrow_table()


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, **tables: pa.Table) -> Iterator[dict[str, str]]:
    """`tables` readable in `con` for a while, under names of their own (`_merge_<name>`),
    each with its row's position in `_pos` (but for `changed`). A merge runs in the
    runner's connection: opening a DuckDB of its own cost more than the merge."""
    names = {name: f"_merge_{name}" for name in tables}
    try:
        for name, table in tables.items():
            if name != "changed":
                table = table.append_column("_pos", pa.array(range(table.num_rows)))
            con.register(names[name], table)
        yield names
    finally:
        for name in names.values():
            con.unregister(name)


# --- reading only the months a slice needs ---------------------------------------------
#
# A curated view reads `period=*/data.parquet` with union_by_name, so every query over it
# (and every narrowed view made of it) opened every month's file, to bind it and again to
# scan it, whatever its WHERE: on 94 months of stop and search the marts' step opened each
# month's file some 44 times for one new month (issue 21, history row). The queries that
# need a few months only read those months' files by path instead. The curated folders
# hold each period in `period=<p>/`, and the rows of a file are of that period (the lake's
# layout: `_period` is the folder's month), so the files of the periods read are all that
# `WHERE _period IN (...)` over the whole view keeps; the WHERE stays, to be sure.

_GLOB = re.compile(r"read_parquet\('((?:[^']|'')*period=\*/data\.parquet)'")


def _period_source(
    con: duckdb.DuckDBPyConnection, name: str, periods: list[str], known: set[str]
) -> str | None:
    """`_narrowed_source`, worked out once per connection for the same question: the
    marts of a month ask it several times (each a few milliseconds of catalog reads and a
    DESCRIBE), and the warehouse is attached read-only."""
    asked = _PERIOD_SOURCES.setdefault(id(con), {})
    key = (name, tuple(sorted(periods)), frozenset(known))
    if key not in asked:
        asked[key] = _narrowed_source(con, name, periods, known)
    return asked[key]


# Per open connection of this module's, `_period_source`'s answers.
_PERIOD_SOURCES: dict[int, dict[tuple, str | None]] = {}
# Per open connection of this module's, the SQL of the attached warehouse's curated views.
_VIEWS: dict[int, dict[str, str]] = {}


def _warehouse_views(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The SQL of each curated view of the warehouse attached to `con`, by name: read once
    per connection of this module's (each read of DuckDB's list of views cost 3 ms of CPU,
    and the marts of a month asked some twenty times); the warehouse is attached
    read-only, so they do not change while it is open."""
    if id(con) in _VIEWS:
        return _VIEWS[id(con)]
    views = dict(
        con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE database_name = 'warehouse' "
            "AND schema_name = 'curated'"
        ).fetchall()
    )
    if id(con) in _OWN_CONNECTIONS:
        _VIEWS[id(con)] = views
    return views


def _narrowed_source(
    con: duckdb.DuckDBPyConnection, name: str, periods: list[str], known: set[str]
) -> str | None:
    """SQL for `warehouse.curated.<name>` narrowed to `periods` that reads the files of
    those periods only (of them, those in `known`, the periods with curated rows), with
    the whole view's columns in its order; None where that cannot be said for sure (a view
    of another shape, or files whose columns the view does not list as they are) or where
    every period with rows is read, and the caller reads the whole view as before."""
    text = _warehouse_views(con).get(name)
    match = _GLOB.search(text) if text else None
    if match is None or known <= set(periods):
        return None  # (every period with rows: the whole view reads no more files)
    # The view's columns as DuckDB lists them (reading them opens no file): as bound when
    # the runner's connection made `curated.<name>` over it, so a file written since the
    # warehouse was built that widened a column's type shows here with the wider type.
    columns = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = 'warehouse' "
        "AND schema_name = 'curated' AND table_name = ? ORDER BY column_index",
        [name],
    ).fetchall()
    listed = ", ".join(sql_string(p) for p in periods) or "NULL"
    nulls = ", ".join(f'CAST(NULL AS {kind}) AS "{column}"' for column, kind in columns)
    shape = f"(SELECT {nulls} LIMIT 0)"
    glob = match.group(1)
    files = [glob.replace("period=*", f"period={p}") for p in sorted(set(periods) & known)]
    if not files:
        return shape
    select = text[text.index(" AS SELECT ") + len(" AS ") : match.start()]
    tail = text[match.end() :].rstrip().rstrip(";")
    listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    narrowed = f"{select}read_parquet({listing}{tail}"
    described = con.execute(f"DESCRIBE {narrowed}").fetchall()
    if not {(r[0], r[1]) for r in described} <= set(columns):
        return None  # columns the view, as stored, does not show so: read it whole
    return f"(SELECT * FROM ({shape} UNION ALL BY NAME {narrowed}) WHERE _period IN ({listed}))"


def read_changed_sources(
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    sources: dict[str, str],
    changed: dict[str, list[str]],
    cache: dict[tuple, list[dict]],
) -> None:
    """Put in `cache` the provenance rows of the changed periods (`mart_source_rows` of
    them), read from those periods' files only: the provenance of a computation that read
    only them reads them from `cache` (and the whole views, as before, if it must read
    every period)."""
    wanted = {c: (sources[c], tuple(p)) for c, p in changed.items() if p and c in sources}
    if all((c, *w) in cache for c, w in wanted.items()):
        return  # read for an earlier mart over this connection
    views = _curated_views(con)
    narrowed = {}
    for c, periods in changed.items():
        if c not in views or contracts[c].layout:
            continue
        source = _period_source(con, c, periods, set(_used_by_period(con, c)))
        if source is not None:
            narrowed[c] = f"SELECT * FROM {source}"
    with _narrowed(con, narrowed):
        mart_source_rows(con, sources, cache, changed)


def _slice(
    mart: Mart,
    inc: Incremental,
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    changed: list[str],
) -> pa.Table:
    """The mart over the curated rows of the months its changed months' rows need."""
    first, last = _span(changed)
    span = inc.window_months - 1
    known = set(_used_by_period(con, inc.contract))
    # The months of the window that have rows (their periods are months: the caller
    # checked), read by path.
    periods = [p for p in known if first - span <= (_month(p) or 0) <= last + span]
    source = _period_source(con, inc.contract, periods, known)
    whole = f"(SELECT * FROM warehouse.curated.{inc.contract})"
    query = (
        f"SELECT * FROM {source or whole} "
        f"WHERE _month BETWEEN DATE '{_iso(first - span)}' AND DATE '{_iso(last + span)}'"
    )
    with _narrowed(con, {inc.contract: query}):
        return con.sql(mart_sql(mart, contracts)).to_arrow_table()


def _merge(
    mart: Mart,
    inc: Incremental,
    con: duckdb.DuckDBPyConnection,
    old: pa.Table,
    fresh: pa.Table,
    changed: list[str],
) -> pa.Table | None:
    """`old` with the rows of the recomputed months replaced by `fresh`'s, in the mart's
    order; None when the slice shows another set of `same_values` than the file."""
    first, last = _span(changed)
    low, high = _iso(first), _iso(last + inc.window_months - 1)
    lead = mart.order_by[: mart.order_by.index(inc.month_column) + 1]
    with _registered(con, old=old, fresh=fresh) as name:
        month = inc.month_column
        inside = f"{month} BETWEEN DATE '{low}' AND DATE '{high}'"
        if con.execute(f"SELECT count(*) FROM {name['old']} WHERE {month} IS NULL").fetchall()[0][
            0
        ]:
            return None
        if inc.same_values:
            cols = ", ".join(inc.same_values)
            kept = con.execute(
                f"SELECT DISTINCT {cols} FROM {name['fresh']} WHERE {inside} ORDER BY ALL"
            ).fetchall()
            shown = con.execute(
                f"SELECT DISTINCT {cols} FROM {name['old']} ORDER BY ALL"
            ).fetchall()
            if kept != shown:
                return None
        order = ", ".join(f"{c} NULLS LAST" for c in lead)
        return con.sql(
            f"SELECT * EXCLUDE (_src, _pos) FROM ("
            f"  SELECT *, 0 AS _src FROM {name['old']} WHERE NOT ({inside})"
            f"  UNION ALL BY NAME"
            f"  SELECT *, 1 AS _src FROM {name['fresh']} WHERE {inside}"
            f") ORDER BY {order}, _src, _pos"
        ).to_arrow_table()
