"""What travels on the stream's internal topics (msgpack, compact).

``entity-events``: bundles of validated events routed to entities' states. Each Routed goes to
the partition of its entity key (``partition_for``, Kafka's own partitioner), and the routed
events of a micro-batch bound for one partition travel as one record (a *bundle*).
``transfer-parts``: what one entity says about a transfer (a Part), in the partition of the
transfer's sender; the decide stage joins a transfer's parts and scores it. The parts one
entity-events record produced that are bound for one partition travel as one record too (a
*parts bundle*, ``decode_parts``).

>>> partition_for(b"a_0123", 12), source_id("transfer-requests", 5)
(2, 8197)

Why bundles: docs/stream.md#envelopes
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Union

import msgspec
from aiokafka.partitioner import murmur2
from msgspec import Struct

ENTITY_EVENTS = "entity-events"
TRANSFER_PARTS = "transfer-parts"
DERIVED = "derived"  # the topic name carried by events an entity state produced itself


class Routed(Struct, array_like=True, frozen=True):
    kind: str  # account | device | card | ip
    key: str
    role: str
    topic: str  # the event's topic (its schema), or DERIVED
    event: bytes  # the event as validated (JSON), or a derived event (msgpack)
    source: int  # where it was read: a stable id of (topic, partition)...
    offset: int  # ...and its offset there: the pair makes redelivery detectable
    parts: int = 0  # for a transfer: how many entities report on it
    order_ts: int = 0  # where it goes in event-time order (see pipelines/stream/watermarks.py)
    event_id: str = ""  # the tie-break between equal order_ts, with the topic


class Part(Struct, array_like=True, frozen=True):
    transfer: bytes  # the TransferRequested event (JSON), so any part can open the join
    role: str
    kind: str
    features: dict[str, float]
    parts: int  # how many parts make the whole


class Stored(Struct, array_like=True):
    """An entity's table value: its feature state plus the delivery watermarks.

    ``marks`` maps each source (topic, partition) that fed this entity to the last offset
    applied from it, with the event time it was applied at; redelivered events (offset at or
    below the mark) change nothing. Marks older than a day are dropped: redelivery happens
    within seconds of the original, never days later."""
    state: bytes
    marks: dict[int, tuple[int, int]] = {}
    # Values written before 2026-12-06 carry a third field, the parts the entity sent for its
    # recent transfers (to re-send one a crash lost after the state write): decoding ignores
    # it. A state is now written only once everything its events sent was delivered.


ROUTED_ENCODER = msgspec.msgpack.Encoder()
BUNDLE_DECODER = msgspec.msgpack.Decoder(list[Routed])
BUNDLE_KEY = b"~bundle"  # the record key of a bundle (its partition is given explicitly)
MAX_BUNDLE = 512  # routed events in one record; derived events' offsets count on this bound
# and at most this many bytes: a record must fit the producer's request (1 MiB, aiokafka's
# max_request_size); 512 parts of a transfer are ~1.1 MB
MAX_BUNDLE_BYTES = 512 * 1024
PART_DECODER = msgspec.msgpack.Decoder(Part)
PARTS_DECODER = msgspec.msgpack.Decoder(list[Part])
STORED_DECODER = msgspec.msgpack.Decoder(Stored)


# Source ids are stored in entity states (redelivery marks) and travel in watermarks: pinned
# here, so that adding a topic to pipelines.contracts.topics.TOPICS never renumbers them.
_SOURCE_TOPICS = {"messages": 0, "account-events": 1, "transfer-requests": 2,
                  "assistant-events": 3, "labels": 4, ENTITY_EVENTS: 12}


def source_id(topic: str, partition: int) -> int:
    """A small stable integer for (topic, partition) of a topic that feeds entity states."""
    return _SOURCE_TOPICS[topic] * 4096 + partition


# aiokafka's murmur2 is pure Python (~4.6 µs a 30-byte key here, 0.05 cached) and the same
# entity keys come again and again (an active account, its device): the last 65,536 kept.
@lru_cache(maxsize=1 << 16)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as Java's and aiokafka's) gives
    ``key``: where the entity's state lives."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def encode(obj: Union[Struct, list]) -> bytes:
    """msgpack: an envelope, a stored value, or a bundle (a list of them)."""
    return ROUTED_ENCODER.encode(obj)


def decode_parts(raw: bytes) -> list[Part]:
    """A transfer-parts record: a parts bundle, or a single part (as written before bundles)."""
    try:
        return PARTS_DECODER.decode(raw)
    except msgspec.ValidationError:
        return [PART_DECODER.decode(raw)]


def decode_stored(raw: Optional[bytes]) -> Optional[Stored]:
    return STORED_DECODER.decode(raw) if raw else None
