"""The register's in-memory catalogs (`pipelines.governance.views.in_memory`): each a
database of one shared in-memory DuckDB, so each must answer over its own tables only,
and go when its connection goes (a desk open for weeks makes thousands)."""

import gc
import os
import threading

import pyarrow as pa

from pipelines.governance import views
from pipelines.governance.breach_register import BREACH_EVENT_SCHEMA
from pipelines.lake.register import BREACH_SCHEMA, DELIVERY_EVENT_SCHEMA


def _breaches(*rules: str) -> pa.Table:
    rows = [
        {"breach_id": f"b{i}", "contract": "stop_and_search", "period": "2025-01",
         "delivery_id": None, "rule": rule, "severity": "major", "action": "rows kept",
         "failing_rows": 1, "rows_checked": 10}
        for i, rule in enumerate(rules)
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, BREACH_SCHEMA)


def _catalog(records: pa.Table):
    return views.in_memory(
        records,
        BREACH_EVENT_SCHEMA.empty_table(),
        DELIVERY_EVENT_SCHEMA.empty_table(),
        views.clause_table({}),
    )


def _rules(con) -> list[str]:
    rows = con.execute("SELECT rule FROM governance.breach_register ORDER BY 1").fetchall()
    return [rule for (rule,) in rows]


def _databases() -> set[str]:
    assert views._SHARED is not None
    with views._SHARED_LOCK:
        return {
            name
            for (name,) in views._SHARED.execute(
                "SELECT database_name FROM duckdb_databases() WHERE database_name LIKE 'register_%'"
            ).fetchall()
        }


def test_catalogs_open_together_answer_over_their_own_tables():
    first, second = _catalog(_breaches("a", "b")), _catalog(_breaches("c"))
    with first, second:
        assert _rules(first) == ["a", "b"]
        assert _rules(second) == ["c"]
        # What a reader lists of the catalog is its own, not every catalog's.
        (views_of_first,) = first.execute(
            "SELECT count(*) FROM duckdb_views() WHERE database_name = current_database() "
            "AND schema_name = 'governance'"
        ).fetchone()
        assert views_of_first == 5


def test_a_catalog_closed_and_dropped_goes_at_the_next_one():
    con = _catalog(_breaches("a"))
    (name,) = con.execute("SELECT current_database()").fetchone()
    assert name in _databases()
    con.close()
    del con
    gc.collect()
    with _catalog(_breaches("b")) as later:
        assert _rules(later) == ["b"]
        assert name not in _databases()


def test_catalogs_made_in_threads_at_once_each_answer_right():
    wrong: list[object] = []

    def read(rule: str) -> None:
        try:
            for _ in range(5):
                with _catalog(_breaches(rule)) as con:
                    if (got := _rules(con)) != [rule]:
                        wrong.append((rule, got))
        except Exception as error:  # noqa: BLE001 (said by the assertion below)
            wrong.append((rule, error))

    threads = [threading.Thread(target=read, args=(r,)) for r in "wxyz"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_a_forked_child_makes_catalogs_of_its_own():
    with _catalog(_breaches("parent")) as con:
        assert _rules(con) == ["parent"]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its own DuckDB, whatever the parent's holds
            try:
                with _catalog(_breaches("child")) as mine:
                    os.write(write, ",".join(_rules(mine)).encode())
            finally:
                os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        assert os.read(read, 100) == b"child"
        assert status == 0
        assert _rules(con) == ["parent"]
