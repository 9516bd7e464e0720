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
import os
import time
from typing import Optional

from pipelines.contracts import metrics, schemas
from pipelines.contracts.topics import INPUT_TOPICS, InvalidEvent, decode

log = logging.getLogger(__name__)


def dead_letter(reason: str, topic: str, partition: int, offset: int, raw: bytes | None) -> schemas.DeadLetter:
    raw = raw or b""
    metrics.dead_lettered(reason)
    return schemas.DeadLetter(
        ts=int(time.time() * 1000), reason=reason[:500], topic=topic, partition=partition,
        offset=offset, original_b64=base64.b64encode(raw).decode(), original_size=len(raw),
    )


# A micro-batch: this many records, or what came within the window. Its routed events travel as
# one bundle per entity partition, so a wider window means fewer, fuller records downstream: on a
# backlog, 20 ms takes 326 us of worker CPU an event against 488 us at 2 ms (docs/benchmarks.md),
# for up to 20 ms more latency when traffic is sparse (events wait as long for the watermark
# tick anyway). Faust's take_events fills its buffer one record at a time in the background, so
# in 2 ms only a few records arrive, even on a backlog.
BATCH = 1000
BATCH_WITHIN_S = float(os.environ.get("VIGIE_INGEST_WINDOW_MS") or 20) / 1000

# How far ahead of the worker's clock an input event's times may be. Producers' clocks drift by
# seconds, a badly kept host by minutes: accepted, the event is merely early (or the others
# late, docs/stream.md#clocks). Beyond this, a clock is wrong by more than any host should be,
# or a time is not in ms: such an event would move its source's watermark and the stream time
# ahead of every real event (all later ones then ordered by arrival, not event time) and sweep
# the feature windows of every entity it touches, so it is refused. 0 turns the check off.
MAX_AHEAD_S = float(os.environ.get("VIGIE_MAX_CLOCK_AHEAD_S") or 600)
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


def register(app, handle_valid) -> None:
    """Add the ingest agent to ``app``; ``handle_valid(topic, event, message)`` gets every
    valid event (an async callable: the feature and decision stages),
    ``handle_valid.skipped(message)``, if it exists, every dead-lettered one, and
    ``handle_valid.flush()``, if it exists, is awaited at the end of every micro-batch."""
    skipped = getattr(handle_valid, "skipped", None)
    flush = getattr(handle_valid, "flush", None)
    inputs = app.topic(*INPUT_TOPICS, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic("dead-letters", key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")
    early = Early()

    async def handle(batch) -> bool:
        """Handle a micro-batch; False if the app began stopping first (nothing flushed)."""
        now = int(time.time() * 1000)
        for event in batch:
            if app.should_stop:
                return False
            message = event.message
            try:
                valid = decode(message.topic, event.value)
                reason = ahead_of_clock(valid, now)
            except InvalidEvent as exc:
                valid, reason = None, str(exc)
            if reason is not None:
                letter = dead_letter(reason, message.topic, message.partition,
                                     message.offset, event.value)
                await dead_letters.send(value=schemas.encode(letter))
                log.info("dead-lettered %s[%d]@%d: %s", message.topic, message.partition,
                         message.offset, letter.reason)
                if skipped is not None:
                    skipped(message)  # handled, as far as its source's progress goes
                continue
            early.note(message.topic, valid, now)
            await handle_valid(message.topic, valid, message)
        if flush is not None:
            await flush()
        early.say()
        return True

    @app.agent(inputs, name="ingest")
    async def ingest(stream):
        # take_events acknowledges a batch once this body is done with it, whatever happened
        async for batch in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            try:
                finished = await handle(batch)
            except asyncio.CancelledError:
                keep_unacknowledged(batch)
                raise
            if not finished:
                keep_unacknowledged(batch)


def keep_unacknowledged(batch) -> None:
    """Leave a batch for the next worker. A stopping worker closes its tables before it stops
    its agents: an event handled then reads empty tables (an analyst's rule change refused as
    "no rule named …", dead-lettered). So once the app stops, nothing more is handled, and the
    unfinished batch keeps one more reference per message: take_events' ack then does not mark
    it done, its offsets are not committed, and the next worker reads it again."""
    for event in batch:
        event.message.incref()
