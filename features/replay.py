"""The offline path: replay an event log through the very code the stream runs.

    for row in replay(events):
        row.transfer_id, row.ts, row.features  # features: every name of FEATURE_NAMES

Events are applied in ``routing.order_key`` order (event time, then topic, then id); derived
events right after their cause. For each TransferRequested, every entity it touches gives its
part (``features_for``) before the transfer is learnt, as in the stream. States stay in memory,
in a dict keyed by (kind, key); pass ``states`` to keep them.

``workers=N`` shards the entities over N forked processes, the way the stream spreads them over
partitions, and the caller's process merges each transfer's parts: the rows are the same, value
for value (a test checks it). A shard also mirrors the accounts that get a confirming label, so
it derives their NeighbourFlagged events itself, at the same place in the order.
"""
from __future__ import annotations

import gc
import multiprocessing
from typing import Iterable, Iterator, NamedTuple, Optional

from features.graph import CONFIRMING
from features.routing import STATE_CLASSES, order_key, routes
from features.vector import combine, parts_of, transfer_part
from pipelines.contracts.schemas import Label, TransferRequested

CHUNK = 256  # transfers a shard sends at a time


class TransferFeatures(NamedTuple):
    transfer_id: str
    ts: int
    features: dict[str, float]
    transfer: TransferRequested


def shard_of(key: str, shards: int) -> int:
    return int(key[2:10], 16) % shards


def replay(events: Iterable, states: Optional[dict] = None, presorted: bool = False,
           workers: int = 1, pause_gc: bool = True) -> Iterator[TransferFeatures]:
    """``pause_gc``: the states hold no reference cycles, and a full collection walking millions
    of small lists costs ~20 % of the replay, so the collector is off until the replay ends."""
    ordered = events if presorted else sorted(events, key=order_key)
    was_enabled = gc.isenabled()
    if pause_gc:
        gc.disable()
    try:
        if workers <= 1:
            for tr, parts in _apply(ordered, {} if states is None else states):
                parts.append(transfer_part(tr))
                yield TransferFeatures(tr.transfer_id, tr.ts, combine(parts), tr)
        else:
            if states is not None:
                raise ValueError("states live in the shard processes: use workers=1 to keep them")
            yield from _sharded(ordered, workers)
    finally:
        if was_enabled:
            gc.enable()


def _apply(ordered, states: dict, owns=None, mirror=frozenset()):
    """Apply the events to the entities ``owns(key)`` accepts (all when None), and to the mirrored
    accounts; yield (transfer, parts from the owned entities) before each transfer is learnt."""
    classes = STATE_CLASSES

    def state_of(kind: str, key: str):
        st = states.get((kind, key))
        if st is None:
            st = states[(kind, key)] = classes[kind]()
        return st

    seq = max((st.seq for st in states.values()), default=-1)
    for event in ordered:
        todo = None
        while event is not None:
            seq += 1
            if type(event) is TransferRequested:
                yield event, parts_of(event, state_of, owns)
            for kind, key, role in routes(event):
                if owns is not None and not owns(key) and key not in mirror:
                    continue
                st = states.get((kind, key)) or state_of(kind, key)
                if st.seq < seq:  # st.seen / st.mark, inlined: this loop is the replay's hot path
                    derived = st.learn_one(event, role)
                    st.seq = seq
                    if derived:  # applied right after their cause, in order
                        todo = (todo or []) + derived
            event = todo.pop(0) if todo else None


def _sharded(ordered, workers: int) -> Iterator[TransferFeatures]:
    mirror = frozenset(e.account for e in ordered
                       if type(e) is Label and e.is_fraud and e.kind in CONFIRMING)
    ctx = multiprocessing.get_context("fork")  # the children inherit ``ordered``: nothing to pickle
    readers, procs = [], []
    for shard in range(workers):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_shard_main, args=(ordered, shard, workers, mirror, send),
                           daemon=True)
        proc.start()
        send.close()
        procs.append(proc)
        readers.append(_received(receive))
    finished = False
    try:
        for tr in ordered:
            if type(tr) is TransferRequested:
                parts = [transfer_part(tr)]
                for reader in readers:
                    parts += next(reader)
                yield TransferFeatures(tr.transfer_id, tr.ts, combine(parts), tr)
        finished = True
    finally:
        for proc in procs:
            if not finished:  # the caller stopped early: the shard may be blocked sending
                proc.terminate()
            proc.join()


def _shard_main(ordered, shard: int, workers: int, mirror, send) -> None:
    chunk = []
    for _, parts in _apply(ordered, {}, lambda key: shard_of(key, workers) == shard, mirror):
        chunk.append(parts)
        if len(chunk) == CHUNK:
            send.send(chunk)
            chunk = []
    send.send(chunk)
    send.send(None)
    send.close()


def _received(conn):
    while (chunk := conn.recv()) is not None:
        yield from chunk
