"""The worker on the real broker: bad input is dead-lettered with its reason, valid input
is processed, and nothing makes the worker restart."""
from __future__ import annotations

import asyncio
import base64
import random
import time

import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from conftest import wait_for
from factories import INPUT_TOPICS, MALFORMATIONS, malformed, valid_event
from pipelines import lake, schemas, settings
from pipelines.kafka.clients import Publisher, consumer

pytestmark = pytest.mark.kafka


async def _produce(records) -> None:
    pub = await Publisher().start()
    try:
        for topic, key, value in records:
            await pub.producer.send(topic, value, key=key)
        await pub.producer.flush()
    finally:
        await pub.stop()


async def _lag(group: str, topics) -> int:
    """Messages not yet committed by ``group`` on ``topics`` (0 = all processed)."""
    conf = settings.load()
    admin = AIOKafkaAdminClient(**conf.kafka.aiokafka_kwargs())
    await admin.start()
    reader = consumer(*topics, conf=conf)
    await reader.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        parts = [TopicPartition(t, p) for t in topics for p in reader.partitions_for_topic(t)]
        ends = await reader.end_offsets(parts)
        assert sum(ends.values()) > 0
        return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())
    finally:
        await reader.stop()
        await admin.close()


def test_malformed_events_are_dead_lettered_and_valid_ones_processed(kafka, processes, session_dir):
    rnd = random.Random(1)
    records, expected_reasons, valid_ids = [], [], {t: set() for t in INPUT_TOPICS}
    for i in range(1000):
        topic = INPUT_TOPICS[i % len(INPUT_TOPICS)]
        kind = MALFORMATIONS[i % len(MALFORMATIONS)]
        records.append((topic, b"k", malformed(topic, kind, rnd)))
        expected_reasons.append(kind)
        good = valid_event(topic, rnd)  # interleaved: one valid for each bad one
        records.append((topic, b"k", schemas.encode(good)))
        valid_ids[topic].add(good.id)
    asyncio.run(_produce(records))

    worker = processes.start("worker", "worker")
    sink = processes.start("sink", "sink")
    lake_dir = settings.load().lake_dir
    con_rows = lambda sql: lake.connect(lake_dir).execute(sql).fetchall()  # noqa: E731
    # the session's lake is shared: count the letters of the records this test wrote
    ours = {base64.b64encode(raw).decode() for _, _, raw in records[::2]}
    ours_sql = "SELECT topic, reason, original_size, original_b64 FROM dead_letters"
    mine = lambda: [row[:3] for row in con_rows(ours_sql) if row[3] in ours]  # noqa: E731
    wait_for(lambda: len(mine()) >= 1000, timeout=90, what="1000 dead letters in the lake")
    letters = mine()
    assert len(letters) == 1000
    assert {t for t, _, _ in letters} == set(INPUT_TOPICS)
    assert all(reason for _, reason, _ in letters)
    reasons = " | ".join(r for _, r, _ in letters)
    for fragment in ["truncated", "Expected `int`, got `str`", "missing required field",
                     "oversized", "Invalid enum value 2", "unknown field `text`", "matching regex",
                     "Expected `object`, got `array`"]:
        assert fragment in reasons, fragment

    for topic, ids in valid_ids.items():
        view = lake.view_name(topic)
        wait_for(lambda: ids <= {row[0] for row in con_rows(f"SELECT id FROM {view}")},
                 timeout=60, what=f"every valid {topic} event in the lake")

    # the worker consumed and committed every input record: all processed
    wait_for(lambda: asyncio.run(_lag("vigie", INPUT_TOPICS)) == 0, timeout=60,
             what="the worker to commit every input offset")
    assert worker.poll() is None and sink.poll() is None, "a worker died"
    log = processes.log_of(worker)
    assert "Traceback" not in log and "Crashed" not in log and log.count("[^Worker]: Starting") == 1


def test_dead_letter_keeps_the_original_bytes(kafka, processes):
    bad = b'{"id": "zz", "ts": "yesterday"}'
    asyncio.run(_produce([("labels", b"k", bad)]))
    processes.start("worker", "worker")

    async def find():
        reader = consumer("dead-letters")
        await reader.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                batch = await reader.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        letter = msgspec.json.decode(record.value, type=schemas.DeadLetter)
                        if base64.b64decode(letter.original_b64) == bad:
                            return letter
        finally:
            await reader.stop()

    letter = asyncio.run(find())
    assert letter is not None and letter.topic == "labels" and "ts" in letter.reason
