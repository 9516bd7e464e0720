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


def register(app, handle_valid) -> None:
    """Add the ingest agent to ``app``; ``handle_valid(topic, event, message)`` gets every
    valid event (an async callable: the feature and decision stages), and
    ``handle_valid.skipped(message)``, if it exists, every dead-lettered one."""
    skipped = getattr(handle_valid, "skipped", None)
    inputs = app.topic(*INPUT_TOPICS, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic("dead-letters", key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")

    @app.agent(inputs, name="ingest")
    async def ingest(stream):
        async for event in stream.events():
            message = event.message
            try:
                valid = decode(message.topic, event.value)
            except InvalidEvent as exc:
                letter = dead_letter(str(exc), message.topic, message.partition, message.offset,
                                     event.value)
                await dead_letters.send(value=schemas.encode(letter))
                log.info("dead-lettered %s[%d]@%d: %s", message.topic, message.partition,
                         message.offset, letter.reason)
                if skipped is not None:
                    skipped(message)
                continue
            await handle_valid(message.topic, valid, message)
