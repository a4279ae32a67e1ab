"""The desk's accounts: a name, a role and an argon2 password hash, kept in the home.

`<home>/desk/users.json`, readable by its owner only. Roles: `lead` (may act on breaches
and send notices) and `viewer` (reads only). Passwords are hashed by argon2-cffi's
PasswordHasher (argon2id, its default parameters); the file never holds a password.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pipelines.desk.config import desk_folder, write_private

ROLES = ("lead", "viewer")
USERS_FILE = "users.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
_HASHER = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong
# password (the time of an answer does not tell which names exist).
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


class AccountError(ValueError):
    """An account that cannot be made or changed, with the reason in words."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    sessions_after: float = 0.0  # sessions signed in before this (epoch seconds) are over

    @property
    def is_lead(self) -> bool:
        return self.role == "lead"


class UserStore:
    """The accounts of one home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "desk" / USERS_FILE

    def _read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text(encoding="utf-8")).get("users", {})

    def _write(self, users: dict[str, dict]) -> None:
        desk_folder(self.home)
        write_private(self.path, json.dumps({"users": users}, indent=2, sort_keys=True) + "\n")

    def add(self, name: str, role: str, password: str, replace: bool = False) -> User:
        """Make (or, with `replace`, reset) an account; the password is stored hashed."""
        if not NAME.match(name):
            raise AccountError(
                f"{name!r} is not an account name: letters, digits and . _ @ - only, "
                "starting with a letter or digit, at most 64"
            )
        if role not in ROLES:
            raise AccountError(f"the role must be one of {', '.join(ROLES)}, not {role!r}")
        users = self._read()
        if name in users and not replace:
            raise AccountError(f"there is already an account {name!r} (--replace resets it)")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
        users[name] = {
            "role": role,
            "password_hash": _HASHER.hash(password),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            # A reset password ends every session signed in with the old one.
            "sessions_after": time.time(),
        }
        self._write(users)
        return User(name, role)

    def remove(self, name: str) -> None:
        users = self._read()
        if name not in users:
            raise AccountError(f"no account {name!r}")
        del users[name]
        self._write(users)

    def get(self, name: str) -> User | None:
        """The account of that name, if there is one."""
        record = self._read().get(name)
        return User(name, record["role"], record.get("sessions_after", 0.0)) if record else None

    def end_sessions(self, name: str) -> None:
        """Sign the account out everywhere: a session cookie signed in before now, kept or
        copied, is no longer accepted (the cookie itself cannot be taken back)."""
        users = self._read()
        if name in users:
            users[name]["sessions_after"] = time.time()
            self._write(users)

    def all(self) -> list[User]:
        return [User(n, r["role"]) for n, r in sorted(self._read().items())]

    def verify(self, name: str, password: str) -> User | None:
        """The account when `password` is its password, else None."""
        record = self._read().get(name)
        try:
            _HASHER.verify(record["password_hash"] if record else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return User(name, record["role"]) if record else None
