"""Validation at the door of the stream: every input event is checked against its topic's
schema; a bad one goes to the dead-letter topic with the reason, its source
topic/partition/offset and its original bytes, and the stream keeps going."""
from __future__ import annotations

import base64
import logging
import time

from pipelines import schemas
from pipelines.topics import INPUT_TOPICS, InvalidEvent, decode

log = logging.getLogger(__name__)


def dead_letter(reason: str, topic: str, partition: int, offset: int, raw: bytes | None) -> schemas.DeadLetter:
    raw = raw or b""
    return schemas.DeadLetter(
        ts=int(time.time() * 1000), reason=reason[:500], topic=topic, partition=partition,
        offset=offset, original_b64=base64.b64encode(raw).decode(), original_size=len(raw),
    )


BATCH, BATCH_WITHIN_S = 1000, 0.002  # a micro-batch: this many records, or what came by then


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

    @app.agent(inputs, name="ingest")
    async def ingest(stream):
        # take_events acknowledges a batch once this body is done with it (flushed too)
        async for batch in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            for event in batch:
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
