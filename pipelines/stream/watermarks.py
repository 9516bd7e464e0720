"""Event-time alignment: the entity stage applies events in event-time order (the replay's
order), whatever order the worker happens to read them in.

``SourceClock`` (ingest side) stamps each event with its source's ``order_ts``, a running
maximum of event time, and announces each source's watermark; ``Aligner`` (entity side) holds
each entity-events partition's events, unacknowledged, and releases those at or below the
low watermark, the smallest over all sources, in ``features.routing.order_key`` order.
``register`` wires both into the Faust app.

>>> clock = SourceClock()
>>> clock.stamp(0, 200), clock.stamp(0, 150)  # a late event is ordered where it arrived
(200, 200)
>>> aligner = Aligner(sources=lambda: [0, 1])
>>> aligner.add(0, (100, 2, "t1"), 0, "transfer t1")
>>> aligner.ready(0)  # source 1 has not spoken yet
[]
>>> aligner.watermark(0, {1: 150})
>>> aligner.ready(0)
['transfer t1']

Why: docs/stream.md#watermarks
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import deque
from typing import Callable, Iterable, Optional

import msgspec

from pipelines.contracts.topics import FEATURE_TOPICS
from pipelines.kafka.delivery import Sender
from pipelines.stream.envelopes import source_id

log = logging.getLogger(__name__)
TICK_S = 0.02
RESEND_S = 1.0  # every source's watermark is announced at least this often
WATERMARK_KEY = b"~watermarks"  # an entity-events record that carries watermarks, not an event
STALL_WARN_S = 30.0
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(dict[int, int])


def encode_watermarks(marks: dict[int, int]) -> bytes:
    return _ENCODER.encode(marks)


def decode_watermarks(raw: bytes) -> dict[int, int]:
    return _DECODER.decode(raw)


class SourceClock:
    """The ingest side: each source's ``order_ts``, its last processed offset, and the
    watermarks still to announce."""

    def __init__(self):
        self.order: dict[int, int] = {}  # source -> order_ts (= its watermark)
        self.processed: dict[int, int] = {}  # source -> last offset fully handled
        self.stream_time: Optional[int] = None  # the largest order_ts this worker knows of
        self._stamped: dict[int, int] = {}  # source -> the last order_ts stamped (maybe unsent)
        self._sent: dict[int, int] = {}
        self._last_move = float("-inf")

    def stamp(self, source: int, ts: int) -> int:
        """The ``order_ts`` for an event of ``source`` with event time ``ts``: never below one
        stamped before, even if that event is not ``done`` yet (the ingest stage sends a
        micro-batch's events at its end), nor below the source's watermark."""
        current = max(self._stamped.get(source, ts), self.order.get(source, ts))
        order_ts = ts if ts > current else current
        self._stamped[source] = order_ts
        return order_ts

    def done(self, source: int, offset: int, order_ts: Optional[int] = None) -> None:
        """A record of ``source`` was handled (its routed events sent, or it was dead-lettered)."""
        self.processed[source] = offset
        if order_ts is not None:
            self.order[source] = order_ts
            self.observe(order_ts)

    def observe(self, ts: int) -> None:
        if self.stream_time is None or ts > self.stream_time:
            self.stream_time = ts

    def caught_up(self, source: int, end_offset: int, committed: Optional[int]) -> bool:
        processed = self.processed.get(source)
        position = max(processed + 1 if processed is not None else 0, committed or 0)
        return position >= end_offset

    def advance_idle(self, source: int, stream_time: Optional[int]) -> None:
        """``source`` was caught up with the end offset asked when the stream time was
        ``stream_time``: whatever it receives next is not older."""
        if stream_time is not None and stream_time > self.order.get(source, stream_time - 1):
            self.order[source] = stream_time

    def moved(self) -> dict[int, int]:
        """The watermarks that changed since the last call."""
        out = {s: ts for s, ts in self.order.items() if self._sent.get(s) != ts}
        self._sent.update(out)
        if out:
            self._last_move = time.monotonic()
        return out

    def moved_within(self, seconds: float) -> bool:
        return time.monotonic() - self._last_move < seconds

    def resend(self, sources: Optional[Iterable[int]] = None) -> None:
        """Announce these sources (all when None) again at the next ``moved``: a partition's
        new owner reads it from its committed offset and missed the earlier announcements."""
        if sources is None:
            self._sent.clear()
        else:
            for source in sources:
                self._sent.pop(source, None)


class _Partition:
    """One entity-events partition: a FIFO per source (offset order, which the per-entity
    redelivery marks rely on; ``order_ts`` never decreases within a source) and a heap of the
    FIFOs' heads, ordered as the replay orders events (``features.routing.order_key``)."""
    __slots__ = ("queues", "heads", "marks", "low", "since")

    def __init__(self):
        self.queues: dict[int, deque] = {}
        self.heads: list = []  # (order_ts, rank, event id, source) of each non-empty queue
        self.marks: dict[int, int] = {}
        self.low: Optional[int] = None
        self.since = time.monotonic()  # when ``low`` last moved

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())


class Aligner:
    """The entity-stage side: per entity-events partition, the events waiting for the low
    watermark, and each source's watermark as announced on that partition."""

    def __init__(self, sources: Callable[[], Iterable[int]]):
        self.sources = sources  # the ids of every feature source (all partitions of all topics)
        self.partitions: dict[int, _Partition] = {}
        self.latest: Optional[int] = None  # the largest watermark or event heard: stream time

    def _part(self, partition: int) -> _Partition:
        part = self.partitions.get(partition)
        if part is None:
            part = self.partitions[partition] = _Partition()
        return part

    def watermark(self, partition: int, marks: dict[int, int]) -> None:
        part_marks = self._part(partition).marks
        for source, ts in marks.items():
            if ts > part_marks.get(source, ts - 1):
                part_marks[source] = ts
                if self.latest is None or ts > self.latest:
                    self.latest = ts

    def add(self, partition: int, order: tuple[int, int, str], source: int, item) -> None:
        """``order``: (order_ts, topic rank, event id), the replay's order with order_ts."""
        part = self._part(partition)
        order_ts = order[0]
        if order_ts > part.marks.get(source, order_ts - 1):
            part.marks[source] = order_ts  # an event is its own source's watermark
        if self.latest is None or order_ts > self.latest:
            # ...and the stream time: a restarted worker with no input left to read and no
            # watermark record after its committed offset still knows how far the stream is,
            # so the tick can move its idle sources (their events would wait for ever)
            self.latest = order_ts
        queue = part.queues.get(source)
        if queue is None:
            queue = part.queues[source] = deque()
        if not queue:
            heapq.heappush(part.heads, (*order, source))
        queue.append((order, item))

    def low_watermark(self, partition: int) -> Optional[int]:
        """The smallest watermark over all sources; None while a source has not spoken."""
        marks = self._part(partition).marks
        low = None
        for source in self.sources():
            ts = marks.get(source)
            if ts is None:
                return None
            if low is None or ts < low:
                low = ts
        return low

    def ready(self, partition: int) -> list:
        """The items now safe to apply, in order."""
        part = self._part(partition)
        heads = part.heads
        if not heads:
            return []
        low = self.low_watermark(partition)
        if low != part.low:
            part.low, part.since = low, time.monotonic()
        if low is None:
            return []
        out = []
        queues = part.queues
        while heads and heads[0][0] <= low:
            source = heapq.heappop(heads)[3]
            queue = queues[source]
            out.append(queue.popleft()[1])
            if queue:
                heapq.heappush(heads, (*queue[0][0], source))
        return out

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker no longer owns: their waiting events are the next owner's."""
        for partition in partitions:
            self.partitions.pop(partition, None)

    def stalled(self, now: Optional[float] = None) -> list[tuple[int, int, list[int]]]:
        """(partition, events waiting, silent sources) for partitions stuck for STALL_WARN_S."""
        now = now if now is not None else time.monotonic()
        out = []
        for partition, part in self.partitions.items():
            if part.heads and now - part.since > STALL_WARN_S:
                silent = [s for s in self.sources() if s not in part.marks]
                behind = silent or [s for s in self.sources() if part.marks[s] == part.low]
                out.append((partition, part.waiting(), behind))
                part.since = now  # warn once per period
        return out


# --- the Faust side ----------------------------------------------------------------------------
def partition_count(app, topic: str, reader=None) -> Optional[int]:
    """``topic``'s partition count from a consumer's cluster metadata, the Faust stages' by
    default (Faust's own topic_partitions() only knows it on the group leader); None while
    unknown."""
    try:
        consumer = reader() if reader is not None else app.consumer._thread._ensure_consumer()
        partitions = consumer.partitions_for_topic(topic)
    except Exception:  # not started yet
        return None
    return len(partitions) if partitions else None


def partitions_of(app, topic: str, every_s: float = 1.0) -> Callable[[], int]:
    """``topic``'s partition count, for a sender that picks partitions itself (a Bundler): from
    the cluster's metadata, else the configured one. A count the metadata gave is asked again
    at most every ``every_s`` (a Bundler asks for every event it routes: the lookup cost more
    than the routing)."""
    known = [None, float("-inf")]  # the metadata's count, when it was asked

    def count() -> int:
        now = time.monotonic()
        if known[0] is None or now - known[1] >= every_s:
            known[:] = partition_count(app, topic), now
        return known[0] or app.conf.topic_partitions
    return count


def register(app, entity_topic, inputs) -> tuple[SourceClock, Aligner, Callable[[], int]]:
    """The ingest tick that announces watermarks, and the hook that drops a revoked partition's
    waiting events. ``inputs``: the ingest stage's consumer (``ingest.InputConsumer``), which
    says which sources this worker reads and where they stand. Returns the clock (for the ingest stage), the aligner (entity stage), and
    entity-events' partition count (from the cluster's metadata, else the configured one)."""
    clock = SourceClock()
    known: list[int] = []

    def sources() -> list[int]:
        if not known:  # partition counts come from the metadata, once known
            counts = [partition_count(app, topic, lambda: inputs.consumer)
                      for topic in FEATURE_TOPICS]
            if all(counts):
                known.extend(source_id(topic, p) for topic, n in zip(FEATURE_TOPICS, counts)
                             for p in range(n))
            else:
                return [-1]  # a source that never speaks: wait
        return known

    aligner = Aligner(sources)
    entity_partitions = partitions_of(app, entity_topic.get_topic_name())
    sender = Sender(app, entity_topic.get_topic_name())  # the bundles' producer: order kept
    known_ends: dict[int, int] = {}  # source -> the last end offset the broker gave

    async def tick(resend: bool) -> None:
        owned = {source_id(tp.topic, tp.partition): tp for tp in inputs.assignment()
                 if tp.topic in FEATURE_TOPICS}
        if resend:
            clock.resend(owned)
        # the stream time is taken *before* the end offsets are asked (see the module doc)
        now = max((t for t in (clock.stream_time, aligner.latest) if t is not None), default=None)
        behind = [s for s in owned if now is not None and clock.order.get(s, now - 1) < now]
        committed = inputs.committed
        # A source still short of the end offset last seen is not caught up: only the others
        # cost a request to the broker (none on a backlog, none when nothing moves).
        ask = [s for s in behind
               if clock.caught_up(s, known_ends.get(s, 0), committed.get(owned[s]))]
        if ask:
            ends = await inputs.end_offsets(owned[s] for s in ask)
            for source in ask:
                tp = owned[source]
                end = ends.get(tp)
                if end is not None:
                    known_ends[source] = end
                if end is not None and clock.caught_up(source, end, committed.get(tp)):
                    clock.advance_idle(source, now)
        moved = clock.moved()
        if moved:
            value = encode_watermarks(moved)
            for partition in range(entity_partitions()):
                await sender.send(key=WATERMARK_KEY, value=value, partition=partition)
        for partition, waiting, silent in aligner.stalled():
            log.warning("entity-events[%d]: %d events wait for the watermark of sources %s",
                        partition, waiting, silent[:8])

    @app.task
    async def announce_watermarks():
        # a loop rather than app.timer: a slow tick (the broker busy) is normal, not a warning
        failing, ticks, every = 0, 0, int(RESEND_S / TICK_S)
        while not app.should_stop:
            await asyncio.sleep(TICK_S)
            ticks += 1
            try:
                # the periodic resend is a safety net while the stream moves; an idle stream
                # writes nothing (a rebalance resends everything anyway)
                await tick(resend=ticks % every == 0 and clock.moved_within(RESEND_S))
                failing = 0
            except Exception as exc:  # a rebalance, the consumer not started yet: next tick
                failing += 1
                if failing % int(STALL_WARN_S / TICK_S) == 0:  # but say so if it lasts
                    log.warning("watermark ticks failing for %.0f s: %r", failing * TICK_S, exc)

    @app.on_partitions_assigned.connect
    async def announce_again(app, assigned, **kwargs):
        clock.resend()  # the entity partitions may have new owners: tell them everything

    inputs.on_assigned.append(clock.resend)  # and the sources too (the ingest's own group)

    @app.on_partitions_revoked.connect
    async def drop_revoked(app, revoked, **kwargs):
        aligner.forget(tp.partition for tp in revoked if tp.topic == entity_topic.get_topic_name())

    return clock, aligner, entity_partitions
