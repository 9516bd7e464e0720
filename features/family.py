"""A feature family: features computed together, declared once where they are computed.

A family's ``read(state, transfer, t, role)`` returns ``{suffix: value}``, always the same
suffixes in the same order; the entity state prefixes them (``sender_``, ``device_``...). The
names are never listed apart from the values: they are the keys a read gives on a fresh state
(``PROBE``). Next to the read, a family says which source family its features need beyond
transfers (``source``, with per-feature exceptions in ``sources``; see ``features.sources``) and
which in-chat warning a feature may raise in which role (``warnings``). An entity state lists,
per role, the families a transfer reads from it (``READS``); the vector's names, the source map
and the warning codes are all derived from those lists.

>>> EUROS = Family(lambda st, tr, t, role: {"amount_euros": tr.amount_cents / 100}, "transfers",
...              warnings={"sender": {"amount_euros": "unusual_amount"}})
>>> EUROS.read(None, PROBE, 0, "sender"), EUROS.source_of("amount_euros")
({'amount_euros': 1.0}, 'transfers')
>>> EUROS.warning("sender", "amount_euros"), EUROS.warning("recipient", "amount_euros")
('unusual_amount', None)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Optional

from pipelines.contracts.schemas import TransferRequested


@dataclass(frozen=True, eq=False)  # a family is itself, whatever it declares
class Family:
    read: Callable[..., dict[str, float]]  # (state, transfer, relative t, role) -> {suffix: value}
    source: str  # the source family its features need beyond transfers
    sources: dict[str, str] = field(default_factory=dict)  # exceptions: suffix -> source family
    warnings: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> {suffix: code}

    def source_of(self, suffix: str) -> str:
        return self.sources.get(suffix, self.source)

    def warning(self, role: str, suffix: str) -> Optional[str]:
        return self.warnings.get(role, {}).get(suffix)


def _key(c: str) -> str:
    return "a_" + c * 20  # a keyed hash's shape (features tag the 8 hex digits after "a_")


# A transfer touching every kind of entity, read on fresh states to learn the names.
PROBE = TransferRequested(id="probe", ts=86_400_000, transfer_id="probe", sender=_key("1"),
                          recipient=_key("2"), amount_cents=100, conversation="probe",
                          device=_key("3"), ip=_key("4"), card=_key("5"), suggestion_id="probe",
                          payout_due_ts=86_400_000)


@lru_cache(maxsize=None)
def declared(cls, role: str) -> tuple[tuple[str, Family, str], ...]:
    """(full name, family, suffix) of every feature state class ``cls`` gives in ``role``."""
    blank, prefix = cls(), cls.prefix(role)
    t = blank.now(PROBE.ts)
    out = [(f"{prefix}_{suffix}", family, suffix)
           for family in cls.READS[role] for suffix in family.read(blank, PROBE, t, role)]
    if len({suffix for _, _, suffix in out}) != len(out):
        raise ValueError(f"two {cls.__name__} families give the same {prefix}_ feature")
    return tuple(out)


@lru_cache(maxsize=None)
def names_of(cls, role: str) -> tuple[str, ...]:
    return tuple(name for name, _, _ in declared(cls, role))


@lru_cache(maxsize=None)
def _plan(cls, role: str) -> tuple[tuple[Callable, ...], tuple[str, ...], tuple[str, ...]]:
    """The reads to call, the suffixes they must give, and the names given instead."""
    return (tuple(family.read for family in cls.READS[role]),
            tuple(s for _, _, s in declared(cls, role)), names_of(cls, role))


def read_families(state, transfer, t: int, role: str) -> dict[str, float]:
    """Every family ``state`` gives in ``role``, read at relative time ``t``, fully named."""
    reads, suffixes, names = _plan(type(state), role)
    values = {}
    for read in reads:
        values.update(read(state, transfer, t, role))
    if tuple(values) != suffixes:  # cheap, and no family can misname a value
        raise ValueError(f"{type(state).__name__} read {tuple(values)} as {role}, "
                         f"not the declared {suffixes}")
    return dict(zip(names, values.values()))
