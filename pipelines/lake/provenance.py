"""Provenance: which deliveries fed each oversight mart, month by month.

Whenever a mart is computed (`pipelines.oversight.mart_runner.write_mart`, from the
oversight assets or `datashare report --refresh`), one immutable Parquet file is written to
the lake's governance area, `governance/mart_sources/mart=<mart>/<when>-<id>.parquet`: one
row per (month, contract, delivery) whose curated rows the mart read, with the file's name, its
SHA-256 (the delivery id), the contract version it was checked against, when it was
received, how many of its rows were used and whether it restated an earlier delivery.

"Which deliveries fed a mart month" is read from the data itself, not from the register's
idea of what should be published: the `_delivery_id` and `_period` of the curated rows of
every contract the mart declares as a source (`Mart.sources`). The register then names the
files and dates. The warehouse shows every record as `governance.mart_sources_history` and
the latest computation of each mart as `governance.mart_sources`.

A mart recomputed only for the periods a run changed (its YAML's `incremental`) records
its provenance the same way: the rows of the periods it did not change are its previous
record's, and only the changed periods' curated rows and register records are read
(`PreviousSources`), so the cost follows the new months, not the history. The record is the
same as a full one: what the register says of a delivery (its file, when it was received
and published, what it restated, the contract version it was checked against) does not
change once its month is published, and the runner reads everything again when the
contracts' versions change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from pipelines.lake.store import Lake

MART_SOURCES_SCHEMA = pa.schema(
    [
        ("computation_id", pa.string()),
        ("computed_at", pa.timestamp("us", tz="UTC")),
        ("mart", pa.string()),
        ("period", pa.string()),
        ("contract", pa.string()),
        ("delivery_id", pa.string()),
        ("sha256", pa.string()),
        ("file_name", pa.string()),
        ("source_path", pa.string()),
        ("contract_version", pa.string()),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("published_at", pa.timestamp("us", tz="UTC")),
        ("rows_used", pa.int64()),
        ("restated_delivery_id", pa.string()),
        ("restated_file_name", pa.string()),
    ]
)

MART_SOURCES_PATTERN = "governance/mart_sources/mart=*/*.parquet"

MART_SOURCES_COLUMN_COMMENTS = {
    "computation_id": "One computation of the mart (every row written together shares it).",
    "computed_at": "When the mart was computed (UTC).",
    "mart": "The oversight mart (oversight.<mart>) the rows fed.",
    "period": "The month (YYYY-MM) of the curated rows used: the delivery's period.",
    "contract": "The data contract whose curated table the mart read.",
    "delivery_id": "The delivery whose curated rows the mart read.",
    "sha256": "SHA-256 of the delivered file (the delivery id): check a copy against it.",
    "file_name": "The delivered file's name in the drop zone.",
    "source_path": "The delivered file's path in the drop zone.",
    "contract_version": "The contract version the delivery was checked against (as its "
    "breaches record; when it broke no rule, the contract's version when the mart was "
    "computed).",
    "received_at": "When the delivery was received (UTC).",
    "published_at": "When the delivery was first published as (part of) the month (UTC).",
    "rows_used": "Curated rows of the delivery and month the mart read.",
    "restated_delivery_id": "The delivery of the same month (and part) published before this "
    "one that it replaced: this delivery is a restatement. Empty for a first publication.",
    "restated_file_name": "The file name of restated_delivery_id.",
}

MART_SOURCES_COMMENT = (
    "Which deliveries fed each oversight mart, month by month, at its latest computation: "
    "one row per mart, period, contract and delivery (datashare explain MART prints it). "
    "governance.mart_sources_history has every computation."
)
MART_SOURCES_HISTORY_COMMENT = (
    "Every computation of every oversight mart with the deliveries that fed it: the "
    "provenance of the figures of every pack written, kept for good."
)

MART_SOURCES_VIEW_SQL = """
CREATE VIEW governance.mart_sources AS
SELECT * FROM governance.mart_sources_history h
WHERE computation_id = (
    SELECT arg_max(computation_id, computed_at) FROM governance.mart_sources_history x
    WHERE x.mart = h.mart)
"""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _names(
    con: duckdb.DuckDBPyConnection, schema: str, cache: dict[tuple, list] | None = None
) -> set[str]:
    """The tables and views of `schema` in `con`; with a `cache` (`mart_source_rows`'s, of
    one connection whose schemas do not change), asked once: `information_schema` costs
    2 ms a query, and a step's marts asked it 16 times."""
    if cache is not None and ("", schema) in cache:
        return set(cache[("", schema)])
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
    ).fetchall()
    names = {name for (name,) in rows}
    if cache is not None:
        cache[("", schema)] = sorted(names)
    return names


def sources_sql(
    contract: str, version: str, governance: set[str], periods: tuple[str, ...] | None = None
) -> str:
    """The deliveries of `contract` whose curated rows are in `curated.<contract>` now,
    by period, with the register's account of each (when `governance` has the views).
    `periods`: of those periods only."""
    c = _quote(contract)
    where = ""
    if periods is not None:
        where = f" WHERE _period IN ({', '.join(map(_quote, periods)) or 'NULL'})"
    used = (
        f"SELECT _period AS period, _delivery_id AS delivery_id, count(*) AS rows_used "
        f"FROM curated.{contract}{where} GROUP BY ALL"
    )
    if not {"delivery_events", "breach_records"} <= governance:
        return (
            f"SELECT period, {c} AS contract, delivery_id, NULL AS source_path, "
            f"{_quote(version)} AS contract_version, NULL::TIMESTAMPTZ AS received_at, "
            f"NULL::TIMESTAMPTZ AS published_at, rows_used, NULL AS restated_delivery_id, "
            f"NULL AS restated_source_path FROM ({used})"
        )
    return f"""
    WITH used AS ({used}),
    events AS (SELECT * FROM governance.delivery_events WHERE contract = {c}),
    files AS (
        SELECT delivery_id, min(event_at) AS received_at,
               arg_min(source_path, event_at) FILTER (WHERE source_path IS NOT NULL)
                   AS source_path
        FROM events WHERE event <> 'duplicate' GROUP BY ALL),
    published AS (
        SELECT period, delivery_id, min(event_at) AS published_at
        FROM events WHERE event = 'published' GROUP BY ALL),
    versions AS (
        SELECT delivery_id, arg_max(contract_version, raised_at) AS contract_version
        FROM governance.breach_records
        WHERE contract = {c} AND coalesce(contract_version, '') <> '' GROUP BY ALL),
    restated AS (
        -- The delivery of the month published last before this one was: what it replaced
        -- (a month in parts: the last earlier file of the same name).
        SELECT p.delivery_id,
               arg_max(o.delivery_id, o.published_at) AS restated_delivery_id
        FROM published p
        JOIN files f ON f.delivery_id = p.delivery_id
        JOIN published o ON o.period = p.period AND o.delivery_id <> p.delivery_id
            AND o.published_at < p.published_at
        JOIN files g ON g.delivery_id = o.delivery_id
        WHERE {c} NOT IN (SELECT contract FROM governance.month_parts)
           OR regexp_extract(f.source_path, '[^/]*$') = regexp_extract(g.source_path, '[^/]*$')
        GROUP BY ALL)
    SELECT u.period, {c} AS contract, u.delivery_id, f.source_path,
           coalesce(v.contract_version, {_quote(version)}) AS contract_version,
           f.received_at, p.published_at, u.rows_used, r.restated_delivery_id,
           g.source_path AS restated_source_path
    FROM used u
    LEFT JOIN files f USING (delivery_id)
    LEFT JOIN published p USING (delivery_id)
    LEFT JOIN versions v USING (delivery_id)
    LEFT JOIN restated r USING (delivery_id)
    LEFT JOIN files g ON g.delivery_id = r.restated_delivery_id
    """


def _file_name(path: str | None) -> str | None:
    return path.rsplit("/", 1)[-1] if path else None


def mart_source_rows(
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, str],
    cache: dict[tuple, list] | None = None,
    periods: dict[str, list[str]] | None = None,
) -> list[dict]:
    """Every (period, contract, delivery) whose curated rows `con`'s curated views hold for
    the `contracts` (name -> version in force), with the register's account of each.
    `cache`: each contract's rows as read before over the same connection (a step that
    computes several marts of one contract reads them once). `periods`: per contract, the
    only periods to read (a contract not in it: none)."""
    if periods is not None:
        contracts = {c: v for c, v in contracts.items() if periods.get(c)}
    wanted = {c: (v, None if periods is None else tuple(periods[c])) for c, v in contracts.items()}
    if cache is not None and all((c, *w) in cache for c, w in wanted.items()):
        return _in_order([row for c, w in wanted.items() for row in cache[(c, *w)]])
    governance = _names(con, "governance", cache)
    if "month_parts" not in governance:
        governance -= {"delivery_events"}  # a warehouse too old for the restatement query
    curated = _names(con, "curated", cache)
    rows: list[dict] = []
    for name, (version, only) in sorted(wanted.items()):
        if name not in curated:
            continue
        if cache is not None and (name, version, only) in cache:
            rows.extend(cache[(name, version, only)])
            continue
        table = con.sql(sources_sql(name, version, governance, only)).to_arrow_table()
        part = []
        for row in table.to_pylist():
            row["sha256"] = row["delivery_id"]
            row["file_name"] = _file_name(row["source_path"])
            row["restated_file_name"] = _file_name(row.pop("restated_source_path"))
            part.append(row)
        if cache is not None:
            cache[(name, version, only)] = part
        rows.extend(part)
    return _in_order(rows)


def _in_order(rows: list[dict]) -> list[dict]:
    """Provenance rows in the order a record keeps them: period, contract, received."""
    return sorted(
        rows,
        key=lambda r: (
            r["period"] or "",
            r["contract"],
            r["received_at"] or datetime.min.replace(tzinfo=UTC),
            r["delivery_id"],
        ),
    )


@dataclass(frozen=True)
class PreviousSources:
    """The provenance record of a mart's last computation (`key`) and, per contract, the
    periods changed since (`changed`): the rows of every other period are that record's."""

    key: str
    changed: dict[str, list[str]]


def new_computation(computed_at: datetime | None = None) -> tuple[str, datetime]:
    """A computation's id (its time, then a random part: ids sort by time) and time."""
    computed_at = computed_at or datetime.now(UTC)
    return f"{computed_at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}", computed_at


def sources_key(mart: str, computation: tuple[str, datetime]) -> str:
    """Where the provenance of `computation` of `mart` is written."""
    return f"governance/mart_sources/mart={mart}/{computation[0]}.parquet"


def _kept_rows(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, str],
    previous: PreviousSources,
    cache: dict[tuple, list[dict]] | None,
) -> list[dict] | None:
    """The provenance of a computation that read only `previous.changed`: the previous
    record's rows of the other periods, and the changed periods' read now (None when the
    previous record is gone or does not cover the same contracts and versions)."""
    try:
        old = lake.read_table(previous.key)
    except FileNotFoundError:
        return None
    keep = []
    for row in old.drop_columns(["computation_id", "computed_at", "mart"]).to_pylist():
        if row["contract"] not in contracts:
            return None
        if row["period"] not in previous.changed.get(row["contract"], ()):
            keep.append(row)
    fresh = mart_source_rows(con, contracts, cache, previous.changed)
    return _in_order(keep + fresh)


def record_mart_sources(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    mart: str,
    contracts: dict[str, str],
    computed_at: datetime | None = None,
    cache: dict[tuple, list[dict]] | None = None,
    computation: tuple[str, datetime] | None = None,
    previous: PreviousSources | None = None,
) -> str:
    """Write the provenance of one computation of `mart` (read from `contracts`, name ->
    version) as a new file in the governance area; returns the file's key. `cache`: as
    `mart_source_rows`'s. `computation`: its id and time, if chosen before
    (`new_computation`). `previous`: the computation read only the periods it names as
    changed, and the rows of the others are its previous record's."""
    computation_id, computed_at = computation or new_computation(computed_at)
    found = _kept_rows(lake, con, contracts, previous, cache) if previous else None
    if found is None:
        found = mart_source_rows(con, contracts, cache)
    rows = [
        {**r, "computation_id": computation_id, "computed_at": computed_at, "mart": mart}
        for r in found
    ]
    key = sources_key(mart, (computation_id, computed_at))
    lake.write_table(key, pa.Table.from_pylist(rows, MART_SOURCES_SCHEMA))
    return key
