"""Producers, consumers and topic creation, all configured from ``pipelines.contracts.settings``.

Nothing here knows whether it talks to the embedded broker or to a production cluster.
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code

from pipelines.contracts import settings as settings_mod
from pipelines.contracts.schemas import encode
from pipelines.contracts.topics import INTERNAL_TOPICS, REPLY_TOPICS, STATE_TOPICS, TOPICS, key_of

log = logging.getLogger(__name__)
# Control streams: one partition, so one worker applies them in one order (rules and lists are
# read-modify-write documents; two workers applying changes side by side could lose one).
SINGLE_PARTITION = {"model-updates", "analyst-actions"}
# Who serves which partition of the payment service: a handful of records, every instance reads all.
SINGLE_PARTITION_STATE = {"payment-owners"}


def topic_partitions(name: str, conf: settings_mod.Settings) -> int:
    return 1 if name in SINGLE_PARTITION | SINGLE_PARTITION_STATE else conf.partitions


def replication_factor() -> int:
    """``VIGIE_REPLICATION_FACTOR`` (1): every topic's, Vigie's and Faust's own alike."""
    return settings_mod.environment().kafka.replication_factor


def topic_config(name: str) -> dict[str, str]:
    """A topic's settings by its class. State (``STATE_TOPICS``): compacted, the last record of
    each key kept for ever (a tombstone removes a key). Control streams: kept for ever (the
    worker rebuilds rules, lists and models from them). Events (every other topic):
    ``VIGIE_RETENTION_HOURS`` (-1: for ever, the demo's; the lake keeps the history). A topic
    whose spec names its own settings (the services' keyed answers) has those."""
    spec = TOPICS.get(name) or REPLY_TOPICS.get(name)
    if spec is not None and spec.config:
        return dict(spec.config)
    if name in STATE_TOPICS:
        # Compacted soon after a segment closes (an hour at most), so that a restore reads
        # about one record a live key; tombstones stay a day for readers that lag.
        return {"cleanup.policy": "compact", "segment.ms": str(3_600_000),
                "min.cleanable.dirty.ratio": "0.1", "delete.retention.ms": str(86_400_000)}
    hours = -1 if name in SINGLE_PARTITION else settings_mod.environment().kafka.retention_hours
    return {"retention.ms": str(hours * 3_600_000 if hours > 0 else -1)}


async def ensure_topics(conf: Optional[settings_mod.Settings] = None,
                        names: Iterable[str] = (*TOPICS, *INTERNAL_TOPICS, *REPLY_TOPICS,
                                                *STATE_TOPICS)) -> None:
    """Create Vigie's topics if they do not exist (idempotent; safe from every process), with
    the replication factor and their class's retention (``topic_config``); an existing topic
    is left as it is. A principal sees only the topics it may use, and may create none: those
    it cannot see are left to the admin, who creates them all (the broker's start,
    ``vigie topics``)."""
    conf = conf or settings_mod.load()
    admin = AIOKafkaAdminClient(**conf.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, topic_partitions(n, conf), replication_factor(),
                            topic_configs=topic_config(n)) for n in names if n not in existing]
        if missing:
            response = await admin.create_topics(missing)
            for topic, code, *reason in response.topic_errors:
                # exists: another process created it first; not authorized: not ours to create
                if code not in (0, TopicAlreadyExistsError.errno,
                                TopicAuthorizationFailedError.errno):
                    raise for_code(code)(f"cannot create topic {topic}: {reason}")
    finally:
        await admin.close()


class Publisher:
    """Publishes events to their topic, keyed by the topic's key field.

    ``acks=all`` with idempotence: a request answered 2xx is durably in the log."""

    def __init__(self, conf: Optional[settings_mod.Settings] = None, **producer_kwargs):
        conf = conf or settings_mod.load()
        kwargs = dict(acks="all", enable_idempotence=True, linger_ms=1)
        kwargs.update(producer_kwargs)
        self.producer = AIOKafkaProducer(**conf.kafka.aiokafka_kwargs(), **kwargs)

    async def start(self) -> "Publisher":
        await self.producer.start()
        return self

    async def stop(self) -> None:
        await self.producer.stop()

    async def publish(self, topic: str, event: msgspec.Struct, wait: bool = True):
        """Send one event; with ``wait`` return only once the broker has it."""
        future = await self.producer.send(topic, encode(event), key=key_of(topic, event))
        return await future if wait else future

    async def publish_raw(self, topic: str, value: bytes, key: Optional[bytes] = None):
        return await self.producer.send_and_wait(topic, value, key=key)


def consumer(*topics: str, group_id: Optional[str] = None,
             conf: Optional[settings_mod.Settings] = None, **kwargs) -> AIOKafkaConsumer:
    """A consumer of Vigie topics (call ``await c.start()``); no group = read without committing."""
    conf = conf or settings_mod.load()
    kwargs.setdefault("auto_offset_reset", "earliest")
    # The payment service writes in transactions (fencing, pipelines/services/payment_owners.py):
    # an aborted one's records are in the log but never happened.
    kwargs.setdefault("isolation_level", "read_committed")
    return AIOKafkaConsumer(*topics, group_id=group_id, **conf.kafka.aiokafka_kwargs(), **kwargs)
