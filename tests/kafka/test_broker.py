"""The embedded broker is a real Apache Kafka that keeps its log across restarts, including a
log directory formatted before it authenticated its clients."""
from __future__ import annotations

import asyncio
import subprocess
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from pipelines.kafka import acls
from pipelines.kafka.broker import EmbeddedKafka, _java, fetch_jars, free_port

pytestmark = pytest.mark.kafka
N = 5_000


async def _produce(kwargs: dict, start: int, n: int) -> None:
    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    if "durable" not in await admin.list_topics():
        await admin.create_topics([NewTopic("durable", 3, 1)])
    await admin.close()
    producer = AIOKafkaProducer(**kwargs, acks="all", enable_idempotence=True)
    await producer.start()
    for i in range(start, start + n):
        await producer.send("durable", str(i).encode(), key=str(i % 17).encode())
    await producer.flush()
    await producer.stop()


async def _consume_all(kwargs: dict) -> list[int]:
    consumer = AIOKafkaConsumer("durable", **kwargs, auto_offset_reset="earliest")
    values: list[int] = []
    try:
        await consumer.start()
        while True:
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch:
                return values
            values += [int(r.value) for records in batch.values() for r in records]
    finally:
        await consumer.stop()


def _admin(broker: EmbeddedKafka) -> dict:
    return broker.login(acls.ADMIN).aiokafka_kwargs()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_restarted_broker_keeps_every_event(tmp_path, how):
    port = free_port()
    broker = EmbeddedKafka(port, tmp_path / "broker", tmp_path / "secrets").start()
    try:
        asyncio.run(_produce(_admin(broker), 0, N))
        broker.stop() if how == "stop" else broker.kill()  # kill -9: the page cache survives
        broker = EmbeddedKafka(port, tmp_path / "broker", tmp_path / "secrets").start()
        asyncio.run(_produce(_admin(broker), N, 10))  # and it still takes writes
        assert sorted(asyncio.run(_consume_all(_admin(broker)))) == list(range(N + 10))
    finally:
        broker.stop()


# The configuration the embedded broker had before it authenticated anyone (plaintext, no ACLs).
OLD_CONFIG = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={log}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
auto.create.topics.enable=false
"""


def test_a_log_formatted_before_authentication_starts_secured_and_keeps_its_events(tmp_path):
    port, log_dir = free_port(), tmp_path / "broker"
    log_dir.mkdir()
    config = log_dir / "old.properties"
    config.write_text(OLD_CONFIG.format(port=port, controller=free_port(), log=log_dir / "log"))
    classpath = f"{fetch_jars()}/*"
    subprocess.run([_java(), "-cp", classpath, "kafka.tools.StorageTool", "format",
                    "-t", uuid.uuid4().hex[:22], "-c", str(config)], check=True,
                   stdout=subprocess.DEVNULL)
    old = subprocess.Popen([_java(), "-Xmx256m", "-cp", classpath, "kafka.Kafka", str(config)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        plaintext = {"bootstrap_servers": f"127.0.0.1:{port}"}
        for _ in range(100):  # until the old broker answers
            try:
                asyncio.run(_produce(plaintext, 0, 100))
                break
            except KafkaConnectionError:
                time.sleep(0.3)
        else:
            pytest.fail("the plaintext broker never answered")
    finally:
        old.terminate()
        old.wait(30)

    broker = EmbeddedKafka(port, log_dir, tmp_path / "secrets").start()
    try:
        assert sorted(asyncio.run(_consume_all(_admin(broker)))) == list(range(100))
        # the old door is shut: a client without credentials gets nothing
        with pytest.raises(KafkaConnectionError):
            asyncio.run(_consume_all(plaintext))
    finally:
        broker.stop()


def test_the_broker_listens_on_three_different_ports(monkeypatch, tmp_path):
    # the OS may hand out a port again once its probe closed: the broker once got the same port
    # for its client and controller listeners and refused to start
    from pipelines.kafka import broker

    given = iter([40001, 40001, 40001, 40002, 40001, 40002, 40003])

    class Probe:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            self.port = next(given)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(broker.socket, "socket", Probe)
    kafka = EmbeddedKafka(40001, tmp_path / "broker", tmp_path / "secrets")
    assert (kafka.port, kafka.internal_port, kafka.controller_port) == (40001, 40002, 40003)
