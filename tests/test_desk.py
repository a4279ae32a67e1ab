"""The leads' desk, as a browser meets it: through Starlette's TestClient (real HTTP
requests into the real application, cookies and all) on a register written straight into
the lake (tests/breach_homes.py) and its DuckDB warehouse.

What a signed-out visitor gets (nothing), what a lead can do and a viewer cannot, that
forms need their CSRF token, that sign-in attempts are limited, that every count is the
warehouse's, that markup from a delivery stays text, and that no path leads out of the
Data Docs.
"""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import markupsafe
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from pipelines.cli.main import main
from pipelines.desk import app as desk_app
from pipelines.desk import queries
from pipelines.desk.app import create_app
from pipelines.desk.config import DeskConfig, load_desk_config
from pipelines.desk.docs_files import NotServed, docs_link, safe_key
from pipelines.desk.queries import PAGE_SIZE
from pipelines.desk.users import UserStore
from pipelines.home.settings import Settings
from pipelines.lake.store import open_lake
from pipelines.warehouse.catalog import build_warehouse, connect
from schemas.contract import load_contracts
from tests.breach_homes import MARKUP_FILE, MARKUP_HEADER, breach, deliver, seeded_home, today
from tests.conftest import build_template, restore_template

PASSWORD = "correct horse battery"
OPEN = ("open", "notified", "acknowledged")


@pytest.fixture(scope="module", autouse=True)
def _quick_password_hashes() -> Iterator[None]:
    """The module's accounts hashed and checked with argon2id at its lightest cost rather
    than the desk's default (three passes over 64 MiB on four lanes: 0.2 s of CPU per
    sign-in, and the module signs in some forty times). Hashing stays argon2id, checked by
    argon2-cffi as the desk checks it; what a sign-in allows or refuses does not depend on
    the cost. The default is what `datashare users add` writes: the test of that command
    runs it as a process of its own, where this does not reach."""
    from argon2 import PasswordHasher

    from pipelines.desk import users

    light = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(users, "_HASHER", light)
        patch.setattr(users, "_DUMMY_HASH", light.hash("not a password of anyone"))
        yield


@pytest.fixture(scope="module")
def desk_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A seeded home with a lead (alice) and a viewer (victor), built once for the module
    (the register, its warehouse and two password hashes cost seconds); the template's
    folder and the breach ids."""

    def build(home: Settings) -> dict[str, str]:
        ids = seeded_home(home)
        store = UserStore(home.home)
        store.add("alice", "lead", PASSWORD)
        store.add("victor", "viewer", PASSWORD)
        return ids

    return build_template(tmp_path_factory, "desk", build)


@pytest.fixture
def desk(desk_template, monkeypatch):
    """A seeded home with a lead (alice) and a viewer (victor), this test's own copy of the
    module's, and the desk on it."""
    folder, ids = desk_template
    home = restore_template(folder, monkeypatch)
    app = create_app(home, DeskConfig(), today())
    return home, dict(ids), app


def _token(client: TestClient) -> str:
    page = client.get("/login")
    return re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)


def signed_in(app, name: str = "alice") -> tuple[TestClient, str]:
    """A client signed in as `name`, and its CSRF token."""
    client = TestClient(app)
    token = _token(client)
    answer = client.post(
        "/login",
        data={"name": name, "password": PASSWORD, "csrftoken": token, "next": "/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client, token


def _sql(home, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _flash(page: str) -> str:
    found = re.search(r'class="flash"[^>]*>(.*?)</p>', page, re.S)
    return found.group(1) if found else ""


def _history(home, breach_id: str) -> list[tuple]:
    return _sql(
        home,
        "SELECT status, actor, note FROM governance.breach_history "
        "WHERE breach_id = ? AND step = 'changed' ORDER BY event_at",
        [breach_id],
    )


# --- signed out, nothing ------------------------------------------------------------------


def every_page(ids: dict[str, str]) -> list[str]:
    b = ids["oct_type"]
    return [
        "/", "/?status=any", f"/breaches/{b}", "/notices", "/notices/stop_and_search/2025-10",
        "/notices/stop_and_search/2025-10/letter", "/pack", "/contracts",
        "/contracts/stop_and_search", "/docs", "/audit",
        "/docs/contract=stop_and_search/period=2025-09/abc123/index.html",
    ]  # fmt: skip


def test_every_page_sends_a_signed_out_visitor_to_sign_in_and_shows_nothing(desk):
    home, ids, app = desk
    client = TestClient(app)
    for path in every_page(ids):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next=")
        assert ids["oct_type"] not in answer.text and "stop_and_search" not in answer.text
    # Forms too: refused, with or without a CSRF token, and nothing recorded.
    token = _token(client)
    for path in [f"/breaches/{ids['oct_type']}/ack", "/notices/stop_and_search/2025-10/sent"]:
        answer = client.post(path, data={"csrftoken": token, "note": "x"})
        assert answer.status_code == 403, path
    assert _history(home, ids["oct_type"]) == []
    assert _sql(home, "SELECT count(*) FROM governance.exports") == [(1,)]  # the seeded one


def test_sign_in_brings_the_visitor_back_to_the_page_asked_for(desk):
    _, ids, app = desk
    client = TestClient(app)
    asked = client.get(f"/breaches/{ids['oct_type']}", follow_redirects=False)
    login = client.get(asked.headers["location"])
    assert f"/breaches/{ids['oct_type']}" in login.text  # kept in the form
    token = re.search(r'name="csrftoken" value="([^"]+)"', login.text).group(1)
    answer = client.post(
        "/login",
        data={"name": "alice", "password": PASSWORD, "csrftoken": token,
              "next": f"/breaches/{ids['oct_type']}"},
    )  # fmt: skip
    assert answer.status_code == 200 and f"Breach {ids['oct_type']}" in answer.text
    # Never to another site.
    answer = client.post(
        "/login",
        data={"name": "alice", "password": PASSWORD, "csrftoken": token,
              "next": "//evil.example/x"},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.headers["location"] == "/"


def test_session_cookie_is_http_only_same_site_and_secure_over_https(desk, monkeypatch):
    home, _, app = desk
    client = TestClient(app)
    token = _token(client)
    answer = client.post(
        "/login", data={"name": "alice", "password": PASSWORD, "csrftoken": token},
        follow_redirects=False,
    )  # fmt: skip
    cookie = [c for c in answer.headers.get_list("set-cookie") if c.startswith("datashare_desk=")]
    assert cookie and "httponly" in cookie[0].lower() and "samesite=lax" in cookie[0].lower()
    assert "secure" not in cookie[0].lower()  # plain http on loopback
    assert "Max-Age=28800" in cookie[0]  # eight hours
    monkeypatch.setenv("DATASHARE_DESK_URL", "https://desk.mopac.example")
    config = load_desk_config()
    assert config.secure_cookies
    https_app = create_app(home, config, today())
    client = TestClient(https_app, base_url="https://testserver")
    token = _token(client)
    answer = client.post(
        "/login", data={"name": "alice", "password": PASSWORD, "csrftoken": token},
        follow_redirects=False,
    )  # fmt: skip
    cookies = answer.headers.get_list("set-cookie")
    assert all("secure" in c.lower() for c in cookies if c.startswith("datashare_desk="))


def test_a_session_ends_after_its_time_and_when_the_account_is_removed(desk, monkeypatch):
    home, _, _ = desk
    app = create_app(home, DeskConfig(session_minutes=30), today())
    client, _ = signed_in(app)
    assert client.get("/", follow_redirects=False).status_code == 200
    later = time.time() + 31 * 60
    monkeypatch.setattr(desk_app.time, "time", lambda: later)
    assert client.get("/", follow_redirects=False).status_code == 303
    monkeypatch.undo()
    client, _ = signed_in(app, "victor")
    UserStore(home.home).remove("victor")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_in_attempts_are_limited(desk):
    _, _, app = desk
    client = TestClient(app)
    token = _token(client)
    for _ in range(5):
        wrong = client.post(
            "/login", data={"name": "alice", "password": "guess", "csrftoken": token}
        )
        assert wrong.status_code == 401 and "do not match an account" in wrong.text
    # The sixth, even with the right password, waits.
    answer = client.post("/login", data={"name": "alice", "password": PASSWORD, "csrftoken": token})
    assert answer.status_code == 429 and "Too many failed sign-ins" in answer.text
    # Another account is not locked by alice's failures.
    answer = client.post(
        "/login", data={"name": "victor", "password": PASSWORD, "csrftoken": token},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303


def test_a_form_without_its_csrf_token_is_refused(desk):
    home, ids, app = desk
    client, token = signed_in(app)
    b = ids["oct_type"]
    assert client.post(f"/breaches/{b}/ack", data={"note": "x"}).status_code == 403
    assert (
        client.post(f"/breaches/{b}/ack", data={"note": "x", "csrftoken": "forged"}).status_code
        == 403
    )
    other, other_token = signed_in(app, "alice")  # another browser's token is not this one's
    assert other_token != token
    answer = client.post(f"/breaches/{b}/ack", data={"note": "x", "csrftoken": other_token})
    assert answer.status_code == 403
    refused = client.post("/notices/stop_and_search/2025-10/sent", data={"note": "x"})
    assert refused.status_code == 403
    # A forged sign-in (no cookies at all) is refused too.
    assert (
        TestClient(app).post("/login", data={"name": "alice", "password": PASSWORD}).status_code
        == 403
    )
    assert _history(home, b) == []
    assert _sql(home, "SELECT count(*) FROM governance.exports") == [(1,)]


# --- breaches -----------------------------------------------------------------------------


def test_breaches_page_counts_are_the_warehouses(desk):
    home, _, app = desk
    client, _ = signed_in(app, "victor")
    page = client.get("/").text
    ((open_count,),) = _sql(
        home, "SELECT count(*) FROM governance.breach_register WHERE status IN ?", [list(OPEN)]
    )
    assert open_count == 6
    assert re.search(r'id="open-total">(\d+)<', page).group(1) == str(open_count)
    assert page.count('<tr>\n  <td class="id"><a href="/breaches/') == open_count
    ((critical, old),) = _sql(
        home,
        "SELECT count(*) FILTER (WHERE severity = 'critical'), "
        "count(*) FILTER (WHERE date_diff('day', raised_at, now()) > 30) "
        "FROM governance.breach_register WHERE status IN ?",
        [list(OPEN)],
    )
    ((unsent,),) = _sql(
        home,
        "SELECT count(*) FROM (SELECT DISTINCT contract, period FROM governance.breach_register "
        "WHERE status IN ? EXCEPT SELECT contract, period FROM governance.exports)",
        [list(OPEN)],
    )
    assert (critical, old, unsent) == (1, 2, 4)
    assert f'id="critical-open">{critical} critical<' in page
    assert f'id="over-30-days">{old} raised over 30 days ago<' in page
    assert f'id="unsent">{unsent} month(s) whose notice has not been sent<' in page
    page = client.get("/?status=any").text
    ((every,),) = _sql(home, "SELECT count(*) FROM governance.breach_register")
    assert re.search(r'id="match-count"><strong>(\d+)<', page).group(1) == str(every)


FILTERS = st.fixed_dictionaries(
    {
        "contract": st.sampled_from(["", "stop_and_search", "use_of_force", "nope"]),
        "period": st.sampled_from(["", "2025-09", "2025-10", "2025-11", "2025-12"]),
        "severity": st.sampled_from(["", "critical", "major", "minor"]),
        "status": st.sampled_from(["", "any", "open", "notified", "resolved", "superseded"]),
        "age": st.sampled_from(["", "7", "30", "90"]),
    }
)


# One sign-in and one read of the register per test, not per example: the examples only
# look, so what the warehouse holds is the same for each.
_viewers: dict[int, tuple[TestClient, list[tuple]]] = {}


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(filters=FILTERS)
def test_any_filter_shows_the_count_the_warehouse_gives(desk, filters):
    home, _, app = desk
    if id(app) not in _viewers:
        _viewers.clear()
        rows = _sql(
            home,
            "SELECT contract, period, severity, status, date_diff('day', raised_at, now()) "
            "FROM governance.breach_register",
        )
        _viewers[id(app)] = (signed_in(app, "victor")[0], rows)
    client, rows = _viewers[id(app)]
    page = client.get("/", params=filters).text
    statuses = {"": OPEN, "any": None}.get(filters["status"], (filters["status"],))
    expected = [
        r for r in rows
        if (not filters["contract"] or r[0] == filters["contract"])
        and (not filters["period"] or r[1] == filters["period"])
        and (not filters["severity"] or r[2] == filters["severity"])
        and (statuses is None or r[3] in statuses)
        and (not filters["age"] or r[4] > int(filters["age"]))
    ]  # fmt: skip
    shown = re.search(r'id="match-count"><strong>(\d+)<', page).group(1)
    assert int(shown) == len(expected)
    for severity in ("critical", "major", "minor"):
        n = sum(r[2] == severity for r in expected)
        assert f'<span class="{severity}">{n} {severity}</span>' in page


def test_hundreds_of_breaches_page_through_each_once(home, monkeypatch):
    lake = open_lake(home.lake)
    made = set()
    for month in range(1, 13):
        period = f"2024-{month:02d}"
        delivery = deliver(lake, "stop_and_search", period, f"{period}.csv", 1_000)
        for n in range(20):
            made.add(
                breach(lake, "stop_and_search", period, delivery, f"rule_{n}", "major",
                       f"rule {n} broken", 1, 1_000)
            )  # fmt: skip
    build_warehouse(lake, load_contracts(), home.warehouse)
    UserStore(home.home).add("victor", "viewer", PASSWORD)
    client, _ = signed_in(create_app(home, DeskConfig(), today()), "victor")
    # What keeps a page quick however many breaches there are: each page reads the register
    # once (the list, and the months to notify counted from it) and the months sent once, not
    # a query per breach or per page before it. Counted rather than timed: a time limit (it
    # was 10 s for the five pages) failed once on a machine at a load of 30.
    reads: list[str] = []
    read = queries.dicts

    def counted(con, sql: str, params: list | None = None) -> list[dict]:
        reads.append(sql)
        return read(con, sql, params)

    monkeypatch.setattr(queries, "dicts", counted)
    seen: list[str] = []
    per_page: list[int] = []
    page = 1
    while True:
        before = len(reads)
        text = client.get("/", params={"sort": "oldest", "page": page}).text
        per_page.append(len(reads) - before)
        seen += re.findall(r'<td class="id"><a href="/breaches/(B-[0-9a-f]+)">', text)
        if "next</a>" not in text:
            break
        page += 1
    assert len(made) == 240 and page == -(-240 // PAGE_SIZE)
    assert sorted(seen) == sorted(made)  # every breach once, none twice
    assert per_page == [2] * page, per_page
    assert sum("governance.breach_register" in sql for sql in reads) == page


def test_a_lead_acknowledges_a_breach_under_their_name(desk):
    home, ids, app = desk
    client, token = signed_in(app)
    b = ids["oct_type"]
    page = client.get(f"/breaches/{b}").text
    assert "Acknowledged by the force" in page and "Reopen" not in page  # open: no reopen
    answer = client.post(f"/breaches/{b}/ack", data={"note": "agreed by phone", "csrftoken": token})
    assert answer.status_code == 200
    assert _flash(answer.text) == f"{b} is now acknowledged (by alice)."
    assert _history(home, b) == [("acknowledged", "alice", "agreed by phone")]
    assert _sql(
        home, "SELECT by_whom, action, why FROM governance.audit_log WHERE subject = ?", [b]
    ) == [("alice", "breach acknowledged", "agreed by phone")]
    audit = client.get("/audit").text
    cells = ["breach acknowledged", "alice", "stop_and_search", "2025-10", b, "agreed by phone"]
    assert "".join(f"<td>{c}</td>" for c in cells) in audit
    assert "<td>acknowledged</td><td>alice</td><td>agreed by phone</td>" in answer.text


def test_a_step_rebuilds_the_warehouse_only_when_its_views_could_not_show_it(home, monkeypatch):
    """Each step shows on the desk at once, in the warehouse's history and on the breach's
    page; the warehouse is rebuilt for the register's first step (the catalog held an empty
    table where its breach events go), not for the next, whose event file its views already
    read by pattern (a rebuild is a second or more of CPU, growing with the lake)."""
    lake = open_lake(home.lake)
    delivery = deliver(lake, "use_of_force", "2025-11", "2025-11.csv", 10)
    first = breach(lake, "use_of_force", "2025-11", delivery, "file.columns", "major", "one")
    second = breach(lake, "use_of_force", "2025-11", delivery, "file.types", "major", "two")
    build_warehouse(lake, load_contracts(), home.warehouse)
    UserStore(home.home).add("alice", "lead", PASSWORD)
    client, token = signed_in(create_app(home, DeskConfig(), today()))
    builds: list[str] = []
    real = desk_app.build_warehouse

    def counted(lake, contracts, path):
        builds.append(str(path))
        return real(lake, contracts, path)

    monkeypatch.setattr(desk_app, "build_warehouse", counted)
    for number, b in enumerate((first, second), start=1):
        answer = client.post(f"/breaches/{b}/ack", data={"note": "seen", "csrftoken": token})
        assert _flash(answer.text) == f"{b} is now acknowledged (by alice)."
        assert _history(home, b) == [("acknowledged", "alice", "seen")]
        assert "<td>acknowledged</td><td>alice</td><td>seen</td>" in answer.text
        assert builds == [str(home.warehouse)], (number, builds)  # the first step's only


def test_waive_and_reopen_need_a_note(desk):
    home, ids, app = desk
    client, token = signed_in(app)
    b = ids["oct_type"]
    answer = client.post(f"/breaches/{b}/waive", data={"note": "  ", "csrftoken": token})
    assert "needs a note saying why: nothing was recorded" in _flash(answer.text)
    assert _history(home, b) == []
    client.post(f"/breaches/{b}/waive", data={"note": "agreed exception", "csrftoken": token})
    answer = client.post(f"/breaches/{b}/reopen", data={"note": "", "csrftoken": token})
    assert "needs a note" in _flash(answer.text)
    assert [s for s, _, _ in _history(home, b)] == ["waived"]
    # A step the status does not allow is refused in words.
    answer = client.post(f"/breaches/{b}/ack", data={"note": "", "csrftoken": token})
    assert "is waived; it cannot be moved to acknowledged" in _flash(answer.text)


def test_a_viewer_sees_no_buttons_and_is_refused(desk):
    home, ids, app = desk
    client, token = signed_in(app, "victor")
    b = ids["oct_type"]
    page = client.get(f"/breaches/{b}").text
    assert "Next steps" not in page and '<button type="submit" name="step"' not in page
    assert "Mark as sent" not in client.get("/notices/stop_and_search/2025-10").text
    answer = client.post(f"/breaches/{b}/ack", data={"note": "x", "csrftoken": token})
    assert answer.status_code == 403 and "Only a lead can do this" in answer.text
    answer = client.post("/notices/stop_and_search/2025-10/sent", data={"csrftoken": token})
    assert answer.status_code == 403
    assert _history(home, b) == []
    assert _sql(home, "SELECT count(*) FROM governance.exports") == [(1,)]


def test_a_breach_page_says_what_the_register_says(desk):
    home, ids, app = desk
    client, _ = signed_in(app, "victor")
    page = client.get(f"/breaches/{ids['sep_type']}").text
    ((clause, title, recurrence),) = _sql(
        home,
        "SELECT clause_number, clause_title, recurrence FROM governance.breach_register "
        "WHERE breach_id = ?",
        [ids["sep_type"]],
    )
    assert f"{clause} ({title})" in page
    assert "row numbers 4, 18, 77 of the file (their values are not shown here)" in page
    assert "12 of 4,000" in page and "September 2025" in page
    assert "<td>notified</td><td>lead</td><td>letter</td>" in page  # the history
    page = client.get(f"/breaches/{ids['oct_type']}").text
    assert recurrence == 1 and "the same rule broken in 2 periods so far" in page


# --- notices ------------------------------------------------------------------------------


def test_a_months_notice_is_the_letter_and_mark_as_sent_records_it(desk):
    home, ids, app = desk
    client, token = signed_in(app)
    unsent = re.search(r'id="unsent">(\d+) month', client.get("/").text).group(1)
    page = client.get("/notices/stop_and_search/2025-10").text
    assert "Not yet recorded as sent." in page
    letter = client.get("/notices/stop_and_search/2025-10/letter").text
    assert "<h1>Stop and search: notice of breaches for October 2025</h1>" in letter
    assert ids["oct_type"] in letter and ids["oct_late"] in letter
    answer = client.post(
        "/notices/stop_and_search/2025-10/sent", data={"note": "", "csrftoken": token}
    )
    assert "Recorded as sent by alice; 2 breach(es) marked notified" in _flash(answer.text)
    assert (home.home / "notices" / "notice-stop_and_search-2025-10.md").exists()
    ((by, what),) = _sql(
        home, "SELECT exported_by, what FROM governance.exports WHERE period = '2025-10'"
    )
    assert by == "alice" and what == "notice notice-stop_and_search-2025-10.md (2 breach(es))"
    for b in (ids["oct_type"], ids["oct_late"]):
        assert _history(home, b) == [("notified", "alice", "notice of 12 January 2026")]
    assert "by alice: notice notice-stop_and_search-2025-10.md" in answer.text
    # The breaches page counts one month fewer whose notice is unsent.
    now = re.search(r'id="unsent">(\d+) month', client.get("/").text).group(1)
    assert int(now) == int(unsent) - 1
    # Sent again (a second letter): recorded again, nobody notified twice.
    client.post("/notices/stop_and_search/2025-10/sent", data={"csrftoken": token})
    assert _sql(home, "SELECT count(*) FROM governance.exports WHERE period = '2025-10'") == [(2,)]
    assert len(_history(home, ids["oct_type"])) == 1


def test_notices_list_each_month_with_an_open_breach(desk):
    home, _, app = desk
    client, _ = signed_in(app, "victor")
    page = client.get("/notices").text
    months = _sql(
        home,
        "SELECT DISTINCT contract, period FROM governance.breach_register WHERE status IN ? ",
        [list(OPEN)],
    )
    for contract, period in months:
        assert f'href="/notices/{contract}/{period}"' in page
    assert client.get("/notices/nope/2025-10").status_code == 404
    assert client.get("/notices/stop_and_search/..%2f..").status_code == 404


# --- markup, classified values, files -----------------------------------------------------


def test_markup_from_a_delivery_is_text_on_every_page(desk):
    home, ids, app = desk
    lake = open_lake(home.lake)
    script = "<script>alert('desk')</script>"
    delivery = deliver(lake, "use_of_force", "2025-12", f"{script}.csv", 10)
    hostile = breach(lake, "use_of_force", "2025-12", delivery, "file.unagreed_columns", "major",
                     f"The file includes 1 column(s) the agreement does not list ('{script}').",
                     10, 10)  # fmt: skip
    build_warehouse(lake, load_contracts(), home.warehouse)
    client, _ = signed_in(app)
    pages = [
        client.get("/?status=any").text,
        client.get(f"/breaches/{hostile}").text,
        client.get(f"/breaches/{ids['nov_extra']}").text,
        client.get("/notices/use_of_force/2025-12").text,
        client.get("/notices/use_of_force/2025-12/letter").text,
        client.get("/notices/stop_and_search/2025-11/letter").text,
    ]
    for page in pages:
        assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(" in pages[1] and f"{script}.csv" not in pages[1]
    assert MARKUP_HEADER not in pages[2] and "&lt;b&gt;bold&lt;/b&gt;" in pages[2]
    assert MARKUP_FILE not in pages[5]
    # And the browser is told to run no script on the desk's pages at all.
    policy = client.get(f"/breaches/{hostile}").headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy


def test_data_docs_are_served_and_nothing_outside_them(desk, tmp_path):
    home, ids, app = desk
    site = home.lake / "docs" / "contract=stop_and_search" / "period=2025-09" / "abc123"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<html><body>Data Docs of abc123</body></html>")
    # A breach links its delivery's Data Docs when the pipeline wrote them.
    ((delivery,),) = _sql(
        home, "SELECT delivery_id FROM governance.breaches WHERE breach_id = ?", [ids["sep_type"]]
    )
    (site.parent / delivery).mkdir()
    (site.parent / delivery / "index.html").write_text(
        "<html><body>Docs of September</body></html>"
    )
    viewer, _ = signed_in(app, "victor")
    linked = viewer.get(f"/breaches/{ids['sep_type']}").text
    link = f"/docs/contract=stop_and_search/period=2025-09/{delivery}/index.html"
    assert f'<a href="{link}" id="data-docs">its Data Docs</a>' in linked
    assert "Docs of September" in viewer.get(link).text
    assert 'id="data-docs"' not in viewer.get(f"/breaches/{ids['oct_type']}").text  # none written
    secret = tmp_path / "outside.txt"
    secret.write_text("SECRET OUTSIDE THE DOCS")
    (home.lake / "docs" / "link-out.txt").symlink_to(secret)
    (home.lake / "docs" / "link-dir").symlink_to(home.home / "desk", target_is_directory=True)
    client, _ = signed_in(app, "victor")
    index = client.get("/docs").text
    assert 'href="/docs/contract=stop_and_search/period=2025-09/abc123/index.html"' in index
    page = client.get("/docs/contract=stop_and_search/period=2025-09/abc123/index.html")
    assert page.status_code == 200 and "Data Docs of abc123" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert client.get("/docs/contract=stop_and_search/period=2025-09/abc123/").status_code == 200
    for path in [
        "/docs/../desk/users.json", "/docs/%2e%2e/desk/users.json", "/docs/..%2fdesk%2fusers.json",
        "/docs/%2e%2e/%2e%2e/lake/../desk/secret.key", "/docs//etc/passwd", "/docs/%2fetc/passwd",
        f"/docs/{secret}", "/docs/link-out.txt", "/docs/link-dir/users.json",
        "/docs/..\\desk\\users.json", "/docs/C:/x",
    ]:  # fmt: skip
        answer = client.get(path)
        assert answer.status_code in (303, 404), path  # 303: the client collapsed a '..'
        assert "SECRET" not in answer.text and "password_hash" not in answer.text
        assert "argon2" not in answer.text
    # A Data Docs page is sandboxed (its scripts run in an origin of their own); its CSS,
    # scripts and fonts are the only files served without a session, and only from _static.
    policy = page.headers["content-security-policy"]
    assert policy.startswith("sandbox allow-scripts ") and "allow-same-origin" not in policy
    (home.lake / "docs" / "_static").mkdir(parents=True, exist_ok=True)
    (home.lake / "docs" / "_static" / "data_docs.css").write_text("body { margin: 0 }")
    stranger = TestClient(app)
    css = stranger.get("/docs/_static/data_docs.css")
    assert css.status_code == 200 and css.headers["access-control-allow-origin"] == "*"
    for path in [
        "/docs/_static/%2e%2e/contract=stop_and_search/period=2025-09/abc123/index.html",
        "/docs/_static/..%2flink-out.txt",
        "/docs/_static/../../desk/users.json",
    ]:
        answer = stranger.get(path, follow_redirects=False)
        assert answer.status_code in (303, 404) and "Data Docs of abc123" not in answer.text
        assert "SECRET" not in answer.text and "password_hash" not in answer.text
    for relative in ["../x", "/etc/passwd", "a/../../x", "a//b", ".", "a\\..\\b", "a\x00b"]:
        with pytest.raises(NotServed):
            safe_key(relative)


@given(st.text(alphabet=st.sampled_from(list("ab./\\:%")), max_size=12))
def test_any_docs_path_the_desk_accepts_stays_inside_the_docs(relative):
    try:
        key = safe_key(relative)
    except NotServed:
        return
    names = key.split("/")
    assert names[0] == "docs" and ".." not in names and "." not in names and "" not in names


def test_the_agreement_page_and_the_pack(desk):
    home, _, app = desk
    client, _ = signed_in(app, "victor")
    page = client.get("/contracts/stop_and_search").text
    assert "<h1>" in page and "Retention" in page  # the `contracts show` page, as HTML
    assert client.get("/contracts/..%2fpyproject").status_code == 404
    assert "No oversight pack yet" in client.get("/pack").text
    pack = home.home / "reports" / "oversight-pack.html"
    pack.parent.mkdir(parents=True)
    pack.write_text("<html><body><h1>Oversight pack</h1></body></html>")
    assert "<h1>Oversight pack</h1>" in client.get("/pack").text


# --- accounts and the proxy header --------------------------------------------------------


def test_users_add_stores_only_a_hash_owner_only(home, monkeypatch, capsys):
    # As a script would make an account: the password on standard input.
    made = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.main", "--home", str(home.home), "users", "add",
         "lena", "--role", "lead"],
        input=f"{PASSWORD}\n", capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    path = home.home / "desk" / "users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert PASSWORD not in text and "$argon2id$" in text
    assert UserStore(home.home).verify("lena", PASSWORD).role == "lead"
    assert UserStore(home.home).verify("lena", "wrong password") is None

    def users(*words: str, password: str = "") -> int:
        monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
        return main(["--home", str(home.home), "users", *words])

    assert users("add", "lena", "--role", "viewer", password="x" * 12) == 1
    assert "already an account" in capsys.readouterr().err
    assert users("add", "kim", "--role", "viewer", password="short") == 1
    assert "at least 10 characters" in capsys.readouterr().err
    assert users("add", "k'm<b>", "--role", "viewer", password=PASSWORD) == 1
    assert "is not an account name" in capsys.readouterr().err
    assert users("list") == 0
    assert capsys.readouterr().out == "lena\tlead\n"


def test_the_proxy_header_is_ignored_unless_configured(desk):
    home, ids, app = desk
    client = TestClient(app)
    answer = client.get("/", headers={"X-Forwarded-User": "alice"}, follow_redirects=False)
    assert answer.status_code == 303  # off by default: anyone could send it
    env = {**os.environ, "DATASHARE_DESK_TRUSTED_USER_HEADER": "X-Forwarded-User"}
    trusting = create_app(home, load_desk_config(env), today())
    client = TestClient(trusting)
    page = client.get("/", headers={"X-Forwarded-User": "victor"})
    assert page.status_code == 200 and "victor (viewer)" in page.text
    unknown = client.get("/", headers={"X-Forwarded-User": "mallory"}, follow_redirects=False)
    assert unknown.status_code == 303
    # Acting through the proxy still needs the form's CSRF token.
    token = re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)
    headers = {"X-Forwarded-User": "alice"}
    b = ids["oct_type"]
    assert client.post(f"/breaches/{b}/ack", data={"note": ""}, headers=headers).status_code == 403
    done = client.post(f"/breaches/{b}/ack", data={"csrftoken": token}, headers=headers)
    assert done.status_code == 200
    assert _history(home, b) == [("acknowledged", "alice", "")]


def test_docs_link_points_at_the_desk_only_when_its_address_is_set():
    page = "file:///srv/lake/docs/contract%3Dstop_and_search/period%3D2022-06/ab12/index.html"
    assert docs_link(page, "") == page  # no desk address: the lake's own link
    assert docs_link(page, "https://desk.mopac.test/") == (
        "https://desk.mopac.test/docs/contract=stop_and_search/period=2022-06/ab12/index.html"
    )
    s3 = "s3://lake/datashare/docs/contract=use_of_force/period=2025-01/cd34/index.html"
    assert docs_link(s3, "https://d").endswith(
        "/docs/contract=use_of_force/period=2025-01/cd34/index.html"
    )


# The month's `data_docs` link in Dagster, opened on the desk (the link, both checks carrying
# it, the page and its stylesheets served): tests/test_desk_browser.py, whose real run of the
# June 2022 file serves it to Chromium too (one pipeline run for both).


def test_signing_out_ends_every_session_of_the_account_even_a_copied_cookie(desk):
    home, _, app = desk
    laptop, token = signed_in(app)
    phone, _ = signed_in(app)
    copied = TestClient(app, cookies={"datashare_desk": laptop.cookies["datashare_desk"]})
    assert copied.get("/", follow_redirects=False).status_code == 200
    laptop.post("/logout", data={"csrftoken": token})
    for client in (laptop, phone, copied):
        assert client.get("/", follow_redirects=False).status_code == 303
    again, _ = signed_in(app)  # signing in again works
    assert again.get("/", follow_redirects=False).status_code == 200
    # A password reset ends the sessions signed in with the old one.
    UserStore(home.home).add("alice", "lead", PASSWORD, replace=True)
    assert again.get("/", follow_redirects=False).status_code == 303


@pytest.mark.slow
def test_data_docs_from_a_lake_on_s3_and_nothing_outside_them(s3, home, monkeypatch):
    """The same pages from `s3://lake/<prefix>` (SeaweedFS, a real S3 server)."""
    from pipelines.home.settings import load_settings
    from tests.s3_server import LAKE_BUCKET

    _, prefix = s3
    monkeypatch.setenv("DATASHARE_LAKE", f"s3://{LAKE_BUCKET}/{prefix}")
    settings = load_settings()
    lake = open_lake(settings.lake)
    site = "docs/contract=stop_and_search/period=2025-09/ef56"
    lake.write_bytes(f"{site}/index.html", b"<html><body>Data Docs of ef56</body></html>")
    lake.write_bytes("docs/_static/data_docs.css", b"body { margin: 0 }")
    lake.write_bytes("governance/secret.txt", b"SECRET OUTSIDE THE DOCS")
    UserStore(settings.home).add("victor", "viewer", PASSWORD)
    client, _ = signed_in(create_app(settings, DeskConfig(), today()), "victor")
    assert f'href="/{site}/index.html"' in client.get("/docs").text
    page = client.get(f"/{site}/index.html")
    assert page.status_code == 200 and "Data Docs of ef56" in page.text
    assert client.get("/docs/_static/data_docs.css").headers["content-type"].startswith("text/css")
    for path in ["/docs/%2e%2e/governance/secret.txt", "/docs/..%2fgovernance%2fsecret.txt",
                 "/docs//governance/secret.txt", "/docs/%2fgovernance/secret.txt"]:  # fmt: skip
        answer = client.get(path)
        assert answer.status_code in (303, 404) and "SECRET" not in answer.text, path


def test_a_home_without_a_warehouse_or_desk_folder_is_served(home):
    """A home made by an earlier version (no desk/ folder; or a warehouse missing or built
    before the breach views): the desk builds the warehouse from the lake and serves it."""
    ids = seeded_home(home)
    home.warehouse.unlink()
    assert not (home.home / "desk").exists()
    app = create_app(home, DeskConfig(), today())
    UserStore(home.home).add("victor", "viewer", PASSWORD)
    client, _ = signed_in(app, "victor")
    page = client.get("/").text
    assert re.search(r'id="open-total">(\d+)<', page).group(1) == "6"
    assert ids["oct_type"] in page


_paging_viewers: dict[int, tuple[TestClient, list[dict]]] = {}  # as `_viewers`


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sort=st.sampled_from(sorted(queries.SORTS)),
    status=st.sampled_from(["", "any", "open"]),
    size=st.integers(2, 5),
)
def test_any_sort_pages_through_the_filtered_breaches_once_in_order(
    desk, monkeypatch, sort, status, size
):
    home, _, app = desk
    monkeypatch.setattr(queries, "PAGE_SIZE", size)
    if id(app) not in _paging_viewers:
        _paging_viewers.clear()
        with connect(home.warehouse) as con:
            every = queries.dicts(
                con, f"SELECT {queries.LIST_COLUMNS} FROM governance.breach_register"
            )
        _paging_viewers[id(app)] = (signed_in(app, "victor")[0], every)
    client, rows = _paging_viewers[id(app)]
    shown: list[str] = []
    for page in range(1, 20):
        text = client.get("/", params={"sort": sort, "status": status, "page": page}).text
        shown += re.findall(r'<td class="id"><a href="/breaches/(B-[0-9a-f]+)">', text)
        if "next</a>" not in text:
            break
    query = queries.BreachQuery(status=status, sort=sort)
    expected = sorted((r for r in rows if query.matches(r)), key=queries.SORTS[sort][1])
    assert shown == [r["breach_id"] for r in expected]
    assert len(shown) == len(set(shown))
    # And the order is the one the sort names, said independently of the desk's keys.
    rank = {"critical": 0, "major": 1, "minor": 2}
    said = {
        "severity": lambda r: rank[r["severity"]],
        "oldest": lambda r: r["raised_at"],
        "newest": lambda r: -r["raised_at"].timestamp(),
        "contract": lambda r: (r["contract"], r["period"]),
        "period": lambda r: -int(r["period"].replace("-", "")),
        "recurrence": lambda r: -r["recurrence"],
    }[sort]
    assert [said(r) for r in expected] == sorted(said(r) for r in expected)


_MARKUP = st.text(alphabet=st.sampled_from(list("<>&\"'/= abscript")), min_size=1, max_size=30)


@pytest.fixture(scope="module")
def markup_desk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, TestClient]:
    """A home with one plain breach, its warehouse, and a viewer signed in to its desk, for
    the markup property: each example writes its own delivery and breach into the lake and
    takes them out again (a home, a warehouse and a password hash per example cost a second
    of CPU apiece). The warehouse's views read the lake's files, so the desk shows what an
    example wrote without a rebuild."""
    from pipelines.home.settings import load_settings

    home = load_settings(tmp_path_factory.mktemp("markup") / "home")
    home.ensure_folders()
    lake = open_lake(home.lake)
    plain = deliver(lake, "use_of_force", "2025-11", "2025-11.csv", 10)
    breach(lake, "use_of_force", "2025-11", plain, "file.columns", "major", "plain words")
    build_warehouse(lake, load_contracts(), home.warehouse)
    UserStore(home.home).add("victor", "viewer", PASSWORD)
    client, _ = signed_in(create_app(home, DeskConfig(), today()), "victor")
    return home, client


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(detail=_MARKUP.map(lambda t: f"<script>{t}</script>"), name=_MARKUP)
@example(detail="<script>'</script>", name="<")
def test_any_markup_in_a_breach_is_text_on_its_page(markup_desk, detail, name):
    """Whatever a delivery's file name and a breach's detail hold, the page shows them as
    text: escaped, never as markup."""
    home, client = markup_desk
    lake = open_lake(home.lake)
    before = {p for p in home.lake.rglob("*") if p.is_file()}
    try:
        delivery = deliver(lake, "use_of_force", "2025-12", f"{name}.csv", 10)
        made = breach(lake, "use_of_force", "2025-12", delivery, "file.columns", "major", detail)
        for page in (client.get(f"/breaches/{made}").text, client.get("/?status=any").text):
            assert "<script" not in page.lower()
            assert str(markupsafe.escape(detail)) in page  # Jinja's escaping, shown as written
    finally:  # the next example sees the module's home as it was
        for path in {p for p in home.lake.rglob("*") if p.is_file()} - before:
            path.unlink()


def test_a_form_longer_than_any_of_the_desks_or_without_a_length_is_refused(desk):
    home, ids, app = desk
    client, token = signed_in(app)
    b = ids["oct_type"]
    huge = client.post(f"/breaches/{b}/ack", data={"csrftoken": token, "note": "x" * 70_000})
    assert huge.status_code == 413
    chunked = client.post(
        f"/breaches/{b}/ack",
        content=iter([f"csrftoken={token}&note=x".encode()]),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 411
    assert _history(home, b) == []
    # A note of an ordinary length goes through.
    done = client.post(f"/breaches/{b}/ack", data={"csrftoken": token, "note": "x" * 2_000})
    assert done.status_code == 200 and _history(home, b)[0][:2] == ("acknowledged", "alice")


def test_an_agreements_review_is_served_as_the_command_writes_it(desk):
    from pipelines.reviews.agreement_page import agreement_review_html

    home, _, app = desk
    client, _ = signed_in(app, "victor")
    assert (
        'href="/contracts/stop_and_search/review"' in client.get("/contracts/stop_and_search").text
    )
    page = client.get(
        "/contracts/stop_and_search/review", params={"from": "2025-09", "to": "2025-12"}
    )
    assert page.status_code == 200
    expected = agreement_review_html(
        home.warehouse, open_lake(home.lake), load_contracts()["stop_and_search"], today(),
        "2025-09", "2025-12",
    )  # fmt: skip
    assert page.text == expected
    assert "script-src" not in page.headers["content-security-policy"]  # it runs no script
    assert client.get("/contracts/stop_and_search/review?from=x").status_code == 404
    # A warehouse an earlier version built, without a view the review reads: rebuilt, then
    # the same page.
    with duckdb.connect(str(home.warehouse)) as con:
        con.execute("DROP VIEW governance.deliveries")
    again = client.get(
        "/contracts/stop_and_search/review", params={"from": "2025-09", "to": "2025-12"}
    )
    assert again.status_code == 200 and again.text == expected
    assert (
        TestClient(app).get("/contracts/stop_and_search/review", follow_redirects=False).status_code
        == 303
    )


def test_the_desk_will_not_trust_a_proxy_header_while_reachable_without_the_proxy(
    desk, monkeypatch, capsys
):
    monkeypatch.setenv("DATASHARE_DESK_TRUSTED_USER_HEADER", "X-Forwarded-User")
    assert main(["desk", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "must listen on loopback behind the proxy" in capsys.readouterr().err
