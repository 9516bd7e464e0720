"""Control state every worker needs whole: the acting and shadow models, the rules and the
allow/block lists, in a Faust GlobalTable that changes as events arrive (analyst actions, model
updates) and takes effect everywhere without a restart.

Keys: ``model:acting``, ``model:previous``, ``model:shadow`` (a version or ""), ``rules`` and
``lists`` (JSON), and ``transfer:<id>`` (JSON) for each held transfer an analyst claimed or
decided: who claimed it, and the first release or block, which wins over any later one. These
grow with analysts' actions only (~100 bytes per transfer an analyst touched).
Writes go to the table's changelog only, and every worker (the writer too) applies them from
there, in changelog order; the writer reads its own writes from ``_written`` until then.

Why not ``table[key] = value``: docs/stream.md#control
"""
from __future__ import annotations

import json
import logging
import time
from typing import Optional

from features.vector import FEATURE_NAMES
from models.lists import ListError, ListStore
from models.rules import RuleError, RuleSet
from pipelines.kafka.tables import raw_global_table

log = logging.getLogger(__name__)
OWN_WRITE_S = 3.0  # how long a worker trusts its own write over the table (changelog round trip)


def control_table(app):
    return raw_global_table(app, "control")


class ActionError(ValueError):
    """An analyst action that an earlier one on the same transfer stands against."""


PAST = {"release": "released", "block": "blocked"}


def _later_hold(hold: Optional[str], decided_hold: Optional[str]) -> bool:
    """Whether ``hold`` (a held status's id, ``<transfer>.<n>``) came after the one the earlier
    release or block answered: a released transfer held again (an account lock) is decided
    again. Either unknown: not later (the first decision wins, as before)."""
    if not hold or not decided_hold:
        return False
    try:
        return int(hold.rpartition(".")[2]) > int(decided_hold.rpartition(".")[2])
    except ValueError:
        return False


class Control:
    """A cached view of the control table: rebuilt only when a value changes."""

    def __init__(self, table):
        self.table = table
        self._cache: dict[bytes, tuple[Optional[bytes], object]] = {}
        # own writes in flight: key -> (the table's value before them, values written in order,
        # when the last was written)
        self._written: dict[bytes, tuple[Optional[bytes], list[bytes], float]] = {}

    def _raw(self, key: bytes) -> Optional[bytes]:
        raw = self.table.get(key)
        mine = self._written.get(key)
        if mine is not None:
            before, values, at = mine
            if (raw == before or raw in values[:-1]) and time.monotonic() - at <= OWN_WRITE_S:
                return values[-1]  # our last write has not come back yet
            # it has, or another worker's newer change has (changelog order wins), or too late
            del self._written[key]
        return raw

    def _get(self, key: bytes, build):
        raw = self._raw(key)
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
        raw = self._raw(f"model:{which}".encode())
        return raw.decode() or None if raw else None

    def transfer(self, transfer_id: str) -> dict:
        """The analysts' record of a held transfer: ``claimed`` and ``decided`` (absent until
        someone claims or decides it), each ``{actor, action, id, hold}``, and the ids of every action
        ``accepted`` on it."""
        return self._get(f"transfer:{transfer_id}".encode(),
                         lambda raw: json.loads(raw) if raw else {})

    # --- writes: through the changelog, which every worker follows ---------------------------
    async def _write(self, key: bytes, value: bytes) -> None:
        before, values, _ = self._written.get(key) or (self.table.get(key), [], 0.0)
        self._written[key] = (before, values + [value], time.monotonic())
        await self.table.changelog_topic.send(key=key, value=value, key_serializer="raw",
                                              value_serializer="raw")

    async def change_rules(self, change: dict) -> None:
        ruleset = RuleSet.from_json(FEATURE_NAMES, self.rules.to_json())
        ruleset.apply_change(change)  # raises RuleError: nothing changes
        await self._write(b"rules", json.dumps(ruleset.to_json()).encode())

    async def change_lists(self, change: dict) -> None:
        lists = ListStore.from_json(self.lists.to_json())
        lists.apply_change(change)  # raises ListError: nothing changes
        lists.purge(int(change["ts"]))
        await self._write(b"lists", json.dumps(lists.to_json()).encode())

    async def transfer_action(self, action) -> None:
        """Record an analyst's claim, assign, release or block of a held transfer (an
        ``AnalystAction``), or raise ``ActionError`` (nothing changes): the first release or
        block wins (a release or block of a later hold, ``params["hold"]``, decides it again:
        a released transfer an account lock held again), and a transfer claimed by one analyst
        cannot be claimed, released or blocked by another (a lead reassigns it with ``assign``). An action accepted
        before passes again (a redelivery after a crash, read against the state the actions
        after it left)."""
        record = dict(self.transfer(action.target))
        done, claimed = record.get("decided"), record.get("claimed")
        if action.id in record.get("accepted", ()):
            return
        hold = (action.params or {}).get("hold")  # the held status the analyst acted on
        if done and not (action.action in PAST and _later_hold(hold, done.get("hold"))):
            raise ActionError(f"transfer {action.target} was already {PAST[done['action']]} by "
                              f"{done['actor']} (action {done['id']})")
        me = {"actor": action.actor, "action": action.action, "id": action.id, "hold": hold}
        if action.action == "assign":
            record["claimed"] = {**me, "actor": action.params["assignee"]}
        elif claimed and claimed["actor"] != action.actor:  # a claim, a release or a block
            raise ActionError(f"transfer {action.target} is claimed by {claimed['actor']} "
                              f"(action {claimed['id']})")
        elif action.action in PAST:
            record["decided"] = me
        elif not claimed:
            record["claimed"] = me
        record["accepted"] = [*record.get("accepted", ()), action.id]
        await self._write(f"transfer:{action.target}".encode(), json.dumps(record).encode())

    async def set_model(self, which: str, version: str) -> None:
        await self._write(f"model:{which}".encode(), version.encode())


__all__ = ["Control", "control_table", "ActionError", "RuleError", "ListError"]
