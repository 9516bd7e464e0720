"""Which source families (``features.sources.FAMILIES``) a lake holds.

An imported lake declares them in its manifest, ``<lake>/sources.json`` (written by ``vigie
import``); a simulated or live-sink lake has none, and its families are detected from the
topics that hold data. The training gates call ``lake_families``: keep its signature.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import duckdb

from features.sources import FAMILIES
from pipelines.lake.parquet import has_data

MANIFEST = "sources.json"
# account-events kinds of the devices family (logins, credentials, devices, cards, IPs)
SECURITY_KINDS = ("login", "login_failed", "password_reset", "email_changed", "phone_changed",
                  "device_added", "card_registered", "bank_account_registered")


def manifest(lake_dir: Union[str, Path]) -> Optional[dict]:
    """The lake's ``sources.json``, or None when it has none."""
    path = Path(lake_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def lake_families(lake_dir: Union[str, Path]) -> dict[str, bool]:
    """family -> present, for every family in FAMILIES. ``accounts`` is present when the lake
    holds sign-ups, declared or derived from first appearance (``signup_source`` tells)."""
    declared = manifest(lake_dir)
    if declared is not None:
        return {f: bool(declared.get("families", {}).get(f, False)) for f in FAMILIES}
    kinds = _account_event_kinds(lake_dir)
    return {
        "transfers": has_data(lake_dir, "transfer-requests"),
        "labels": has_data(lake_dir, "labels"),
        "accounts": "signup" in kinds,
        "devices": any(k in kinds for k in SECURITY_KINDS),
        "messages": has_data(lake_dir, "messages"),
        "assistant": has_data(lake_dir, "assistant-events"),
    }


def signup_source(lake_dir: Union[str, Path]) -> Optional[str]:
    """Where the lake's sign-ups come from: "declared" (the services' signup events, or an
    imported accounts file), "first_appearance" (an import's accounts' first transfers), or
    None (no sign-ups)."""
    declared = manifest(lake_dir)
    if declared is not None:
        accounts = declared.get("families", {}).get("accounts", False)
        return "first_appearance" if accounts == "first_appearance" else \
            ("declared" if accounts else None)
    return "declared" if "signup" in _account_event_kinds(lake_dir) else None


def _account_event_kinds(lake_dir: Union[str, Path]) -> set[str]:
    if not has_data(lake_dir, "account-events"):
        return set()

    files = str(Path(lake_dir) / "account-events" / "hour=*" / "*.parquet").replace("'", "''")
    with duckdb.connect(":memory:") as con:
        return {k for (k,) in con.execute(
            f"SELECT DISTINCT kind FROM read_parquet('{files}', union_by_name=true)").fetchall()}
