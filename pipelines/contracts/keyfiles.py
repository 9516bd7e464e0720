"""Secrets generated once per secrets dir (``<data dir>/secrets`` by default): the demo's HMAC
key and the embedded broker's Kafka passwords. Never constants in the code, never in git.

``read_or_create`` is safe when several processes start together: a secret is written whole to
a private temporary file, then linked to its name, which fails if another process got there
first; everyone then reads the one that won.

>>> import tempfile; d = Path(tempfile.mkdtemp())
>>> first = read_or_create(d / "k", lambda: "one")
>>> read_or_create(d / "k", lambda: "two"), oct((d / "k").stat().st_mode & 0o777)
('one', '0o600')
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable


def new_secret() -> str:
    """256 random bits, URL-safe (safe inside a JAAS or properties file without quoting)."""
    return secrets.token_urlsafe(32)


def private_dir(path: Path) -> Path:
    """``path`` created if missing, readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _write_temp(path: Path, text: str) -> Path:
    """``text`` in a new file beside ``path``, mode 0600 from the first byte."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return tmp


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (replacing it), readable by its owner only."""
    os.replace(_write_temp(path, text), path)


def read_or_create(path: Path, make: Callable[[], str] = new_secret) -> str:
    """The secret in ``path``; created with ``make()`` (mode 0600) if there is none yet."""
    if not path.exists():
        tmp = _write_temp(private_dir(path.parent) / path.name, make())
        try:
            os.link(tmp, path)  # atomic, and refuses to replace the one another process made
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()
