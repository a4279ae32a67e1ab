"""Sending email from the desk (alerts to leads, notices to the force) with smtplib.

`DATASHARE_SMTP_HOST` (unset: no email at all), `DATASHARE_SMTP_PORT` (default 587 with
starttls, 465 with ssl, 25 with none), `DATASHARE_SMTP_TLS` (`starttls`, the default; `ssl`;
`none`, for a relay on the same machine only), `DATASHARE_SMTP_SENDER` (default
`datashare@<this host>`), `DATASHARE_SMTP_USER` and `DATASHARE_SMTP_PASSWORD` (if the
server wants a sign-in).
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from schemas.contract_page import contract_document

TLS_MODES = {"starttls": 587, "ssl": 465, "none": 25}


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    tls: str
    sender: str
    user: str | None = None
    password: str | None = None


def load_mail_settings(environ: dict[str, str] | None = None) -> MailSettings | None:
    """The SMTP settings, or None when no mail server is set."""
    env = os.environ if environ is None else environ
    host = (env.get("DATASHARE_SMTP_HOST") or "").strip()
    if not host:
        return None
    tls = (env.get("DATASHARE_SMTP_TLS") or "starttls").strip().lower()
    if tls not in TLS_MODES:
        raise SystemExit(f"DATASHARE_SMTP_TLS must be one of {', '.join(TLS_MODES)}, not {tls!r}")
    port = (env.get("DATASHARE_SMTP_PORT") or "").strip()
    try:
        port_number = int(port) if port else TLS_MODES[tls]
    except ValueError:
        raise SystemExit(f"DATASHARE_SMTP_PORT must be a port number, not {port!r}") from None
    return MailSettings(
        host=host,
        port=port_number,
        tls=tls,
        sender=(env.get("DATASHARE_SMTP_SENDER") or "").strip() or f"datashare@{socket.getfqdn()}",
        user=(env.get("DATASHARE_SMTP_USER") or "").strip() or None,
        password=env.get("DATASHARE_SMTP_PASSWORD") or None,
    )


@contextmanager
def smtp(settings: MailSettings) -> Iterator[smtplib.SMTP]:
    """A connection to the mail server, encrypted as the settings say, signed in if asked."""
    context = ssl.create_default_context()
    if settings.tls == "ssl":
        server: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=30, context=context
        )
    else:
        server = smtplib.SMTP(settings.host, settings.port, timeout=30)
    with server:
        if settings.tls == "starttls":
            server.starttls(context=context)
        if settings.user:
            server.login(settings.user, settings.password or "")
        yield server


def provider_contact(contract: Any) -> tuple[str, str] | None:
    """The name and address of the provider's owner in the contract's team (the agreed
    contact a notice goes to), or None when the contract names no address."""
    team = contract_document(contract.path).get("team") or {}
    for member in team.get("members") or []:
        if not isinstance(member, dict):
            continue
        address = str(member.get("username") or "")
        if "provider" in str(member.get("role") or "") and "@" in address:
            return str(member.get("name") or address), address
    return None
