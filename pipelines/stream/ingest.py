"""Validation at the door of the stream: every input event is checked against its topic's
schema, and its times against the worker's clock (``ahead_of_clock``); a bad one goes to the
dead-letter topic with the reason, its source topic/partition/offset and its original bytes, and
the stream keeps going.

Why the clock check: docs/stream.md#clocks
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import time
from typing import Optional

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from pipelines.contracts import metrics, schemas, settings as settings_mod
from pipelines.contracts.topics import INPUT_TOPICS, InvalidEvent, decode
from pipelines.kafka.acls import WORKER_APP
from pipelines.kafka.faust_metrics import LAG_EVERY_S
from pipelines.stream.acks import CrashAfterProduce

log = logging.getLogger(__name__)


def dead_letter(reason: str, topic: str, partition: int, offset: int, raw: bytes | None) -> schemas.DeadLetter:
    raw = raw or b""
    metrics.dead_lettered(reason)
    return schemas.DeadLetter(
        ts=int(time.time() * 1000), reason=reason[:500], topic=topic, partition=partition,
        offset=offset, original_b64=base64.b64encode(raw).decode(), original_size=len(raw),
    )


# A batch: at most this many records per ``getmany``. Its routed events travel as one bundle per
# entity partition, so fuller batches mean fewer, fuller records downstream. On a backlog every
# fetch fills it; when traffic is sparse a batch holds what came within BATCH_WAIT_MS (events wait
# as long for the watermark tick anyway).
BATCH = 2000
BATCH_WAIT_MS = settings_mod.environment().stream.ingest_window_ms
# How much new input a fetch waits for, at most BATCH_WAIT_MS: under load a fetch answered at the
# first new record brings a few records at a time, and each batch costs every stage after it
# (a bundle per entity partition, a Faust record, a produce). The Faust stages' fetches wait as
# long (worker.build_worker_app). docs/stream.md#fetch-wait
FETCH_MIN_BYTES = settings_mod.environment().stream.fetch_min_bytes
RETRY_S = 1.0  # after a batch that failed (produce or commit)

# How far ahead of the worker's clock an input event's times may be. Producers' clocks drift by
# seconds, a badly kept host by minutes: accepted, the event is merely early (or the others
# late, docs/stream.md#clocks). Beyond this, a clock is wrong by more than any host should be,
# or a time is not in ms: such an event would move its source's watermark and the stream time
# ahead of every real event (all later ones then ordered by arrival, not event time) and sweep
# the feature windows of every entity it touches, so it is refused. 0 turns the check off.
MAX_AHEAD_S = settings_mod.environment().stream.max_clock_ahead_s
# The instants an event says something happened or became known. Not payout_due_ts: a deadline,
# in the future by design (the payment service reads it against its own clock).
STAMPS = ("ts", "known_at", "compromise_from_ts", "compromise_to_ts")


def ahead_of_clock(event, now_ms: int, max_ahead_s: float = MAX_AHEAD_S) -> Optional[str]:
    """Why ``event`` is refused for a time too far ahead of ``now_ms``, or None.

    >>> update = schemas.ModelUpdate(id="u1", ts=1_800_000_900_000, action="shadow",
    ...                              version="m1", actor="ops")
    >>> reason = ahead_of_clock(update, now_ms=1_800_000_000_000, max_ahead_s=600)
    >>> reason[:reason.index(" (")]
    "clock skew: ts 2027-01-15T08:15:00+00:00 is 900 s ahead of the worker's clock"
    >>> ahead_of_clock(update, now_ms=1_800_000_300_000, max_ahead_s=600) is None  # 10 min ahead
    True
    """
    name, ahead = furthest_ahead(event, now_ms)
    if max_ahead_s <= 0 or ahead <= max_ahead_s * 1000:
        return None
    when = dt.datetime.fromtimestamp((now_ms + ahead) / 1000, dt.timezone.utc)
    return (f"clock skew: {name} {when.isoformat(timespec='seconds')} is {ahead / 1000:.0f} s "
            f"ahead of the worker's clock (at most {max_ahead_s:.0f} s, VIGIE_MAX_CLOCK_AHEAD_S): "
            f"the producer's clock is wrong or the time is not in ms; never applied")


def furthest_ahead(event, now_ms: int) -> tuple[Optional[str], int]:
    """The event's instant furthest ahead of ``now_ms``: (its field, ms ahead); (None, 0) when
    none is ahead."""
    name, ahead = None, 0
    for field in STAMPS:
        value = getattr(event, field, None)
        if value is not None and value - now_ms > ahead:
            name, ahead = field, value - now_ms
    return name, ahead


# An accepted event this far ahead is said in the worker's log (at most once a minute): a
# producer minutes ahead makes every other producer's events late and shifts the windows that
# combine them (docs/stream.md#clocks), which nothing else would show.
WARN_AHEAD_S = 30.0
WARN_EVERY_S = 60.0


class Early:
    """The furthest ahead of the worker's clock each input topic's accepted events were since
    it was last said."""

    def __init__(self):
        self.most: dict[str, int] = {}  # topic -> ms ahead
        self.said = float("-inf")

    def note(self, topic: str, event, now_ms: int) -> None:
        ahead = furthest_ahead(event, now_ms)[1]
        if ahead > WARN_AHEAD_S * 1000 and ahead > self.most.get(topic, 0):
            self.most[topic] = ahead

    def say(self) -> None:
        if self.most and time.monotonic() - self.said >= WARN_EVERY_S:
            log.warning("events ahead of this worker's clock (a producer's clock, or this "
                        "one's, is off): %s", ", ".join(f"{topic} up to {ms / 1000:.0f} s"
                                                        for topic, ms in sorted(self.most.items())))
            self.most.clear()
            self.said = time.monotonic()


class InputConsumer:
    """The ingest stage's own Kafka consumer of the input topics, in the worker's group
    (``acls.WORKER_APP``; the Faust stages have their own, ``acls.STAGES_GROUP``), so added
    workers share the input partitions. The watermark tick asks it what this worker owns
    (``assignment``), what the group committed (``committed``) and where the logs end."""

    def __init__(self, app):
        self.app = app
        self.consumer: Optional[AIOKafkaConsumer] = None
        self.committed: dict[TopicPartition, Optional[int]] = {}
        self.on_assigned: list = []  # callables, after each assignment (e.g. resend watermarks)

    def assignment(self) -> set:
        return self.consumer.assignment() if self.consumer is not None else set()

    async def end_offsets(self, tps) -> dict:
        return await self.consumer.end_offsets(list(tps))

    async def start(self) -> AIOKafkaConsumer:
        conf = self.app.conf
        self.consumer = AIOKafkaConsumer(
            **settings_mod.load().kafka.aiokafka_kwargs(), group_id=WORKER_APP,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=BATCH,
            fetch_max_wait_ms=BATCH_WAIT_MS, fetch_min_bytes=FETCH_MIN_BYTES,
            client_id=f"{conf.broker_client_id}-ingest",
            # the same failover as the Faust stages (pipelines/stream/app.py)
            session_timeout_ms=int(conf.broker_session_timeout * 1000),
            heartbeat_interval_ms=int(conf.broker_heartbeat_interval * 1000),
            rebalance_timeout_ms=int(conf.broker_rebalance_timeout * 1000),
            request_timeout_ms=int(conf.broker_request_timeout * 1000))
        self.consumer.subscribe(INPUT_TOPICS, listener=_Rebalance(self))
        await self.consumer.start()
        return self.consumer

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit what this worker still owns; a partition it lost since is re-read by its new
        owner (the stages are idempotent under redelivery)."""
        owned = self.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:  # a rebalance came between
            log.info("input offsets not committed (%r): their records are read again", exc)
            return
        self.committed.update(offsets)

    def report_lag(self) -> None:
        """The input partitions' lag for the metrics (the Faust stages' is faust_metrics'):
        the end offset last fetched minus the offset last committed."""
        for tp, offset in list(self.committed.items()):
            end = self.consumer.highwater(tp) if self.consumer is not None else None
            if end is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                    max(0, end - (offset or 0)))


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, inputs: InputConsumer):
        self.inputs = inputs

    async def on_partitions_revoked(self, revoked) -> None:
        for tp in revoked:
            if self.inputs.committed.pop(tp, None) is not None:
                try:  # no longer this process's lag
                    metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
                except KeyError:
                    pass

    async def on_partitions_assigned(self, assigned) -> None:
        consumer = self.inputs.consumer
        for tp in assigned:
            self.inputs.committed[tp] = await consumer.committed(tp)
        for callback in self.inputs.on_assigned:
            callback()


class Batches:
    """The ingest's loop over its input batches: fetch, handle (the records sent), then, once
    every ``every_s``, deliver and commit what was handled since the last time. A delivery and
    commit run while the next batches are fetched and handled, one at a time and in order: the
    loop never waits for the broker's round trips (a flush, a commit) before its next fetch
    (docs/stream.md#ingest). Whatever fails, a batch or a delivery or a commit, is read again
    from the first offset not known to be committed, after RETRY_S."""

    def __init__(self, consumer, handle, settle, every_s: float = 0.0):
        self.consumer = consumer
        self.handle = handle  # async (batch) -> False when the app began stopping
        self.settle = settle  # async (offsets to commit) -> None: deliver, then commit
        self.every_s = every_s  # 0: each batch is settled on its own
        self.settling: Optional[asyncio.Task] = None  # the last delivery and commit
        self.settled_at = float("-inf")  # when the last one began
        self.unsettled: dict = {}  # partition -> the first offset not known to be committed
        self.handled: dict = {}  # partition -> the offset after the last record handled
        self.first: dict = {}  # partition -> the first offset handled since the last settle

    async def step(self) -> bool:
        """One fetch and its batch; False once the app began stopping."""
        try:
            batch = await self.consumer.getmany(timeout_ms=BATCH_WAIT_MS, max_records=BATCH)
            for tp, records in batch.items():
                self.unsettled.setdefault(tp, records[0].offset)
            if self.settling is not None and self.settling.done():
                self.settling.result()  # raises what it raised, traffic or not
            if batch and not await self.handle(batch):
                return False
            for tp, records in batch.items():
                self.first.setdefault(tp, records[0].offset)
                self.handled[tp] = records[-1].offset + 1
            if self.handled and time.monotonic() - self.settled_at >= self.every_s:
                await self._settle_handled()
        except Exception:  # the broker gone, say: read the batches again, later
            log.exception("ingest batch failed: read again in %.0f s", RETRY_S)
            self._cancel()
            for tp, offset in self.unsettled.items():
                if tp in self.consumer.assignment():
                    self.consumer.seek(tp, offset)
            self.unsettled, self.handled, self.first = {}, {}, {}
            await asyncio.sleep(RETRY_S)
        return True

    async def _settle_handled(self) -> None:
        """Deliver and commit what was handled, once the settle before it is done."""
        if self.settling is not None:
            await self.settling  # raises what it raised
        self.settling = asyncio.create_task(self.settle(self.handled))
        self.settled_at = time.monotonic()
        # committed now: all before the range in flight; not yet: the range, and what comes
        self.unsettled, self.handled, self.first = self.first, {}, {}

    def _cancel(self) -> None:
        if self.settling is not None:
            self.settling.cancel()
            self.settling = None

    async def stop(self) -> None:
        self._cancel()
        await self.consumer.stop()


def register(app, inputs: InputConsumer, handle_valid) -> None:
    """Add the ingest stage to ``app``: a task of the worker that reads ``inputs`` in batches
    (outside Faust's per-record path: docs/stream.md#ingest). ``handle_valid(topic, event,
    record)`` gets every valid event (an async callable: the feature and decision stages),
    ``handle_valid.skipped(record)``, if it exists, every dead-lettered one, and
    ``handle_valid.flush()``, if it exists, is awaited at the end of every batch. A batch's
    input offsets are committed only once Kafka has acknowledged everything it produced."""
    skipped = getattr(handle_valid, "skipped", None)
    flush = getattr(handle_valid, "flush", None)
    dead_letters = app.topic("dead-letters", key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")
    early = Early()

    async def handle(records) -> bool:
        """Handle a batch; False if the app began stopping first (nothing flushed)."""
        now = int(time.time() * 1000)
        for record in records:
            if app.should_stop:
                return False
            try:
                valid = decode(record.topic, record.value)
                reason = ahead_of_clock(valid, now)
            except InvalidEvent as exc:
                valid, reason = None, str(exc)
            if reason is not None:
                letter = dead_letter(reason, record.topic, record.partition, record.offset,
                                     record.value)
                await dead_letters.send(value=schemas.encode(letter))
                log.info("dead-lettered %s[%d]@%d: %s", record.topic, record.partition,
                         record.offset, letter.reason)
                if skipped is not None:
                    skipped(record)  # handled, as far as its source's progress goes
                continue
            early.note(record.topic, valid, now)
            await handle_valid(record.topic, valid, record)
        if flush is not None:
            await flush()
        early.say()
        return True

    async def handle_batch(batch: dict) -> bool:
        """Handle one ``getmany`` batch (its records sent, not yet delivered); False if the app
        began stopping first."""
        if not app.flow_control.is_active():
            # Faust's stages are rebalancing or recovering their tables (the control table the
            # router reads among them): wait, as Faust's own agents do
            await app.flow_control.acquire()
        for tp, records in batch.items():  # what Faust's sensor counts for its own topics
            metrics.EVENTS_IN.labels(tp.topic).inc(len(records))
        return await handle([r for records in batch.values() for r in records])

    async def deliver_and_commit(offsets: dict) -> None:
        # every bundle, dead letter, decision, control change (one refused: the worker stops
        # before this returns, pipelines/kafka/delivery.py)
        await app.producer.flush()
        crash_hook.produced_one()
        await inputs.commit(offsets)

    crash_hook = CrashAfterProduce("ingest")

    @app.timer(LAG_EVERY_S, name="vigie.ingest-lag")
    async def input_lag():
        inputs.report_lag()

    @app.task
    async def ingest():
        # A stopping worker closes its tables before its tasks stop, so once the app stops
        # nothing more is handled; the batches not committed are read again by the next owner
        # of their partitions.
        # input offsets committed as often as the Faust stages' (broker_commit_interval), not
        # once a batch: each commit is a write to the broker's offsets log (docs/stream.md#ingest)
        loop = Batches(await inputs.start(), handle_batch, deliver_and_commit,
                       every_s=app.conf.broker_commit_interval)
        try:
            while not app.should_stop:
                if not await loop.step():
                    break
        finally:
            await loop.stop()
