"""Allow and block lists of accounts, devices and cards (keyed hashes only), with expiry.

An entry holds from the event time of the change that added it until ``expires_ts`` (event
time, exclusive; None: until removed). Judging by event time, not by when the stream happens to
run, makes a replay of last month answer as the stream did. The state is JSON-serialisable
(``to_json``/``from_json``) so the stream keeps it in a changelog-backed table, and applying
the same change again leaves it as it was.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from pipelines.contracts.privacy import PATTERNS

LISTS = ("block", "allow")  # the order hits are reported in
KINDS = ("account", "device", "card")
_PATTERN = {kind: re.compile(PATTERNS[kind]) for kind in KINDS}


class ListError(ValueError):
    """A list change that is refused; the lists are left as they were."""


@dataclass(frozen=True)
class Entry:
    list: str
    kind: str
    value: str
    added_ts: int
    expires_ts: int | None = None
    author: str = ""
    reason: str = ""

    def active(self, ts: int) -> bool:
        return self.added_ts <= ts and (self.expires_ts is None or ts < self.expires_ts)


def _ts(value, field: str, optional: bool = False) -> int | None:
    if value in (None, "") and optional:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ListError(f"{field} must be an event time in ms, got {value!r}") from None


class ListStore:
    def __init__(self, entries=()):
        self._entries: dict[tuple[str, str, str], Entry] = {}
        for entry in entries:
            entry = entry if isinstance(entry, Entry) else Entry(**entry)
            self._entries[(entry.list, entry.kind, entry.value)] = entry

    def to_json(self) -> list[dict]:
        return [asdict(e) for _, e in sorted(self._entries.items())]

    @classmethod
    def from_json(cls, data: str | list) -> "ListStore":
        return cls(json.loads(data) if isinstance(data, str) else data)

    def __len__(self) -> int:
        return len(self._entries)

    def apply_change(self, change: Mapping) -> Entry | None:
        """``op`` add | remove, ``list`` block | allow, ``kind`` account | device | card,
        ``value`` (the keyed hash), ``ts`` (event time, ms); for add, optional ``expires_ts``,
        ``author``, ``reason``. Adding an entry again replaces it (new expiry). Returns the
        entry now held for that key, or None. Raises ListError, changing nothing, on an invalid change."""
        op, name, kind, value = (change.get(k) for k in ("op", "list", "kind", "value"))
        if op not in ("add", "remove"):
            raise ListError(f"unknown list change {op!r}")
        if name not in LISTS or kind not in KINDS:
            raise ListError(f"lists are {'/'.join(LISTS)} of {'/'.join(KINDS)}; got {name!r} {kind!r}")
        if not isinstance(value, str) or not _PATTERN[kind].match(value):
            raise ListError(f"a listed {kind} must be its keyed hash, never a raw identifier")
        ts = _ts(change.get("ts"), "ts")
        key = (name, kind, value)
        current = self._entries.get(key)
        if current is not None and ts < current.added_ts:
            return current  # older than the entry we hold: a late duplicate, not news
        if op == "remove":
            self._entries.pop(key, None)
            return None
        expires = _ts(change.get("expires_ts"), "expires_ts", optional=True)
        if expires is not None and expires <= ts:
            raise ListError("expires_ts must be after the change's ts")
        entry = Entry(name, kind, value, ts, expires, str(change.get("author", "")),
                      str(change.get("reason", "")))
        self._entries[key] = entry
        return entry

    def hits(self, sender: str | None, recipient: str | None, device: str | None,
             card: str | None, ts: int) -> list[str]:
        """Active entries naming any party of a transfer at event time ``ts``, as
        ``"<list>:<kind>:<hash>"``, block hits first."""
        parties = [("account", sender), ("account", recipient), ("device", device), ("card", card)]
        out = []
        for name in LISTS:
            for kind, value in parties:
                entry = self._entries.get((name, kind, value)) if value else None
                hit = f"{name}:{kind}:{value}"
                if entry is not None and entry.active(ts) and hit not in out:
                    out.append(hit)
        return out

    def purge(self, ts: int) -> int:
        """Forget entries expired before ``ts`` (keeps the state small); returns how many."""
        gone = [k for k, e in self._entries.items() if e.expires_ts is not None and e.expires_ts <= ts]
        for key in gone:
            del self._entries[key]
        return len(gone)
