"""The entity stage: every validated event updates the feature state of each entity it touches
(the sender's and recipient's accounts, the device, the card, the IP), in that entity's own
partition; for a transfer, each entity first reports its features (a *part*) to the decide stage.

One table (``entity-states``) holds one value per entity: its whole feature state plus the
delivery marks that make redelivery harmless (see ``envelopes.Stored``). Each table write is a
RocksDB put and a changelog record, once the dominant cost: a partition's changed states are
kept decoded in a write buffer (read through by the stage) and written once per flush interval
(``FLUSH_S``), however many of an entity's events came meanwhile, as one RocksDB batch and a few
produce batches (``tables.PartitionStore``), once Kafka has the parts and derived events their
events sent (``Flushes``); the records whose events they hold are acknowledged only after the
write. Written states stay decoded in a bounded cache (``Recent``): live traffic
touches an entity again within minutes (a conversation, then its transfer), and decoding a state
from RocksDB was the stage's largest cost. Why: docs/stream.md#entity-state-writes
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Awaitable, Callable, Optional

import msgspec

from features.graph import NeighbourFlagged
from features.routing import STATE_CLASSES, TOPIC_ORDER, event_time, new_state, routes
from pipelines.contracts import metrics, settings
from pipelines.contracts.schemas import TransferRequested
from pipelines.contracts.topics import TOPICS, decode
from pipelines.kafka.delivery import Sender
from pipelines.kafka.tables import PartitionStore, raw_table, raw_topic
from pipelines.stream import watermarks
from pipelines.stream.acks import CrashAfterProduce, InOrderAcks, take
from pipelines.stream.envelopes import (BUNDLE_DECODER, BUNDLE_KEY, DERIVED, ENTITY_EVENTS,
                                        MAX_BUNDLE, MAX_BUNDLE_BYTES, TRANSFER_PARTS, Part,
                                        Routed, Stored, decode_stored, encode, partition_for,
                                        source_id)

log = logging.getLogger(__name__)
MARK_TTL_MS = 24 * 3600 * 1000
# How long a partition's changed states wait in the write buffer, and how many may wait, before
# they are written (and the records they came from acknowledged).
FLUSH_S = settings.environment().stream.state_flush_ms / 1000
FLUSH_STATES = 5000
# The entity agent takes the entity-events records fetched, at most this many at once, every
# stage window (``acks.take``)
TAKE_RECORDS = 64
# How many written states a worker keeps decoded (all its partitions together)
RECENT_STATES = settings.environment().stream.state_cache_entities
_DERIVED_DECODER = msgspec.msgpack.Decoder(NeighbourFlagged)
# the replay's tie-break between events of the same millisecond: by topic, then event id
_RANK = {name: TOPIC_ORDER.get(spec.schema, 9) for name, spec in TOPICS.items()}
_RANK[DERIVED] = TOPIC_ORDER[NeighbourFlagged]


def entity_key(kind: str, key: str) -> bytes:
    return f"{kind}:{key}".encode()


def routed_for(event, topic: str, raw: bytes, source: int, offset: int,
               order_ts: int = 0) -> list[tuple[bytes, Routed]]:
    """(entity key, envelope) for every entity ``event`` updates."""
    targets = routes(event)
    parts = len(targets) if type(event) is TransferRequested else 0
    return [(entity_key(kind, key),
             Routed(kind, key, role, topic, raw, source, offset, parts, order_ts, event.id))
            for kind, key, role in targets]


class Bundler:
    """Collects routed events by the entity-events partition of their entity (or parts by the
    transfer-parts partition of their sender), then sends one record per partition (see
    ``envelopes``): the ingest stage flushes once per micro-batch, the entity stage once per
    record it consumed."""

    def __init__(self, topic, partitions: Callable[[], int]):
        self.topic = topic
        self.partitions = partitions  # entity-events' partition count
        self.waiting: dict[int, list[Routed]] = {}

    def add(self, key: bytes, routed: Routed) -> None:
        self.waiting.setdefault(partition_for(key, self.partitions()), []).append(routed)

    async def flush(self) -> None:
        waiting, self.waiting = self.waiting, {}
        for partition, bundle in waiting.items():
            for start in range(0, len(bundle), MAX_BUNDLE):
                await self._send(partition, bundle[start:start + MAX_BUNDLE])

    async def _send(self, partition: int, bundle: list) -> None:
        """One record, or two halves of it while it is over ``MAX_BUNDLE_BYTES``."""
        value = encode(bundle)
        if len(value) > MAX_BUNDLE_BYTES and len(bundle) > 1:
            half = len(bundle) // 2
            await self._send(partition, bundle[:half])
            await self._send(partition, bundle[half:])
            return
        await self.topic.send(key=BUNDLE_KEY, value=value, partition=partition)


class Decoded:
    """The events decoded last, by their bytes (at most ``size``): an input event comes to each
    entity it touches (two accounts for a message, up to five entities for a transfer), mostly
    in the same few records, and decoding one (validation included) was a fifth of applying it
    (py-spy, 2026-12-06). Events are frozen: the entities share the one decoded."""

    def __init__(self, size: int = 4096):
        self.size = size
        self.events: dict[bytes, tuple[str, object]] = {}

    def get(self, topic: str, raw: bytes):
        hit = self.events.get(raw)
        if hit is not None and hit[0] == topic:
            return hit[1]
        event = _DERIVED_DECODER.decode(raw) if topic == DERIVED else decode(topic, raw)
        if len(self.events) >= self.size:
            # all at once: an event's copies come close together, and deleting the oldest one
            # at a time walks a dict's deleted slots (O(size) a miss: 2.7 % of the worker)
            self.events.clear()
        self.events[raw] = (topic, event)
        return event


class Live:
    """An entity's table value while it waits in the write buffer (see ``Stored``), decoded:
    read once, encoded once per write, however many of its events come meanwhile."""
    __slots__ = ("state", "marks", "stored", "size")

    def __init__(self, state, marks: dict, stored: bool, size: int = 0):
        self.state, self.marks = state, marks
        self.stored = stored  # the table holds a value for it (a delete must be written)
        self.size = size  # bytes of the value last written (the cache's measure)

    @classmethod
    def read(cls, kind: str, raw: Optional[bytes]) -> Optional["Live"]:
        stored = decode_stored(raw)
        if stored is None:
            return None
        return cls(STATE_CLASSES[kind].from_bytes(stored.state), stored.marks, True, len(raw))

    def to_bytes(self) -> Optional[bytes]:
        """The table value; None once the state has nothing left (the key is deleted)."""
        if self.state.is_empty():
            return None
        marks = self.marks
        if len(marks) > 4:  # once per write, not per event: a busy account hears many sources
            newest = max(at for _offset, at in marks.values())
            self.marks = marks = {s: m for s, m in marks.items() if newest - m[1] < MARK_TTL_MS}
        return encode(Stored(self.state.to_bytes(), marks))


class Recent:
    """The states this worker wrote last, decoded, least recently written first, at most
    ``size`` of them: each is exactly what its partition's table holds, because only this worker
    writes its partitions and a lost partition is dropped (``forget``). A state taken out
    (``take``) is the write buffer's until it is written and put back."""

    def __init__(self, size: int):
        self.size = size
        self.states: OrderedDict[tuple[int, bytes], Live] = OrderedDict()
        self.stored_bytes = 0  # the states' size as written (in memory: ~15-20x, bench.state_size)

    def take(self, partition: int, key: bytes) -> Optional[Live]:
        live = self.states.pop((partition, key), None)
        if live is not None:
            self.stored_bytes -= live.size
        return live

    def put(self, partition: int, key: bytes, live: Optional[Live]) -> None:
        """``live`` was just written (None: the key was deleted)."""
        self.take(partition, key)
        if live is None or not self.size:
            return
        self.states[(partition, key)] = live
        self.stored_bytes += live.size
        if len(self.states) > self.size:
            self.stored_bytes -= self.states.popitem(last=False)[1].size

    def forget(self, partitions) -> None:
        partitions = set(partitions)
        for entry in [e for e in self.states if e[0] in partitions]:
            self.take(*entry)

    def report(self) -> None:
        """The cache's size, to the metrics (``vigie_state_cache``)."""
        metrics.STATE_CACHE.labels("states").set(len(self.states))
        metrics.STATE_CACHE.labels("stored_bytes").set(self.stored_bytes)


class EntityStage:
    """Applies routed events to entity states. Framework-free apart from the store
    (``tables.PartitionStore`` in the worker, ``tables.MemoryStore`` in tests), so the
    kill/restart tests and the benchmarks exercise the same code the agent runs."""

    def __init__(self, states, send_entity, send_part, recent: int = RECENT_STATES):
        self.states = states  # read(partition, key), async write(partition, changes)
        # the write buffer: partition -> entity key -> its value, decoded
        self.unwritten: dict[int, dict[bytes, Live]] = {}
        self.recent = Recent(recent)  # written states, still decoded
        self.decoded = Decoded()  # the events applied last, decoded
        self.send_entity = send_entity  # async (entity key, Routed) -> None, derived events
        self.send_part = send_part  # async (key, value) -> None, to transfer-parts
        self.watch = None  # async (role, event, account state) -> None, after an account learns

    async def apply(self, routed: Routed, partition: int, position: int) -> None:
        """Apply one routed event read from entity-events ``partition``; ``position`` is its
        place there (record offset * MAX_BUNDLE + index in the bundle), which numbers the
        events it derives."""
        table_key = entity_key(routed.kind, routed.key)
        unwritten = self.unwritten.get(partition)
        if unwritten is None:
            unwritten = self.unwritten[partition] = {}
        live = unwritten.get(table_key) or self.recent.take(partition, table_key)
        if live is None:
            live = Live.read(routed.kind, self.states.read(partition, table_key))
        if live is None:
            live = Live(new_state(routed.kind), {}, False)
        else:
            mark = live.marks.get(routed.source)
            if mark is not None and routed.offset <= mark[0]:
                # redelivered, already applied; what it sent was delivered before its state
                # was written (``Flushes.flush``)
                return
        state = live.state
        event = self.decoded.get(routed.topic, routed.event)
        learn_as = routed.role
        if type(event) is TransferRequested:
            roles = (routed.role,)
            if routed.kind == "account" and event.sender == event.recipient:
                # a self-transfer routes its account twice, as sender and recipient: as in the
                # replay, both parts are read before the state learns it, once, as the sender
                # (the second envelope finds itself applied and sends nothing)
                roles, learn_as = ("sender", "recipient"), "sender"
            for role in roles:
                part = encode(Part(routed.event, role, routed.kind,
                                   state.features_for(event, role), routed.parts))
                await self.send_part(event.sender.encode(), part)
            if routed.role == "sender" and routed.kind == "account":  # once a transfer
                metrics.transfer_reached("entity_applied", event.ts, time.time() * 1000)
        derived = state.learn_one(event, learn_as)
        if self.watch is not None and routed.kind == "account":  # e.g. takeover detection
            await self.watch(learn_as, event, state)
        source = source_id(ENTITY_EVENTS, partition)
        for i, child in enumerate(derived):
            raw = msgspec.msgpack.encode(child)
            for key, envelope in routed_for(child, DERIVED, raw, source, position * 64 + i,
                                            routed.order_ts):
                await self.send_entity(key, envelope)
        now = event_time(event)
        live.marks[routed.source] = (routed.offset, now)  # pruned when written (``to_bytes``)
        state.expire(now)
        unwritten[table_key] = live

    async def write_states(self, partition: Optional[int] = None) -> None:
        """Write the states of ``partition`` (all when None) changed since the last call, one
        write per entity however many of its events were applied: each write is a changelog
        record. Call it before acknowledging what was applied."""
        for part in ([partition] if partition is not None else list(self.unwritten)):
            written = self.unwritten.pop(part, {})
            changes = {}
            for key, live in written.items():
                value = live.to_bytes()
                if value is not None or live.stored:
                    changes[key] = value
                live.stored = value is not None
                live.size = len(value) if value is not None else 0  # out of the cache now
            await self.states.write(part, changes)
            for key, live in written.items():  # now the table holds them
                self.recent.put(part, key, live if live.stored else None)
        self.recent.report()

    def forget(self, partitions) -> None:
        """Partitions this worker lost: their unwritten states are dropped, and the records
        they came from, unacknowledged, are applied again by the next owner."""
        partitions = list(partitions)
        for partition in partitions:
            self.unwritten.pop(partition, None)
        self.recent.forget(partitions)


class Flushes:
    """When each entity-events partition's write buffer is written: every ``FLUSH_S`` or
    ``FLUSH_STATES`` changed states. A write waits until Kafka has acknowledged everything sent
    so far (``delivered``; a record it refused stops the worker first: ``pipelines.kafka.
    delivery``): the parts and derived events of the states it writes. So a state
    that says an event was applied (its mark) is never ahead of what the event sent, and a
    redelivered event can be skipped whole. Only then are the partition's finished records
    acknowledged."""

    def __init__(self, stage: EntityStage, acks: InOrderAcks, bundlers: tuple[Bundler, ...],
                 delivered: Callable[[], Awaitable[None]]):
        self.stage, self.acks, self.bundlers = stage, acks, bundlers  # derived events, parts
        self.delivered = delivered  # e.g. the producer's flush
        self.crash_hook = CrashAfterProduce("entities")  # tests: killed after a state write
        self.lock = asyncio.Lock()
        self.held: dict[int, list] = {}  # partition -> ack handles of records fully applied
        self.since: dict[int, float] = {}  # partition -> when its oldest unwritten change came

    def finished(self, partition: int, handles: list) -> None:
        self.since.setdefault(partition, time.monotonic())
        self.held.setdefault(partition, []).extend(handles)

    def overdue(self) -> list[int]:
        now = time.monotonic()
        return [p for p, since in self.since.items() if now - since >= FLUSH_S]

    async def flush_due(self) -> None:
        """Flush the partitions due, together: one wait for delivery."""
        due = self.overdue()
        due += [p for p in self.since if p not in due and len(
            self.stage.unwritten.get(p, ())) >= FLUSH_STATES]
        if due:
            await self.flush(due)

    async def flush(self, partitions: list[int]) -> None:
        """Write the partitions' buffers once what their events sent is delivered, then
        acknowledge their finished records."""
        partitions = [p for p in partitions if p in self.since]
        if not partitions:
            return
        for bundler in self.bundlers:
            await bundler.flush()
        await self.delivered()
        handles = []
        for partition in partitions:
            handles += self.held.pop(partition, [])
            del self.since[partition]
            await self.stage.write_states(partition)
        if self.crash_hook.armed and handles:
            self.crash_hook.produced_one()
        for handle in handles:
            self.acks.finish(handle)

    def forget(self, partitions) -> None:
        partitions = list(partitions)
        self.stage.forget(partitions)
        for partition in partitions:
            self.held.pop(partition, None)
            self.since.pop(partition, None)


def register(app, inputs, watch=None):
    """The entity agent. Events wait in ``watermarks.Aligner`` until the watermark says every
    earlier event has arrived, then are applied in event-time order; a record is acknowledged
    only once every event of its bundle is applied, so a crash re-reads what was waiting."""
    entity_topic = raw_topic(app, ENTITY_EVENTS)
    table = raw_table(app, "entity-states")
    clock, aligner, partitions = watermarks.register(app, entity_topic, inputs)
    derived = Bundler(Sender(app, ENTITY_EVENTS), partitions)
    # parts leave as bundles too, in their sender's partition (envelopes.decode_parts)
    parts = Bundler(Sender(app, TRANSFER_PARTS), watermarks.partitions_of(app, TRANSFER_PARTS))

    async def send_entity(key, routed):
        derived.add(key, routed)

    async def send_part(key, value):
        parts.add(key, msgspec.Raw(value))

    stage = EntityStage(PartitionStore(table), send_entity, send_part)
    stage.watch = watch

    acks = InOrderAcks()
    acks.register(app, ENTITY_EVENTS)
    flushes = Flushes(stage, acks, (derived, parts), lambda: app.producer.flush())

    @app.on_partitions_revoked.connect
    async def drop_unwritten(app, revoked, **kwargs):
        async with flushes.lock:  # not amid a record's events
            flushes.forget(tp.partition for tp in revoked
                           if tp.topic == entity_topic.get_topic_name())

    @app.agent(entity_topic, name="entities")
    async def entities(stream):
        # the records fetched, several at a time: one pass of the aligner and one send of
        # parts and derived events for them all (fewer, fuller records downstream)
        async for records in take(stream, TAKE_RECORDS):
            async with flushes.lock:  # one flush at a time, never amid a record's events
                await handle(records)

    def arrived(event) -> int:
        """Track a record and hand its events to the aligner; returns its partition."""
        partition = event.message.partition
        handle = acks.track(event)
        if event.key == watermarks.WATERMARK_KEY:
            aligner.watermark(partition, watermarks.decode_watermarks(event.value))
            flushes.finished(partition, [handle])
            return partition
        try:
            bundle = BUNDLE_DECODER.decode(event.value)
        except msgspec.DecodeError:
            log.exception("unreadable entity events at [%d]@%d", partition, event.message.offset)
            bundle = []
        if not bundle:
            flushes.finished(partition, [handle])
        unapplied = [handle, len(bundle)]  # acknowledged when it reaches 0
        base = event.message.offset * MAX_BUNDLE
        now = time.time() * 1000
        for i, routed in enumerate(bundle):
            if routed.parts and routed.role == "sender" and routed.kind == "account":
                read_at(routed, now)  # once a transfer
            order = (routed.order_ts, _RANK.get(routed.topic, 9), routed.event_id)
            aligner.add(partition, order, routed.source, (unapplied, base + i, routed))
        return partition

    def read_at(routed, now: float) -> None:
        """A transfer's ``entity_read`` point, from its event time (decoded now, applied soon:
        the stage keeps it decoded); one that does not decode is the apply's to report."""
        try:
            transfer = stage.decoded.get(routed.topic, routed.event)
        except Exception:
            return
        metrics.transfer_reached("entity_read", transfer.ts, now)

    async def handle(records) -> None:
        for partition in dict.fromkeys([arrived(event) for event in records]):
            finished = []
            for unapplied, position, routed in aligner.ready(partition):
                try:
                    await stage.apply(routed, partition, position)
                except Exception:  # a bug must not stop every entity behind this one
                    log.exception("entity stage failed on %s[%d]@%d", ENTITY_EVENTS, partition,
                                  position // MAX_BUNDLE)
                unapplied[1] -= 1
                if not unapplied[1]:
                    finished.append(unapplied[0])
            flushes.finished(partition, finished)
        for bundler in (derived, parts):  # now: derived events are late already
            await bundler.flush()
        await flushes.flush_due()

    @app.task
    async def flush_idle():
        """A partition whose records stopped coming: its buffer is written all the same (a
        loop, not app.timer: a late wake-up on a busy worker is normal, not a warning)."""
        while not app.should_stop:
            await asyncio.sleep(FLUSH_S)
            async with flushes.lock:
                await flushes.flush(flushes.overdue())

    return entity_topic, clock, partitions
