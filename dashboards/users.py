"""Console users: bcrypt-hashed passwords in ``<data dir>/console/users.yaml`` (outside git),
the failed sign-ins that lock a name out for a while (``Throttle``), and the signed, expiring
session tokens that keep a sign-in across reloads (``Sessions``).

``vigie console-users`` (run by ``vigie run``) sets demo users, one per role, to a fresh password
and prints how to sign in; ``--add NAME --role ROLE`` adds or replaces one user with a password you choose.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, get_args

import bcrypt
import yaml
from itsdangerous import BadSignature, URLSafeTimedSerializer

from pipelines.contracts import keyfiles, settings
from pipelines.contracts.schemas import Role

ROLES = get_args(Role)
DEMO = {"alice": "analyst", "leo": "lead", "dana": "data_scientist", "root": "admin"}


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()


def write_users(path: Path, users: dict[str, tuple[str, str]]) -> None:
    """users: username -> (role, clear password); merged into the file, written 0600."""
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    data = data or {"users": {}}
    for name, (role, password) in users.items():
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        data["users"][name] = {"role": role, "password_hash": _hash(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=True))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def users_path() -> Path:
    return settings.load().data_dir / "console" / "users.yaml"


def ensure_demo_users(path: Path, password: Optional[str] = None) -> dict:
    """(Re)set the demo users, one per role, to one password (VIGIE_CONSOLE_DEMO_PASSWORD, or a
    fresh random one, so no clear password is ever stored); other users are left as they are.
    Returns {username: (role, password)} to print."""
    given = settings.environment().console.console_demo_password
    password = password or (given and given.get_secret_value()) or secrets.token_urlsafe(9)
    users = {name: (role, password) for name, role in DEMO.items()}
    write_users(path, users)
    return users


def console_port(port: Optional[int] = None) -> int:
    return port or settings.environment().console.console_port


def streamlit_args(port: Optional[int] = None) -> list[str]:
    """``python`` arguments that serve the console on 127.0.0.1 (port last)."""
    app = Path(__file__).resolve().parent / "app.py"
    return ["-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal",
            "--server.port", str(console_port(port))]


def describe(path: Path, created: dict) -> str:
    password = next(iter(created.values()))[1]
    names = ", ".join(f"{name} ({role})" for name, (role, _) in created.items())
    return f"console users: {names}; password {password} (stored hashed in {path})"


# --- sign-in throttling -------------------------------------------------------------------------
def max_failures() -> int:
    return settings.environment().console.console_max_failures


def lockout_s() -> float:
    return settings.environment().console.console_lockout_s


class LockedJson:
    """A small JSON object in a 0600 file, read and written back under an exclusive lock, so
    reloads, tabs and console processes share it and a restart keeps it."""

    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def entries(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                entries = json.loads(self.path.read_text()) if self.path.exists() else {}
            except ValueError:
                entries = {}  # a damaged file counts nothing: it never locks everyone out
            yield entries
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            fd_tmp = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd_tmp, "w") as f:
                json.dump(entries, f)
            os.replace(tmp, self.path)
        finally:
            os.close(fd)  # releases the lock


def _name_key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class Throttle:
    """Failed sign-ins per name, in ``<data dir>/console/sign-in-failures.json`` (0600): after
    ``max_failures()`` in a row the name is locked for ``lockout_s()``, whatever the password,
    in every console process and across restarts. Unknown names count the same way, so a
    lockout says nothing about whether a name exists. Names are stored as SHA-256 digests."""

    def __init__(self, path: Optional[Path] = None):
        self.path = path or users_path().with_name("sign-in-failures.json")
        self._entries = LockedJson(self.path).entries

    def locked_for(self, name: str, now: Optional[float] = None) -> float:
        """Seconds left of ``name``'s lockout (0: not locked)."""
        now = time.time() if now is None else now
        with self._entries() as entries:
            until = entries.get(_name_key(name), {}).get("locked_until", 0)
        return max(0.0, until - now)

    def failed(self, name: str, now: Optional[float] = None) -> bool:
        """Count a failed sign-in; True if it locks the name (it was the last one allowed)."""
        now = time.time() if now is None else now
        with self._entries() as entries:
            entry = entries.get(_name_key(name), {})
            if entry.get("locked_until", 0) <= now and now - entry.get("last", now) > lockout_s():
                entry = {}  # failures long ago, or a lockout that has ended: start again
            entry["failures"] = entry.get("failures", 0) + 1
            entry["last"] = now
            locks = entry["failures"] >= max_failures()
            if locks:
                entry = {"failures": 0, "last": now, "locked_until": now + lockout_s()}
            entries[_name_key(name)] = entry
        return locks

    def succeeded(self, name: str) -> None:
        with self._entries() as entries:
            entries.pop(_name_key(name), None)


# --- sessions kept across reloads ---------------------------------------------------------------
COOKIE = "vigie_session"


def session_s() -> float:
    return settings.environment().console.console_session_s


class Sessions:
    """Session tokens for the browser's cookie: the user name, role and sign-in time, signed
    (HMAC-SHA1 by itsdangerous, with ``<secrets dir>/console-session.key``, made once, 0600) and
    refused after ``session_s()``. Signing out records the time per name
    (``<data dir>/console/signed-out.json``): every token of that name issued before it is
    refused, in every browser, so a copied cookie dies with the sign-out."""

    def __init__(self, secrets_dir: Optional[Path] = None, data_dir: Optional[Path] = None):
        conf = settings.load()
        key = keyfiles.read_or_create((secrets_dir or conf.secrets_dir) / "console-session.key")
        self._signer = URLSafeTimedSerializer(key, salt="vigie-console-session")
        self._signed_out = LockedJson((data_dir or conf.data_dir) / "console" / "signed-out.json")

    def issue(self, user: dict) -> str:
        return self._signer.dumps({"u": user["username"], "r": user["role"], "t": time.time()})

    def check(self, token: Optional[str]) -> Optional[dict]:
        """The token's user ({username, role}), or None: missing, forged, expired, or issued
        before its user signed out. (The role is checked against the users file by the caller.)"""
        if not token:
            return None
        try:
            data = self._signer.loads(token, max_age=session_s())
        except BadSignature:  # SignatureExpired is one too
            return None
        with self._signed_out.entries() as entries:
            out = entries.get(_name_key(data["u"]), 0)
        if data["t"] <= out:
            return None
        return {"username": data["u"], "role": data["r"]}

    def sign_out(self, username: str) -> None:
        with self._signed_out.entries() as entries:
            entries[_name_key(username)] = time.time()
