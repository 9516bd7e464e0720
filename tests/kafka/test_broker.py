"""The embedded broker is a real Apache Kafka that keeps its log across restarts."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipelines.kafka.broker import EmbeddedKafka, free_port

pytestmark = pytest.mark.kafka
N = 5_000


async def _produce(bootstrap: str, start: int, n: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    if "durable" not in await admin.list_topics():
        await admin.create_topics([NewTopic("durable", 3, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    for i in range(start, start + n):
        await producer.send("durable", str(i).encode(), key=str(i % 17).encode())
    await producer.flush()
    await producer.stop()


async def _consume_all(bootstrap: str) -> list[int]:
    consumer = AIOKafkaConsumer("durable", bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[int] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch:
                return values
            values += [int(r.value) for records in batch.values() for r in records]
    finally:
        await consumer.stop()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_restarted_broker_keeps_every_event(tmp_path, how):
    port = free_port()
    broker = EmbeddedKafka(port, tmp_path / "broker").start()
    try:
        asyncio.run(_produce(broker.bootstrap, 0, N))
        broker.stop() if how == "stop" else broker.kill()  # kill -9: the page cache survives
        broker = EmbeddedKafka(port, tmp_path / "broker").start()
        asyncio.run(_produce(broker.bootstrap, N, 10))  # and it still takes writes
        assert sorted(asyncio.run(_consume_all(broker.bootstrap))) == list(range(N + 10))
    finally:
        broker.stop()
