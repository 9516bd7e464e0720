"""The replay's entity states in bounded memory: the recently used ones as objects, the rest packed
as the bytes the stream's table stores (``to_bytes``: a few hundred bytes, ~20 times smaller than
the objects).

The stream itself keeps every state as those bytes and decodes one per event (its entity stage);
``from_bytes(to_bytes(state))`` gives the same state back, ``seq`` included, so a replay whose
states go through the bytes computes the same features as one that keeps them all as objects (a
test checks it, value for value). A state is packed only when it has not been used for a while:
two generations of live objects (``young``, then ``old``), each at most ``generation`` states;
when ``young`` is full, ``old`` is packed and ``young`` becomes ``old``. A state read from
``old`` or unpacked goes back to ``young``: the active entities stay objects, and the memory
held as objects is at most ``2 * generation`` states, whatever the lake.

A state is packed only at a ``get``/``add``, never while the replay holds it: the replay uses a
state right after getting it, before the next ``get``.

>>> from features.routing import new_state
>>> states = PackedStates(generation=1)
>>> for key in ("c_01", "c_02", "c_03", "c_04"):  # c_01, c_02 are old when c_04 fills young
...     states.add(("card", key), new_state("card"))
>>> len(states), states.packed_count()
(4, 2)
>>> type(states.get(("card", "c_01"))).__name__, states.packed_count()
('CardState', 1)
"""
from __future__ import annotations

from typing import Optional

from features.routing import STATE_CLASSES

GENERATION = 20_000  # live states per generation (see the module's docstring)


class PackedStates:
    """(kind, key) -> entity state, ``get`` and ``add`` only (see the module's docstring)."""

    def __init__(self, generation: Optional[int] = None):
        self.generation = GENERATION if generation is None else generation
        self.young: dict = {}
        self.old: dict = {}
        self.packed: dict = {}  # (kind, key) -> to_bytes()

    def get(self, key) -> Optional[object]:
        st = self.young.get(key)
        if st is not None:
            return st
        st = self.old.pop(key, None)
        if st is None:
            data = self.packed.pop(key, None)
            if data is None:
                return None
            st = STATE_CLASSES[key[0]].from_bytes(data)
        self.add(key, st)
        return st

    def add(self, key, st) -> None:
        """A state not held yet (a new entity), or just taken out of ``old`` or ``packed``."""
        young = self.young
        young[key] = st
        if len(young) > self.generation:
            packed = self.packed
            for k, old_st in self.old.items():
                packed[k] = old_st.to_bytes()
            self.old, self.young = young, {}

    __setitem__ = add  # so the replay adds to a dict or to these alike

    def __len__(self) -> int:
        return len(self.young) + len(self.old) + len(self.packed)

    def packed_count(self) -> int:
        return len(self.packed)
