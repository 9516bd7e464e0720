"""The offline path: replay an event log through the very code the stream runs.

    for row in replay(events):          # a list of events (sorted here unless presorted)
        row.transfer_id, row.ts, row.features  # features: every name of FEATURE_NAMES
    for row in replay(LakeLog(lake)):   # a lake, streamed in order (pipelines.lake.event_log)

Events are applied in ``routing.order_key`` order (event time, then topic, then id); derived
events right after their cause. For each TransferRequested, every entity it touches gives its
part (``features_for``) before the transfer is learnt, as in the stream. Pass ``states``, a dict
keyed by (kind, key), to keep them as objects; otherwise the states not used for a while are
packed into the bytes the stream stores (``features.packed_states``), ~20 times smaller. A
streamed log is read as the replay goes: memory holds the states (mostly packed) and a few
batches of events, never the whole log.

``workers=N`` shards the entities over N forked processes, the way the stream spreads them over
partitions, and the caller's process merges each transfer's parts: the rows are the same, value
for value (a test checks it). Each shard reads the whole log (a list inherited by the fork, or
its own stream of the lake) and applies the events of the entities it owns; the caller reads
only the transfers, in the same order, to add their own part. A shard also mirrors the accounts
that get a confirming label, so it derives their NeighbourFlagged events itself, at the same
place in the order.
"""
from __future__ import annotations

import gc
import multiprocessing
import signal
import sys
from typing import Iterable, Iterator, NamedTuple, Optional

from features.graph import CONFIRMING
from features.packed_states import PackedStates
from features.routing import STATE_CLASSES, order_key, routes
from features.vector import combine, parts_of, transfer_part
from pipelines.contracts.schemas import TransferRequested
from pipelines.contracts.topics import TOPICS

CHUNK = 256  # transfers a shard sends at a time


class TransferFeatures(NamedTuple):
    transfer_id: str
    ts: int
    features: dict[str, float]
    transfer: TransferRequested


class ListLog:
    """An ordered list of events with the interface of ``pipelines.lake.event_log.LakeLog``:
    ``iter(log)`` for every event, ``log.topic(name)`` for one topic's."""

    def __init__(self, events: list):
        self.events = events

    def __iter__(self):
        return iter(self.events)

    def topic(self, name: str) -> Iterator:
        schema = TOPICS[name].schema
        return (e for e in self.events if type(e) is schema)


def shard_of(key: str, shards: int) -> int:
    return int(key[2:10], 16) % shards


def replay(events: Iterable, states: Optional[dict] = None, presorted: bool = False,
           workers: int = 1, pause_gc: bool = True,
           stats: Optional[dict] = None) -> Iterator[TransferFeatures]:
    """``events``: a list (sorted here unless ``presorted``), or an ordered log with ``topic``
    (``LakeLog``). ``stats``, when given, gets ``events``: how many were applied, once the
    replay has ended. ``pause_gc``: the states hold no reference cycles, and a full collection
    walking millions of small lists costs ~20 % of the replay, so the collector is off until the
    replay ends."""
    if hasattr(events, "topic"):
        log = events
    else:
        log = ListLog(events if presorted else sorted(events, key=order_key))
    stats = {} if stats is None else stats
    was_enabled = gc.isenabled()
    if pause_gc:
        gc.disable()
    try:
        if workers <= 1:
            ordered = _counted(log, stats)
            for tr, parts in _apply(ordered, PackedStates() if states is None else states):
                parts.append(transfer_part(tr))
                yield TransferFeatures(tr.transfer_id, tr.ts, combine(parts), tr)
        else:
            if states is not None:
                raise ValueError("states live in the shard processes: use workers=1 to keep them")
            yield from _sharded(log, workers, stats)
    finally:
        if was_enabled:
            gc.enable()


def _counted(events: Iterable, stats: dict) -> Iterator:
    n = 0
    for n, event in enumerate(events, 1):
        yield event
    stats["events"] = n


def _apply(ordered, states, owns=None, mirror=frozenset()):
    """Apply the events to the entities ``owns(key)`` accepts (all when None), and to the mirrored
    accounts; yield (transfer, parts from the owned entities) before each transfer is learnt.
    ``states``: a dict (the caller's, kept) or a ``PackedStates``, new."""
    classes = STATE_CLASSES

    def state_of(kind: str, key: str):
        st = states.get((kind, key))
        if st is None:
            st = states[(kind, key)] = classes[kind]()
        return st

    seq = max((st.seq for st in states.values()), default=-1) if isinstance(states, dict) else -1
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


def _sharded(log, workers: int, stats: dict) -> Iterator[TransferFeatures]:
    mirror = frozenset(e.account for e in log.topic("labels")
                       if e.is_fraud and e.kind in CONFIRMING)
    # fork: a list log is inherited, nothing to pickle; a lake log opens its readers in the
    # child, after the fork (this process holds no DuckDB connection across it)
    ctx = multiprocessing.get_context("fork")
    readers, procs = [], []
    for shard in range(workers):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_shard_main, args=(log, shard, workers, mirror, send),
                           daemon=True)
        proc.start()
        send.close()
        procs.append(proc)
        readers.append(_received(receive, stats))
    finished = False
    try:
        for tr in log.topic("transfer-requests"):
            parts = [transfer_part(tr)]
            for reader in readers:
                parts += next(reader)
            yield TransferFeatures(tr.transfer_id, tr.ts, combine(parts), tr)
        for reader in readers:  # the shards' last word: how many events they applied
            next(reader, None)
        finished = True
    finally:
        for proc in procs:
            if not finished:  # the caller stopped early: the shard may be blocked sending
                proc.terminate()
            proc.join()


def _shard_main(log, shard: int, workers: int, mirror, send) -> None:
    # terminated (the caller stopped early): unwind, so the log's readers clean up after them
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    counts: dict = {}
    chunk = []
    for _, parts in _apply(_counted(log, counts), PackedStates(),
                           lambda key: shard_of(key, workers) == shard, mirror):
        chunk.append(parts)
        if len(chunk) == CHUNK:
            send.send(chunk)
            chunk = []
    send.send(chunk)
    send.send(counts["events"])
    send.close()


def _received(conn, stats: dict):
    while type(chunk := conn.recv()) is list:
        yield from chunk
    stats["events"] = chunk
