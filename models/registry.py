"""Model artifacts on disk: ``<data_dir>/models/<version>/{model.txt, meta.json}``.

A version is ``m-YYYYmmdd-HHMMSS-<8 hex>``: the UTC time it was saved (so names sort in time
order) and a hash of what was saved (model text, feature order, thresholds, data hash, seed), so
the same training gives the same hash. A version directory appears atomically (written aside,
then renamed): a worker loading a model never sees half of one.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import lightgbm as lgb

from pipelines.contracts import settings

VERSION = re.compile(r"^m-\d{8}-\d{6}-[0-9a-f]{8}$")
# The fields that say what a model is; created_at and version say when it was saved.
CONTENT_KEYS = ("feature_names", "thresholds", "data_hash", "seed")


def models_dir(root: Path | None = None) -> Path:
    return Path(root) if root is not None else settings.load().data_dir / "models"


def content_hash(model_text: str, meta: dict) -> str:
    content = json.dumps({k: meta.get(k) for k in CONTENT_KEYS}, sort_keys=True)
    return hashlib.sha256(model_text.encode() + b"\0" + content.encode()).hexdigest()[:8]


def git_commit() -> str | None:
    """The repository's commit, with ``-dirty`` when the working tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=settings.REPO_ROOT, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def save(model_text: str, meta: dict, root: Path | None = None, now: datetime | None = None) -> str:
    """Store a model and its metadata; returns the new version. ``meta`` must hold at least
    ``feature_names`` and ``thresholds``; ``version`` and ``created_at`` are set here."""
    for key in ("feature_names", "thresholds"):
        if key not in meta:
            raise ValueError(f"meta needs {key!r}")
    now = now or datetime.now(timezone.utc)
    version = f"m-{now:%Y%m%d-%H%M%S}-{content_hash(model_text, meta)}"
    meta = {**meta, "version": version, "created_at": now.isoformat(timespec="seconds")}
    base = models_dir(root)
    base.mkdir(parents=True, exist_ok=True)
    target = base / version
    if target.exists():  # the same content saved again within the same second
        return version
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=base))
    try:
        (tmp / "model.txt").write_text(model_text)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.rename(tmp, target)
    except FileExistsError:  # another process saved the same content meanwhile
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return version


class NotAVersion(ValueError):
    """A name that is not a model version (versions arrive in console events)."""


def _dir_of(version: str, root: Path | None) -> Path:
    # versions arrive in console events: never let one name a path outside the registry
    if not VERSION.match(version):
        raise NotAVersion(f"not a model version: {version!r}")
    path = models_dir(root) / version
    if not path.is_dir():
        raise FileNotFoundError(f"no model {version} in {models_dir(root)}")
    return path


def load_meta(version: str, root: Path | None = None) -> dict:
    return json.loads((_dir_of(version, root) / "meta.json").read_text())


def missing_features(meta: dict, available) -> list[str]:
    """The features a model (its ``meta``) needs that ``available`` does not hold, in its order:
    a scorer would see them as always missing, which the model never saw in training."""
    have = set(available)
    return [name for name in meta["feature_names"] if name not in have]


def load(version: str, root: Path | None = None) -> tuple[lgb.Booster, dict]:
    path = _dir_of(version, root)
    meta = json.loads((path / "meta.json").read_text())
    return lgb.Booster(model_str=(path / "model.txt").read_text()), meta


def list_versions(root: Path | None = None) -> list[str]:
    """Every stored version, oldest first."""
    base = models_dir(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if VERSION.match(p.name) and p.is_dir())


def latest(root: Path | None = None) -> str | None:
    versions = list_versions(root)
    return versions[-1] if versions else None
