"""Console users: bcrypt-hashed passwords in ``<data dir>/console/users.yaml`` (outside git).

``vigie console-users`` (run by ``vigie run``) sets demo users, one per role, to a fresh password
and prints how to sign in; ``--add NAME --role ROLE`` adds or replaces one user with a password you choose.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Optional

import bcrypt
import yaml

from pipelines.contracts import settings

ROLES = ("analyst", "lead", "data_scientist", "admin")
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
    password = password or os.environ.get("VIGIE_CONSOLE_DEMO_PASSWORD") or secrets.token_urlsafe(9)
    users = {name: (role, password) for name, role in DEMO.items()}
    write_users(path, users)
    return users


def console_port(port: Optional[int] = None) -> int:
    return port or int(os.environ.get("VIGIE_CONSOLE_PORT") or 8501)


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
