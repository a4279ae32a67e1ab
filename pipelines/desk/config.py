"""The desk's settings, from the environment, and the secret its cookies are signed with.

- `DATASHARE_DESK_URL` (unset): the desk's address as people reach it
  (`https://desk.example`), for links in alerts; an https address makes cookies Secure.
- `DATASHARE_DESK_SECURE_COOKIES` (on when that address is https): `1` or `0`.
- `DATASHARE_DESK_SESSION_MINUTES` (480): a session ends this long after sign-in.
- `DATASHARE_DESK_TRUSTED_USER_HEADER` (unset: off): behind a single sign-on proxy, the
  header that names the signed-in account.
- `DATASHARE_DESK_SIGNIN_LIMIT` (`5 per 5 minutes`): failed sign-ins allowed for one
  account name (an address gets four times as many).
- `DATASHARE_DESK_EMAIL_NOTICES` (off): `1` lets leads email a month's notice to the
  agreement's provider contact (the team member whose role names the provider), through
  the mail server of `pipelines.desk.mail`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

DESK_FOLDER = "desk"  # in the home: accounts, the cookie secret, alerts sent
SECRET_FILE = "secret.key"


@dataclass(frozen=True)
class DeskConfig:
    """How the desk is reached and how it trusts a browser."""

    url: str | None = None
    secure_cookies: bool = False
    session_minutes: int = 480
    trusted_user_header: str | None = None
    signin_limit: str = "5 per 5 minutes"
    email_notices: bool = False  # leads may email a notice to the agreement's contact


def _flag(raw: str | None, default: bool) -> bool:
    if raw is None or not raw.strip():
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def load_desk_config(environ: dict[str, str] | None = None) -> DeskConfig:
    """The desk's settings from `environ` (default: the process environment)."""
    env = os.environ if environ is None else environ
    url = (env.get("DATASHARE_DESK_URL") or "").strip().rstrip("/") or None
    minutes = (env.get("DATASHARE_DESK_SESSION_MINUTES") or "").strip()
    try:
        session_minutes = int(minutes) if minutes else 480
    except ValueError:
        raise SystemExit(
            f"DATASHARE_DESK_SESSION_MINUTES must be a whole number, not {minutes!r}"
        ) from None
    if session_minutes < 1:
        raise SystemExit("DATASHARE_DESK_SESSION_MINUTES must be at least 1")
    header = (env.get("DATASHARE_DESK_TRUSTED_USER_HEADER") or "").strip() or None
    return DeskConfig(
        url=url,
        secure_cookies=_flag(
            env.get("DATASHARE_DESK_SECURE_COOKIES"), bool(url and url.startswith("https://"))
        ),
        session_minutes=session_minutes,
        trusted_user_header=header.lower() if header else None,
        signin_limit=(env.get("DATASHARE_DESK_SIGNIN_LIMIT") or "").strip() or "5 per 5 minutes",
        email_notices=_flag(env.get("DATASHARE_DESK_EMAIL_NOTICES"), False),
    )


def desk_folder(home: Path) -> Path:
    """The home's desk folder (owner-only), made if missing."""
    folder = home / DESK_FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    return folder


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, whole or not at all."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)


def cookie_secret(home: Path) -> str:
    """The key session and CSRF cookies are signed with: made once per home, kept
    owner-only, so sessions survive a restart of the desk."""
    path = desk_folder(home) / SECRET_FILE
    if not path.exists():
        write_private(path, secrets.token_urlsafe(48))
    return path.read_text(encoding="utf-8").strip()
