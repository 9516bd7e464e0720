"""Validation at the door of the stream: every input event is checked against its topic's
schema; a bad one goes to the dead-letter topic with the reason, its source
topic/partition/offset and its original bytes, and the stream keeps going."""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import time

from pipelines.contracts import schemas
from pipelines.contracts.topics import INPUT_TOPICS, InvalidEvent, decode

log = logging.getLogger(__name__)


def dead_letter(reason: str, topic: str, partition: int, offset: int, raw: bytes | None) -> schemas.DeadLetter:
    raw = raw or b""
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

    async def handle(batch) -> bool:
        """Handle a micro-batch; False if the app began stopping first (nothing flushed)."""
        for event in batch:
            if app.should_stop:
                return False
            message = event.message
            try:
                valid = decode(message.topic, event.value)
            except InvalidEvent as exc:
                letter = dead_letter(str(exc), message.topic, message.partition,
                                     message.offset, event.value)
                await dead_letters.send(value=schemas.encode(letter))
                log.info("dead-lettered %s[%d]@%d: %s", message.topic, message.partition,
                         message.offset, letter.reason)
                if skipped is not None:
                    skipped(message)
                continue
            await handle_valid(message.topic, valid, message)
        if flush is not None:
            await flush()
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
