"""Every Kafka client authenticates and may write only its own topics (issue 11, item 2): on an
embedded broker, as an attacker on the same host would try it."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError,
                             KafkaConnectionError, TopicAuthorizationFailedError)
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                   ResourceType)
from process_support import wait_for

from pipelines.contracts import settings
from pipelines.contracts.settings import KafkaSettings
from pipelines.contracts.topics import INTERNAL_TOPICS, TOPICS
from pipelines.kafka import acls
from pipelines.kafka.broker import EmbeddedKafka, free_port
from pipelines.kafka.clients import ensure_topics
from pipelines.kafka.lag import group_lag_sync

pytestmark = pytest.mark.kafka


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def as_principal(broker: EmbeddedKafka, principal: str) -> settings.Settings:
    return dataclasses.replace(settings.load(), kafka=broker.login(principal))


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of this module's own, Vigie's topics created by the admin: its probes write
    records no stage could read, and one test changes its ACLs."""
    own = EmbeddedKafka(free_port(), tmp_path_factory.mktemp("acl-broker"),
                        settings.secrets_dir()).start()
    run(ensure_topics(as_principal(own, acls.ADMIN)))
    yield own
    own.stop()


async def produce(login: KafkaSettings, topic: str, value: bytes = b"probe"):
    """Write one record as ``login``; its metadata (partition, offset)."""
    producer = AIOKafkaProducer(**login.aiokafka_kwargs(), acks="all", enable_idempotence=True,
                                request_timeout_ms=10_000)
    try:
        await producer.start()
        return await producer.send_and_wait(topic, value, key=b"probe")  # compacted: keyed
    finally:
        await producer.stop()


async def read(login: KafkaSettings, topic: str, group: str | None = None) -> list:
    """Read ``topic`` from the beginning as ``login`` (in ``group`` if given) for a moment."""
    consumer = AIOKafkaConsumer(topic, **login.aiokafka_kwargs(), group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        await consumer.start()
        batches = await consumer.getmany(timeout_ms=3_000)
        return [r for records in batches.values() for r in records]
    finally:
        await consumer.stop()


def test_a_client_without_credentials_is_refused(broker):
    anonymous = KafkaSettings(broker.bootstrap)  # PLAINTEXT: what worked before issue 11
    with pytest.raises(KafkaConnectionError):
        run(produce(anonymous, "decisions"))


def test_a_wrong_password_is_refused_as_such(broker, caplog):
    forged = dataclasses.replace(broker.login("worker"), sasl_password="guessed",
                                 sasl_password_file=None)
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        run(produce(forged, "decisions"))
    assert "Authentication failed during authentication due to invalid credentials" in caplog.text


def test_an_unknown_user_is_refused(broker, caplog):
    stranger = dataclasses.replace(broker.login("worker"), sasl_username="nobody",
                                   sasl_password="anything", sasl_password_file=None)
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        run(produce(stranger, "analyst-actions"))
    assert "Authentication failed" in caplog.text


@pytest.mark.parametrize("principal, topic", [
    ("payment", "decisions"),  # a forged decision would pay out a held transfer
    ("messaging", "analyst-actions"),  # a forged release by "nobody, admin"
    ("messaging", "decisions"),
    ("assistant", "model-updates"),
    ("payment", "analyst-actions"),
    ("sink", "decisions"),  # the sink reads everything, writes only its quality reports
    ("worker", "analyst-actions"),  # only the console acts as an analyst
    ("worker", "transfer-requests"),  # only the payment service creates transfers
    ("console", "decisions"),  # an analyst's release goes through the worker, signed
    ("messaging", "transfer-status"),
    ("messaging", "recovery"),  # "verified": the stream's word only, never the service's
    ("messaging", "idempotency-payment"),  # a forged answer to another service's retries
    ("assistant", "idempotency-messaging"),
    ("worker", "idempotency-assistant"),
])
def test_a_component_cannot_write_another_ones_topic(broker, principal, topic):
    with pytest.raises(TopicAuthorizationFailedError):
        run(produce(broker.login(principal), topic))


@pytest.mark.parametrize("principal, topic", [
    ("worker", "decisions"), ("worker", "entity-events"), ("worker", "dead-letters"),
    ("payment", "transfer-requests"), ("payment", "transfer-status"),
    ("messaging", "messages"), ("messaging", "owner-verification"),
    ("assistant", "assistant-events"), ("worker", "recovery"),
    ("console", "analyst-actions"), ("console", "model-updates"), ("sink", "data-quality"),
    ("messaging", "idempotency-messaging"), ("assistant", "idempotency-assistant"),
    ("payment", "idempotency-payment"),
])
def test_each_component_writes_its_own_topics(broker, principal, topic):
    assert run(produce(broker.login(principal), topic)).offset >= 0


@pytest.mark.parametrize("principal, topic", [
    ("payment", "messages"),  # message metadata is the worker's and the assistant's
    ("messaging", "decisions"),
    ("assistant", "transfer-requests"),
    ("console", "decisions"),  # the console reads the lake, not the topics
    ("worker", "transfer-status"),
    ("payment", "idempotency-messaging"),  # each service reads its own answers only
])
def test_a_component_cannot_read_a_topic_it_does_not_need(broker, principal, topic):
    with pytest.raises(TopicAuthorizationFailedError):
        run(read(broker.login(principal), topic))


@pytest.mark.parametrize("principal, topic, group", [
    ("payment", "decisions", acls.WORKER_APP),  # its topic, the worker's group
    ("assistant", "messages", "vigie-payment"),
    ("messaging", "notifications", "vigie-assistant"),
    ("console", "analyst-actions", acls.SINK_APP),
])
def test_a_component_cannot_use_another_ones_consumer_group(broker, principal, topic, group):
    with pytest.raises((GroupAuthorizationFailedError, TopicAuthorizationFailedError)):
        run(read(broker.login(principal), topic, group))


def test_the_sink_reads_every_topic_and_the_worker_writes_decisions(broker):
    marker = f"probe-{uuid.uuid4().hex}".encode()
    written = run(produce(broker.login("worker"), "decisions", marker))
    every_topic = {*TOPICS, *INTERNAL_TOPICS}

    async def read_everything():
        consumer = AIOKafkaConsumer(*every_topic, **broker.login("sink").aiokafka_kwargs(),
                                    enable_auto_commit=False)  # no group: every partition
        try:
            await consumer.start()
            await consumer.seek_to_end()
            consumer.seek(TopicPartition("decisions", written.partition), written.offset)
            got = await consumer.getmany(timeout_ms=3_000)  # a refused fetch would raise here
            return {tp.topic for tp in consumer.assignment()}, [r.value for rs in got.values()
                                                                 for r in rs]
        finally:
            await consumer.stop()

    assigned, values = run(read_everything())
    assert assigned == every_topic
    assert marker in values


def test_provisioning_at_start_removes_a_right_given_by_hand(broker):
    """The broker's start makes the ACLs exactly the table's: one added by hand (payment may
    write decisions) is gone after the next provisioning, which changes nothing else."""
    passwords = acls.passwords(broker.secrets_dir)
    admin = acls.admin_client(broker.internal_bootstrap, passwords[acls.ADMIN])
    extra = AclBinding(ResourceType.TOPIC, "decisions", ResourcePatternType.LITERAL,
                       "User:payment", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    admin.create_acls([extra])[extra].result()
    try:
        for _ in range(50):  # the broker's authorizer applies it shortly
            try:
                run(produce(broker.login("payment"), "decisions"))
                break
            except TopicAuthorizationFailedError:
                pass
        else:
            pytest.fail("the hand-made ACL never took effect")
    finally:
        acls.provision(admin, passwords)
    assert extra not in set(admin.describe_acls(acls.EVERY_ACL).result())
    assert set(admin.describe_acls(acls.EVERY_ACL).result()) >= acls.wanted_acls()
    with pytest.raises(TopicAuthorizationFailedError):
        run(produce(broker.login("payment"), "decisions"))


def _lag_or_none(group: str, conf: settings.Settings):
    try:
        return group_lag_sync(group, timeout_s=30, conf=conf)
    except GroupCoordinatorNotAvailableError:
        return None


def test_the_console_sees_the_workers_lag_and_no_other_groups(broker):
    console = as_principal(broker, "console")
    # On a young broker the offsets topic is still being made: no coordinator for a moment.
    rows = wait_for(lambda: _lag_or_none(acls.WORKER_APP, console), what="the worker's lag")
    assert {"transfer-requests", "analyst-actions"} <= {r["topic"] for r in rows}
    with pytest.raises(GroupAuthorizationFailedError):
        group_lag_sync("vigie-payment", timeout_s=30, conf=console)


@pytest.mark.parametrize("args, principal", [
    (["worker", "--name", "w2"], "worker"), (["--log-level", "warning", "sink"], "sink"),
    (["serve", "payment"], "payment"), (["console"], "console"), (["promote", "m-1"], "console"),
    (["topics"], "admin"),
    (["simulate", "--live"], ""),  # talks to the services over HTTP, never to Kafka
])
def test_each_process_is_started_as_its_own_principal_not_as_its_parent(processes, args,
                                                                        principal):
    assert os.environ["VIGIE_KAFKA_PRINCIPAL"] == "admin"  # the tests' own clients
    proc = processes.start("probe", *args, "--help")  # lives long enough to be looked at
    # (empty for an instant while the child execs)
    environ = wait_for(lambda: open(f"/proc/{proc.pid}/environ", "rb").read(), timeout=5,
                       interval=0.01, what="the child's environment").split(b"\0")
    assert f"VIGIE_KAFKA_PRINCIPAL={principal}".encode() in environ
