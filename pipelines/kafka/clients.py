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
from pipelines.contracts.topics import INTERNAL_TOPICS, REPLY_TOPICS, TOPICS, key_of

log = logging.getLogger(__name__)
# Control streams: one partition, so one worker applies them in one order (rules and lists are
# read-modify-write documents; two workers applying changes side by side could lose one).
SINGLE_PARTITION = {"model-updates", "analyst-actions"}


def topic_partitions(name: str, conf: settings_mod.Settings) -> int:
    return 1 if name in SINGLE_PARTITION else conf.partitions


async def ensure_topics(conf: Optional[settings_mod.Settings] = None,
                        names: Iterable[str] = (*TOPICS, *INTERNAL_TOPICS, *REPLY_TOPICS)) -> None:
    """Create Vigie's topics if they do not exist (idempotent; safe from every process). A
    principal sees only the topics it may use, and may create none: those it cannot see are
    left to the admin, who creates them all (the broker's start, ``vigie topics``)."""
    conf = conf or settings_mod.load()
    admin = AIOKafkaAdminClient(**conf.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, topic_partitions(n, conf), 1, topic_configs=_config(n))
                   for n in names if n not in existing]
        if missing:
            response = await admin.create_topics(missing)
            for topic, code, *reason in response.topic_errors:
                # exists: another process created it first; not authorized: not ours to create
                if code not in (0, TopicAlreadyExistsError.errno,
                                TopicAuthorizationFailedError.errno):
                    raise for_code(code)(f"cannot create topic {topic}: {reason}")
    finally:
        await admin.close()


def _config(name: str) -> dict[str, str]:
    spec = TOPICS.get(name) or REPLY_TOPICS.get(name)
    return spec.config if spec else {}


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
    return AIOKafkaConsumer(*topics, group_id=group_id, **conf.kafka.aiokafka_kwargs(), **kwargs)
