"""The leads' alerts, received by a real SMTP server on loopback (aiosmtpd), and the
promise that no classified value reaches a page or an email.

The register is written straight into the lake (tests/breach_homes.py), or by the real
validator on the real June 2022 stop and search file with values planted in classified
columns.
"""

from __future__ import annotations

import csv
import email
import io
import json
import re
import socket
from collections.abc import Iterator
from email import policy
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from aiosmtpd.controller import Controller
from starlette.testclient import TestClient

from pipelines.desk.alert_sensor import build_alert_sensor
from pipelines.desk.alerts import alert_after_run, load_alert_settings, send_alerts
from pipelines.desk.app import create_app
from pipelines.desk.config import DeskConfig
from pipelines.desk.users import UserStore
from pipelines.home.settings import Settings
from pipelines.lake.register import Register
from pipelines.lake.store import open_lake
from pipelines.validation.row_validation import validate_delivery
from pipelines.warehouse.catalog import build_warehouse
from schemas.contract import load_contracts
from tests.breach_homes import breach, deliver, seeded_home, today
from tests.conftest import build_template, restore_template

LEADS = ("lead.one@mopac.test", "lead.two@mopac.test")
PASSWORD = "correct horse battery"
ALERTABLE = (
    "SELECT breach_id FROM governance.breach_register "
    "WHERE status IN ('open', 'notified', 'acknowledged') AND (severity = 'critical' "
    "OR delivery_status IN ('held', 'rejected') OR rule = 'delivery.late')"
)


@pytest.fixture(scope="module", autouse=True)
def _quick_password_hashes() -> Iterator[None]:
    """The module's accounts hashed and checked with argon2id at its lightest cost rather
    than the desk's default (three passes over 64 MiB on four lanes: 0.2 s of CPU each time,
    five times here), as tests/test_desk.py does: still argon2id, checked by argon2-cffi as
    the desk checks it, and nothing these tests assert depends on the cost."""
    from argon2 import PasswordHasher

    from pipelines.desk import users

    light = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(users, "_HASHER", light)
        patch.setattr(users, "_DUMMY_HASH", light.hash("not a password of anyone"))
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """What the SMTP server received: (recipients, message)."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def bodies(self) -> list[str]:
        return [m.get_content() for _, m in self.received]


@pytest.fixture
def inbox(monkeypatch) -> Inbox:
    handler = Inbox()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("DATASHARE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DATASHARE_SMTP_PORT", str(port))
    monkeypatch.setenv("DATASHARE_SMTP_TLS", "none")  # a relay on this machine
    monkeypatch.setenv("DATASHARE_SMTP_SENDER", "datashare@mopac.test")
    monkeypatch.setenv("DATASHARE_ALERT_TO", ", ".join(LEADS))
    monkeypatch.setenv("DATASHARE_DESK_URL", "https://desk.mopac.test")
    yield handler
    controller.stop()


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """tests/breach_homes.py's seeded home, built once for the module (its register and
    warehouse cost seconds); the template's folder and the breach ids."""
    return build_template(tmp_path_factory, "seeded", seeded_home)


@pytest.fixture
def seeded(seeded_template, monkeypatch) -> tuple[Settings, dict[str, str]]:
    """The seeded home, this test's own copy of the module's, and its breach ids."""
    folder, ids = seeded_template
    return restore_template(folder, monkeypatch), dict(ids)


def _ids(home, sql: str) -> set[str]:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return {r[0] for r in con.execute(sql).fetchall()}


def _named(body: str) -> set[str]:
    return set(re.findall(r"/breaches/(B-[0-9a-f]+)", body))


def test_each_lead_gets_one_email_about_what_needs_them_once(seeded, inbox):
    home, ids = seeded
    sent = alert_after_run(home)
    expected = _ids(home, ALERTABLE)
    assert expected == {ids["uof_format"], ids["oct_late"], ids["dec_late"]}
    assert sent == "Alerts: 2 email(s) sent about 3 breach(es)."
    assert sorted(r for rcpt, _ in inbox.received for r in rcpt) == sorted(LEADS)
    for (_, message), body in zip(inbox.received, inbox.bodies(), strict=True):
        assert _named(body) == expected
        assert message["Subject"] == (
            "datashare: 3 new breach(es) to act on (2 late delivery, 1 rejected)"
        )
        assert message["From"] == "datashare@mopac.test"
        assert "Use of force, November 2025: critical, rejected, clause 6.2 (The file)" in body
        assert "What we did: the file was not read; nothing from it was published" in body
        assert "No delivery for December 2025 had arrived by" in body
    # Once: the next check (after the next run, or the sensor's tick) sends nothing.
    assert alert_after_run(home) == "Alerts: nothing new to tell the leads."
    assert len(inbox.received) == 2
    ledger = json.loads((home.home / "desk" / "alerts-sent.json").read_text())["sent"]
    assert {k: sorted(v) for k, v in ledger.items()} == {i: sorted(LEADS) for i in expected}
    # A new critical breach: one more email each, about it alone.
    lake = open_lake(home.lake)
    held = deliver(lake, "stop_and_search", "2026-01", "2026-01.csv", 100, "held")
    new = breach(lake, "stop_and_search", "2026-01", held, "file.columns", "critical",
                 "The header lacks 2 agreed columns.", action="delivery held")  # fmt: skip
    assert alert_after_run(home) == "Alerts: 2 email(s) sent about 1 breach(es)."
    assert [_named(b) for b in inbox.bodies()[2:]] == [{new}, {new}]
    assert "Stop and search, January 2026: critical, held back" in inbox.bodies()[2]


def test_the_sensor_sends_under_the_daemon_and_shares_the_record(seeded, inbox):
    home, ids = seeded
    sensor = build_alert_sensor(home)
    with dg.build_sensor_context() as context:
        tick = sensor(context)
    assert tick.skip_message == "Alerts: 2 email(s) sent about 3 breach(es)."
    assert all(_named(b) == {ids["uof_format"], ids["oct_late"], ids["dec_late"]}
               for b in inbox.bodies())  # fmt: skip
    # `datashare run`'s check after it sends nothing the sensor sent.
    assert alert_after_run(home) == "Alerts: nothing new to tell the leads."
    with dg.build_sensor_context() as context:
        assert sensor(context).skip_message == "Alerts: nothing new to tell the leads."
    assert len(inbox.received) == 2


def test_alerts_off_unless_configured_and_a_server_down_is_tried_again(seeded, monkeypatch):
    home, _ = seeded
    for name in ("DATASHARE_SMTP_HOST", "DATASHARE_ALERT_TO"):
        monkeypatch.delenv(name, raising=False)
    assert load_alert_settings() is None and alert_after_run(home) is None
    with dg.build_sensor_context() as context:
        assert "Alerts are off" in build_alert_sensor(home)(context).skip_message
    closed = _free_port()  # nothing listens there
    monkeypatch.setenv("DATASHARE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DATASHARE_SMTP_PORT", str(closed))
    monkeypatch.setenv("DATASHARE_SMTP_TLS", "none")
    monkeypatch.setenv("DATASHARE_ALERT_TO", LEADS[0])
    said = alert_after_run(home)
    assert said.startswith("Alerts: 0 email(s) sent") and f"127.0.0.1:{closed}" in said
    assert not (home.home / "desk" / "alerts-sent.json").exists()  # nothing marked as sent
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=closed)
    controller.start()
    try:
        assert send_alerts(home, load_alert_settings()).emails == 1
    finally:
        controller.stop()
    assert len(handler.received) == 1


def test_no_classified_value_in_any_page_or_email(
    home, inbox, stop_and_search, real_stop_and_search, tmp_path
):
    """The real June 2022 file with values planted in classified columns (Latitude is
    restricted, Gender personal), validated by the real validator, its delivery held back:
    the desk's pages and the leads' emails never show those values."""
    with real_stop_and_search.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))[:40]
    header = rows[0]
    rows[1][header.index("Latitude")] = "51,512"
    rows[2][header.index("Gender")] = "Unknown-Secret"
    rows[3][header.index("Type")] = "Person  search"  # unclassified: its value may be named
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    source = tmp_path / "2022-06.csv"
    source.write_text(out.getvalue(), encoding="utf-8")
    lake = open_lake(home.lake)
    delivery = deliver(lake, "stop_and_search", "2022-06", source.name, 39, "held")
    outcome = validate_delivery(stop_and_search, source, "2022-06", delivery, lake)
    Register(lake).write_breaches("stop_and_search", "2022-06", delivery, outcome.breaches)
    build_warehouse(lake, load_contracts(), home.warehouse)
    secrets = ("51,512", "Unknown-Secret")
    rules = {b.rule: b.breach_id for b in outcome.breaches}
    assert {"latitude.type", "gender_known"} <= set(rules)

    UserStore(home.home).add("alice", "lead", PASSWORD)
    client = TestClient(create_app(home, DeskConfig(), today()))
    login = client.get("/login")
    token = re.search(r'name="csrftoken" value="([^"]+)"', login.text).group(1)
    client.post("/login", data={"name": "alice", "password": PASSWORD, "csrftoken": token})
    pages = [
        client.get(path).text
        for path in [
            "/?status=any", "/notices", "/notices/stop_and_search/2022-06",
            "/notices/stop_and_search/2022-06/letter",
            *(f"/breaches/{b}" for b in rules.values()),
        ]
    ]  # fmt: skip
    assert "classifies Latitude as restricted" in pages[-len(rules) + list(rules).index(
        "latitude.type")]  # fmt: skip
    assert "Person  search" in "".join(pages)  # an unclassified value is named
    send_alerts(home, load_alert_settings())
    bodies = inbox.bodies()
    assert len(bodies) == 2 and _named(bodies[0]) == set(rules.values())
    for text in [*pages, *bodies]:
        for secret in secrets:
            assert secret not in text


def test_a_lead_emails_the_notice_to_the_agreed_contact(seeded, inbox, monkeypatch):
    home, ids = seeded
    UserStore(home.home).add("alice", "lead", PASSWORD)
    # Off by default: no button, and a post is refused.
    client = _signed_in(create_app(home, DeskConfig(), today()))
    page = client.get("/notices/stop_and_search/2025-10").text
    assert "Send by email" not in page
    token = re.search(r'name="csrftoken" value="([^"]+)"', page).group(1)
    refused = client.post("/notices/stop_and_search/2025-10/email", data={"csrftoken": token})
    assert refused.status_code == 403 and len(inbox.received) == 0
    client = _signed_in(create_app(home, DeskConfig(email_notices=True), today()))
    page = client.get("/notices/stop_and_search/2025-10").text
    assert (
        "Send by email to MPS Stop and Search Data Team &lt;stop-search-data@met.example&gt;"
        in page
    )
    token = re.search(r'name="csrftoken" value="([^"]+)"', page).group(1)
    answer = client.post("/notices/stop_and_search/2025-10/email", data={"csrftoken": token,
                         "note": "notice of 12 January 2026, emailed"})  # fmt: skip
    assert "Emailed to stop-search-data@met.example and recorded as sent by alice" in answer.text
    ((rcpt, message),) = inbox.received
    assert rcpt == ["stop-search-data@met.example"]
    assert message["Subject"] == "Stop and search: notice of breaches for October 2025"
    assert message["To"] == "MPS Stop and Search Data Team <stop-search-data@met.example>"
    text = message.get_body(("plain",)).get_content()
    letter = message.get_body(("html",)).get_content()
    assert ids["oct_type"] in text and ids["oct_type"] in letter
    assert "<h1>Stop and search: notice of breaches for October 2025</h1>" in letter
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        (what,) = con.execute(
            "SELECT what FROM governance.exports WHERE period = '2025-10'"
        ).fetchone()
    assert what.endswith("(2 breach(es)), emailed to stop-search-data@met.example")


def _signed_in(app) -> TestClient:
    client = TestClient(app)
    login = client.get("/login")
    token = re.search(r'name="csrftoken" value="([^"]+)"', login.text).group(1)
    client.post("/login", data={"name": "alice", "password": PASSWORD, "csrftoken": token})
    return client
