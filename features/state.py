"""What every entity state shares: the contract, the clock, idempotence and serialisation.

Contract (the stream and the replay call only these):
- ``learn_one(event, role) -> list[derived events]`` updates the state in event time;
- ``features_for(transfer, role) -> dict[str, float]`` reads the features this entity gives a
  transfer, *before* the transfer itself is learnt (call features_for, then learn_one);
- ``seen(seq)`` / ``mark(seq)``: ``seq`` increases along every event an entity receives (the
  stream: the offset in the one partition that carries all of this entity's events; the
  replay: the event's rank). ``if not st.seen(seq): st.learn_one(ev, role); st.mark(seq)``;
- ``to_bytes()`` / ``cls.from_bytes(b)``: msgpack, a few hundred bytes;
- ``expire(ts)`` then ``is_empty()``: lets the stream delete dead keys.

Times inside a state are milliseconds relative to ``base``, an absolute time at most ~45 days in
the past, so each fits in 5 msgpack bytes instead of 9. ``base`` moves forward (every ~2 weeks of
activity) and every stored time shifts with it; nothing a feature reads depends on when that
happens, nor on when expired data is swept: reads filter by time themselves.
"""
from __future__ import annotations

from typing import ClassVar, Optional

import msgspec
from msgspec import Struct

from features.windows import DAY, MONTH, WEEK

BASE_LAG = MONTH + DAY  # a new base sits this far behind the event that sets it...
REBASE_AT = 40 * DAY  # ...and moves once the newest time is this far from it (< 2^32 ms)
SWEEP_EVERY = WEEK

_ENCODER = msgspec.msgpack.Encoder()


class EntityState(Struct, array_like=True, gc=False):
    seq: int = -1  # the last event learnt (see ``seen``)
    base: Optional[int] = None  # absolute ms that the stored times count from
    last: int = 0  # newest time learnt (relative)

    KIND: ClassVar[str]
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
                    self._shift(d)
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
        return self._empty()

    # --- serialisation ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes):
        dec = cls._decoders.get(cls)
        if dec is None:
            dec = cls._decoders[cls] = msgspec.msgpack.Decoder(cls)
        return dec.decode(data)

    # --- per kind ---------------------------------------------------------------------------
    def learn_one(self, event, role: str) -> list:
        raise NotImplementedError

    def features_for(self, transfer, role: str) -> dict[str, float]:
        raise NotImplementedError

    @classmethod
    def feature_names(cls, role: str) -> tuple[str, ...]:
        raise NotImplementedError

    def _sweep(self, t: int, day: int) -> None:
        raise NotImplementedError

    def _shift(self, d: int) -> None:
        raise NotImplementedError

    def _empty(self) -> bool:
        raise NotImplementedError
