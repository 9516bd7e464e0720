"""Control state every worker needs whole: the acting and shadow models, the rules and the
allow/block lists. Changes arrive as events (analyst actions, model updates); the worker that
reads one applies it to a Faust GlobalTable, whose changelog every worker follows, so a change
takes effect everywhere without a restart.

Keys: ``model:acting``, ``model:shadow`` (a version or ""), ``rules`` and ``lists`` (JSON).
"""
from __future__ import annotations

import json
import logging
from typing import Optional

from features.vector import FEATURE_NAMES
from models.lists import ListError, ListStore
from models.rules import RuleError, RuleSet

log = logging.getLogger(__name__)


def control_table(app):
    # One partition, read whole by every worker (Faust's advice for global tables).
    table = app.GlobalTable("control", key_type=bytes, value_type=bytes, partitions=1,
                            recovery_buffer_size=1, use_partitioner=True)
    table.key_serializer = table.value_serializer = "raw"
    return table


class Control:
    """A cached view of the control table: rebuilt only when a value changes."""

    def __init__(self, table):
        self.table = table
        self._cache: dict[bytes, tuple[Optional[bytes], object]] = {}

    def _get(self, key: bytes, build):
        raw = self.table.get(key)
        cached = self._cache.get(key)
        if cached is None or cached[0] != raw:
            cached = (raw, build(raw))
            self._cache[key] = cached
        return cached[1]

    @property
    def rules(self) -> RuleSet:
        ruleset = self._get(b"rules", lambda raw: RuleSet.from_json(FEATURE_NAMES, raw.decode())
                            if raw else RuleSet(FEATURE_NAMES))
        if ruleset.broken:
            log.warning("rules left out until fixed: %s", ruleset.broken)
        return ruleset

    @property
    def lists(self) -> ListStore:
        return self._get(b"lists", lambda raw: ListStore.from_json(raw.decode()) if raw else ListStore())

    def model(self, which: str) -> Optional[str]:
        raw = self.table.get(f"model:{which}".encode())
        return raw.decode() or None if raw else None

    # --- writes (from inside an agent: the table needs the current event) ---------------------
    def change_rules(self, change: dict) -> None:
        ruleset = RuleSet.from_json(FEATURE_NAMES, self.rules.to_json())
        ruleset.apply_change(change)  # raises RuleError: nothing changes
        self.table[b"rules"] = json.dumps(ruleset.to_json()).encode()

    def change_lists(self, change: dict) -> None:
        lists = ListStore.from_json(self.lists.to_json())
        lists.apply_change(change)  # raises ListError: nothing changes
        lists.purge(int(change["ts"]))
        self.table[b"lists"] = json.dumps(lists.to_json()).encode()

    def set_model(self, which: str, version: str) -> None:
        self.table[f"model:{which}".encode()] = version.encode()


__all__ = ["Control", "control_table", "RuleError", "ListError"]
