"""Alerts by email: each lead is told, once, when a month needs them.

What is alerted: every open breach that is critical (a delivery held back or rejected, a
file that cannot be taken), that belongs to a delivery held back or rejected, or that
flags a late delivery (`delivery.late`). Each recipient gets one email per check listing
what is new for them, in the words the register and notices already use (the breach's
detail, what became of the delivery, the clause), with a link to the desk; never a row,
never a classified value (a breach's detail never holds one).

Sent once: `<home>/desk/alerts-sent.json` records which breach went to which address, and
a lock file makes a check after `datashare run` and the daemon's sensor take turns, so
neither sends what the other sent. An address that could not be reached is tried again at
the next check; nothing is recorded for it until its email went.

Settings: the mail server's (`pipelines.desk.mail`: `DATASHARE_SMTP_HOST`, `_PORT`, `_TLS`,
`_SENDER`, `_USER`, `_PASSWORD`), `DATASHARE_ALERT_TO` (the leads' addresses,
comma-separated; alerts are off while it or the host is unset) and `DATASHARE_DESK_URL`
for the links.
"""

from __future__ import annotations

import fcntl
import json
import os
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from pipelines.desk.config import desk_folder, load_desk_config, write_private
from pipelines.desk.mail import MailSettings, load_mail_settings, smtp
from pipelines.governance.breach_notice import what_we_did
from pipelines.governance.breach_register import BreachRegister
from pipelines.governance.delivery_schedule import RULE as LATE_RULE
from pipelines.governance.views import OPEN_STATUSES
from pipelines.home.settings import Settings
from pipelines.lake.store import open_lake
from schemas.contract import load_contracts
from schemas.contract_page import agreement_title, contract_document
from schemas.period_words import period_words

LEDGER = "alerts-sent.json"
LOCK = "alerts.lock"
LISTED = 50  # items written out in one email; the rest are counted


@dataclass(frozen=True)
class AlertSettings:
    mail: MailSettings
    recipients: tuple[str, ...]
    desk_url: str | None = None


def load_alert_settings(environ: dict[str, str] | None = None) -> AlertSettings | None:
    """The alert settings, or None when alerts are off."""
    env = os.environ if environ is None else environ
    recipients = tuple(
        a.strip() for a in (env.get("DATASHARE_ALERT_TO") or "").split(",") if a.strip()
    )
    mail = load_mail_settings(env)
    if mail is None or not recipients:
        return None
    return AlertSettings(mail, recipients, load_desk_config(env).url)


@dataclass
class AlertsSent:
    """What one check sent: emails, and the breaches they told of."""

    emails: int = 0
    breaches: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)  # addresses to try again, with why

    def text(self) -> str:
        if not self.emails and not self.failed:
            return "Alerts: nothing new to tell the leads."
        out = f"Alerts: {self.emails} email(s) sent about {len(self.breaches)} breach(es)."
        if self.failed:
            out += " Not sent (tried again at the next check): " + "; ".join(self.failed)
        return out


def alertable(entry: dict) -> bool:
    """Whether a register entry is one the leads are told of at once."""
    return entry["status"] in OPEN_STATUSES and (
        entry["severity"] == "critical"
        or entry.get("delivery_status") in ("held", "rejected")
        or entry["rule"] == LATE_RULE
    )


def _kind(entry: dict) -> str:
    if entry["rule"] == LATE_RULE:
        return "late delivery"
    if entry.get("delivery_status") == "held":
        return "held back"
    if entry.get("delivery_status") == "rejected":
        return "rejected"
    return entry["severity"]


def compose(entries: list[dict], recipient: str, settings: AlertSettings) -> EmailMessage:
    """One email to one recipient about `entries`, in words."""
    contracts = load_contracts()

    def title(name: str) -> str:
        c = contracts.get(name)
        return agreement_title(contract_document(c.path)) if c else name

    def when(entry: dict) -> str:
        c = contracts.get(entry["contract"])
        return period_words(entry["period"], c.schedule.period if c else "monthly")

    rank = {"critical": 0, "major": 1, "minor": 2}
    entries = sorted(
        entries, key=lambda e: (rank.get(e["severity"], 3), e["contract"], e["period"])
    )
    kinds: dict[str, int] = {}
    for e in entries:
        kinds[_kind(e)] = kinds.get(_kind(e), 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    lines = [
        "Hello,",
        "",
        f"datashare has {len(entries)} new breach(es) for the data-sharing leads to act on "
        f"({summary}).",
        "",
    ]
    for n, e in enumerate(entries[:LISTED], 1):
        clause = (
            f"clause {e['clause_number']} ({e['clause_title']})" if e.get("clause_number") else ""
        )
        lines += [
            f"{n}. {title(e['contract'])}, {when(e)}: {e['severity']}, {_kind(e)}"
            + (f", {clause}" if clause else ""),
            f"   What was found: {e['detail']}",
            f"   What we did: {what_we_did(e)}",
            (
                f"   On the desk: {settings.desk_url}/breaches/{e['breach_id']}"
                if settings.desk_url
                else f"   Breach {e['breach_id']} (`datashare breaches show {e['breach_id']}`)"
            ),
            "",
        ]
    if len(entries) > LISTED:
        lines += [f"... and {len(entries) - LISTED} more on the desk.", ""]
    if settings.desk_url:
        lines += [f"Every open breach: {settings.desk_url}/", ""]
    lines += [
        "This email names no value from the data. It is sent once per breach; the desk "
        "keeps the full history.",
    ]
    message = EmailMessage()
    message["Subject"] = f"datashare: {len(entries)} new breach(es) to act on ({summary})"
    message["From"] = settings.mail.sender
    message["To"] = recipient
    message.set_content("\n".join(lines))
    return message


@contextmanager
def _turn(home: Path) -> Iterator[None]:
    """One check at a time per home (the run's and the sensor's)."""
    with open(desk_folder(home) / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ledger(home: Path) -> dict[str, list[str]]:
    path = home / "desk" / LEDGER
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("sent", {})


def send_alerts(settings: Settings, alert: AlertSettings) -> AlertsSent:
    """Email each recipient about the alertable breaches not yet sent to them."""
    entries = [e for e in BreachRegister(open_lake(settings.lake)).entries() if alertable(e)]
    result = AlertsSent()
    with _turn(settings.home):
        ledger = _ledger(settings.home)
        due = {
            r: [e for e in entries if r not in ledger.get(e["breach_id"], [])]
            for r in alert.recipients
        }
        due = {r: items for r, items in due.items() if items}
        if not due:
            return result
        try:
            with smtp(alert.mail) as server:
                for recipient, items in due.items():
                    try:
                        server.send_message(compose(items, recipient, alert))
                    except smtplib.SMTPException as refused:
                        result.failed.append(f"{recipient}: {refused}")
                        continue
                    result.emails += 1
                    for e in items:
                        ledger.setdefault(e["breach_id"], []).append(recipient)
                        result.breaches.add(e["breach_id"])
        except (OSError, smtplib.SMTPException) as unreachable:
            result.failed.append(f"{alert.mail.host}:{alert.mail.port}: {unreachable}")
        if result.emails:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            write_private(
                settings.home / "desk" / LEDGER,
                json.dumps({"sent": ledger, "updated_at": stamp}, indent=1, sort_keys=True),
            )
    return result


def alert_after_run(settings: Settings) -> str | None:
    """After `datashare run`: send what is new, and say so in a line (None when alerts
    are off). Never raises: a mail server out of reach must not fail a run."""
    try:
        alert = load_alert_settings()
        if alert is None:
            return None
        return send_alerts(settings, alert).text()
    except Exception as failed:  # the run's outcome stands, whatever this does
        return f"Alerts: not sent ({type(failed).__name__}: {failed}); tried again next time."
