"""The storage layer every entity state shares: the contract, the clock, idempotence, msgpack, and
the time bookkeeping (shift with the base, sweep what expired, emptiness) done once for all parts.

Contract (the stream and the replay call only these):
- ``learn_one(event, role) -> list[derived events]`` updates the state in event time;
- ``features_for(transfer, role) -> dict[str, float]`` reads the features this entity gives a
  transfer, *before* the transfer itself is learnt (call features_for, then learn_one); the
  families it reads are ``READS[role]`` (see ``features.family``);
- ``seen(seq)`` / ``mark(seq)``: ``seq`` increases along every event an entity receives (the
  stream: the offset in the one partition that carries all of this entity's events; the
  replay: the event's rank). ``if not st.seen(seq): st.learn_one(ev, role); st.mark(seq)``;
- ``to_bytes()`` / ``cls.from_bytes(b)``: msgpack, a few hundred bytes, led by the layout's
  format version (below);
- ``expire(ts)`` then ``is_empty()``: lets the stream delete dead keys.

Times inside a state are milliseconds relative to ``base``, an absolute time at most ~45 days in
the past, so each fits in 5 msgpack bytes instead of 9. ``base`` moves forward (every ~2 weeks of
activity) and every stored time shifts with it; nothing a feature reads depends on when that
happens, nor on when expired data is swept: reads filter by time themselves.

A part of a state (a ``Struct`` field of an entity state) declares where it keeps times in
``TIMES`` (``Rows``, ``Buckets``, ``Stamps``, ``Moments``, ``Moment``, ``Nested``), each with how
long it keeps them; ``forget(t, day)``, when a part has it, drops what a declaration cannot say.
A part is empty when it equals a fresh one.

Stored states outlive the worker that wrote them (the stream's RocksDB table and its changelog),
so the bytes say which layout they are in: one byte, the kind's ``FORMAT`` (a msgpack positive
fixint, 1..127), then the state as a msgpack array. Bytes written before versions existed start
with the array itself (a msgpack array header is 0x90 or more): they are format 1. A change of
layout that old bytes cannot be decoded into (a field moved, removed or re-read; appending a part
with a default needs nothing) bumps the kind's ``FORMAT`` and adds ``MIGRATIONS[n]``, a function
from format n's fields (the array as plain msgpack values) to format n+1's: a newer worker reads
older states through them, in order. A state in a format newer than the worker's is refused
(``StateFormatError``), never guessed at: the entity stage then leaves it untouched, for the newer
worker (see docs/contracts.md).

>>> class Seen(Struct, array_like=True):
...     ts: list[int] = []
...     TIMES = (Rows("ts", keep=10),)
>>> part = Seen([5, 12, 30])
>>> sweep(part, t=25, day=0); part.ts
[30]
>>> shift(part, 20); part.ts, part == Seen()  # not blank: a fresh part holds nothing
([10], False)
"""
from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache
from typing import Callable, ClassVar, Optional

import msgspec
from msgspec import Struct
from msgspec.structs import astuple

from features.family import Family, names_of, read_families
from features.windows import DAY, MONTH, WEEK, drop_head

BASE_LAG = MONTH + DAY  # a new base sits this far behind the event that sets it...
REBASE_AT = 40 * DAY  # ...and moves once the newest time is this far from it (< 2^32 ms)
SWEEP_EVERY = WEEK

_ENCODER = msgspec.msgpack.Encoder()


class StateFormatError(ValueError):
    """Stored state in a format this worker cannot read (newer than its own, or not a format)."""


# --- where a part keeps times ---------------------------------------------------------------
class Rows:
    """Parallel lists sorted by the first, which holds times; rows older than ``keep`` go."""

    def __init__(self, *fields: str, keep: Optional[int] = None):
        self.fields, self.keep = fields, keep

    def shift(self, part, d: int) -> None:
        col = getattr(part, self.fields[0])
        col[:] = [x - d for x in col]

    def sweep(self, part, t: int) -> None:
        if self.keep is not None:
            cols = tuple(getattr(part, f) for f in self.fields)
            drop_head(cols, bisect_left(cols[0], t - self.keep))


class Buckets:
    """One flat list of records of ``width`` ints, each starting with a time (shift only: the
    part's ``forget`` drops them)."""

    def __init__(self, field: str, width: int):
        self.field, self.width = field, width

    def shift(self, part, d: int) -> None:
        col = getattr(part, self.field)
        col[0::self.width] = [x - d for x in col[0::self.width]]

    def sweep(self, part, t: int) -> None:
        pass


class Stamps:
    """A dict of key -> last time; keys unseen for ``keep`` go."""

    def __init__(self, field: str, keep: int):
        self.field, self.keep = field, keep

    def shift(self, part, d: int) -> None:
        stamps = getattr(part, self.field)
        for k in stamps:
            stamps[k] -= d

    def sweep(self, part, t: int) -> None:
        stamps = getattr(part, self.field)
        for k in [k for k, v in stamps.items() if v < t - self.keep]:
            del stamps[k]


class Moments:
    """A list of optional times, each set back to None once older than ``keep``."""

    def __init__(self, field: str, keep: int):
        self.field, self.keep = field, keep

    def shift(self, part, d: int) -> None:
        setattr(part, self.field, [c - d if c is not None else None
                                   for c in getattr(part, self.field)])

    def sweep(self, part, t: int) -> None:
        setattr(part, self.field, [c if c is not None and c >= t - self.keep else None
                                   for c in getattr(part, self.field)])


class Moment:
    """One optional time, kept as long as the part (shift only)."""

    def __init__(self, field: str):
        self.field = field

    def shift(self, part, d: int) -> None:
        value = getattr(part, self.field)
        if value is not None:
            setattr(part, self.field, value - d)

    def sweep(self, part, t: int) -> None:
        pass


class Nested:
    """A dict of parts with their own ``TIMES`` (shifted with them; the owner's ``forget``
    decides when one goes)."""

    def __init__(self, field: str):
        self.field = field

    def shift(self, part, d: int) -> None:
        for inner in getattr(part, self.field).values():
            shift(inner, d)

    def sweep(self, part, t: int) -> None:
        pass


def shift(part, d: int) -> None:
    """Move every time ``part`` holds back by ``d`` (its state's base moved forward by d)."""
    for times in type(part).TIMES:
        times.shift(part, d)


def sweep(part, t: int, day: int) -> None:
    """Drop what no read at relative time ``t`` (UTC day ``day``) or later can use."""
    for times in type(part).TIMES:
        times.sweep(part, t)
    forget = getattr(part, "forget", None)
    if forget is not None:
        forget(t, day)


# --- the entity state -----------------------------------------------------------------------
class EntityState(Struct, array_like=True, gc=False):
    seq: int = -1  # the last event learnt (see ``seen``)
    base: Optional[int] = None  # absolute ms that the stored times count from
    last: int = 0  # newest time learnt (relative)

    KIND: ClassVar[str]
    READS: ClassVar[dict[str, tuple[Family, ...]]]  # role -> the families a transfer reads
    FORMAT: ClassVar[int] = 1  # the stored layout's version (see the module's docstring)
    MIGRATIONS: ClassVar[dict[int, Callable[[list], list]]] = {}  # n -> format n to n + 1
    _decoders: ClassVar[dict] = {}

    # --- idempotence ------------------------------------------------------------------------
    def seen(self, seq: int) -> bool:
        return seq <= self.seq

    def mark(self, seq: int) -> None:
        if seq > self.seq:
            self.seq = seq

    # --- clock ------------------------------------------------------------------------------
    def clock(self, ts: int) -> int:
        """The relative time of an event being learnt. Once a week of event time it sweeps expired
        data (reads ignore it anyway: this only bounds memory) and moves the base if needed."""
        base = self.base
        if base is None:
            self.base = ts - BASE_LAG
            self.last = BASE_LAG
            return BASE_LAG
        t = ts - base
        if t > self.last:
            if ts // SWEEP_EVERY != (base + self.last) // SWEEP_EVERY:
                self._sweep(t, ts // DAY)
                if t > REBASE_AT:
                    d = t - BASE_LAG
                    self.base += d
                    for part in self._parts():
                        shift(part, d)
                    t -= d
            self.last = t
        return t

    def now(self, ts: int) -> int:
        """The relative time of a read (never changes the state)."""
        return ts - (self.base if self.base is not None else ts - BASE_LAG)

    def expire(self, ts: int) -> None:
        """Drop what is too old to matter at ``ts``, then ``is_empty`` says if the key is dead.
        Free right after ``learn_one`` (the clock sweeps once a week of event time); a real sweep
        when ``ts`` is in a later week than the last event learnt (a quiet key)."""
        if self.base is not None and ts // SWEEP_EVERY != (self.base + self.last) // SWEEP_EVERY:
            self._sweep(ts - self.base, ts // DAY)

    def is_empty(self) -> bool:
        return self._parts() == _blank_parts(type(self))

    def _sweep(self, t: int, day: int) -> None:
        for part in self._parts():
            sweep(part, t, day)

    def _parts(self) -> tuple:
        return astuple(self)[_OWN_FIELDS:]  # one C call: run on every state write

    # --- serialisation ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return _FORMAT_BYTE[self.FORMAT] + _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes):
        if not data:
            raise StateFormatError(f"empty {cls.KIND} state")
        if data[0] >= 0x80:  # no version byte: written before versions, format 1
            version, body = 1, data
        else:
            version, body = data[0], memoryview(data)[1:]
        if version == cls.FORMAT:
            dec = cls._decoders.get(cls)
            if dec is None:
                dec = cls._decoders[cls] = msgspec.msgpack.Decoder(cls)
            return dec.decode(body)
        if not 1 <= version < cls.FORMAT:
            raise StateFormatError(
                f"{cls.KIND} state in format {version}: this worker reads formats 1 to "
                f"{cls.FORMAT} (a newer worker wrote it?); left as it is")
        fields = msgspec.msgpack.decode(body)
        for n in range(version, cls.FORMAT):
            fields = cls.MIGRATIONS[n](fields)
        return msgspec.convert(fields, cls)

    # --- reading ----------------------------------------------------------------------------
    def features_for(self, transfer, role: str) -> dict[str, float]:
        return read_families(self, transfer, self.now(transfer.ts), role)

    @classmethod
    def prefix(cls, role: str) -> str:
        """What this state's feature names start with when read in ``role``."""
        return role

    @classmethod
    def feature_names(cls, role: str) -> tuple[str, ...]:
        return names_of(cls, role)

    # --- per kind ---------------------------------------------------------------------------
    def learn_one(self, event, role: str) -> list:
        raise NotImplementedError


_OWN_FIELDS = len(EntityState.__struct_fields__)  # seq, base, last: the parts come after
_FORMAT_BYTE = [bytes((n,)) for n in range(128)]  # a msgpack positive fixint: the format


@lru_cache(maxsize=None)
def _blank_parts(cls) -> tuple:
    """The parts of a fresh ``cls`` state: what ``is_empty`` compares with."""
    return cls()._parts()
