"""The worker's consumer re-reads a never-committed partition from its start after Faust's
seek back to committed offsets (a rebalance, a table recovery), where aiokafka alone leaves it
past the records Faust fetched and dropped: on the real broker."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from pipelines.contracts import settings
from pipelines.kafka.faust_consumer import seek_to_committed_or_start

pytestmark = pytest.mark.kafka


async def _fetched_then_sought(commit_at: int | None) -> tuple[int, int, int]:
    """Five records on a new topic; a group consumer fetches them all (commits ``commit_at``
    if given), then seeks back: (position after the fetch, after aiokafka's seek, after ours)."""
    kwargs, topic = settings.load().kafka.aiokafka_kwargs(), f"t-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(**kwargs, acks="all")
    await producer.start()
    for i in range(5):
        await producer.send_and_wait(topic, b"%d" % i)
    await producer.stop()
    consumer = AIOKafkaConsumer(topic, group_id=f"g-{uuid.uuid4().hex[:8]}", **kwargs,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        fetched = 0
        while fetched < 5:
            fetched += sum(len(r) for r in (await consumer.getmany(timeout_ms=1000)).values())
        if commit_at is not None:
            await consumer.commit({tp: OffsetAndMetadata(commit_at, "")})
        after_fetch = await consumer.position(tp)
        await consumer.seek_to_committed()
        after_theirs = await consumer.position(tp)
        await seek_to_committed_or_start(consumer)
        return after_fetch, after_theirs, await consumer.position(tp)
    finally:
        await consumer.stop()


def test_a_never_committed_partition_is_read_again_from_its_start(kafka):
    # aiokafka leaves it at 5: the five records Faust dropped would never be read
    assert asyncio.run(_fetched_then_sought(None)) == (5, 5, 0)


def test_a_committed_partition_goes_back_to_its_committed_offset(kafka):
    assert asyncio.run(_fetched_then_sought(3)) == (5, 3, 3)


async def _read_by_the_faust_consumer() -> list[bytes]:
    """One record in an aborted transaction, then one committed, on a new topic; what the
    consumer the Faust apps (worker, lake sink) are given reads of it."""
    from pipelines.stream.app import make_app  # the app the worker and the sink are made by

    kwargs, topic = settings.load().kafka.aiokafka_kwargs(), f"t-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(**kwargs, transactional_id=f"tx-{topic}")
    await producer.start()
    await producer.begin_transaction()  # e.g. a fenced payment instance's last change
    await producer.send_and_wait(topic, b"aborted")
    await producer.abort_transaction()
    async with producer.transaction():
        await producer.send_and_wait(topic, b"committed")
    await producer.stop()
    app = make_app(f"t-{topic}")
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    consumer.subscribe([topic])
    await consumer.start()
    try:
        got: list[bytes] = []
        for _ in range(30):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got += [r.value for r in records]
            if b"committed" in got:
                return got
        return got
    finally:
        await consumer.stop()


def test_the_faust_apps_read_committed_records_only(kafka):
    # the payment service writes statuses in transactions: an aborted one never reached the lake
    assert asyncio.run(_read_by_the_faust_consumer()) == [b"committed"]



async def _fetch_waits() -> tuple:
    """The max wait and min bytes of the fetch requests the decision worker's and the lake
    sink's Faust consumers send, as their started fetchers hold them (what aiokafka puts in each
    request)."""
    from pipelines.stream.worker import build_sink_app, build_worker_app

    waits = []
    for app in (build_worker_app(), build_sink_app()):
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.start()
        try:
            fetcher = consumer._fetcher
            waits.append((fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes))
        finally:
            await consumer.stop()
    return tuple(waits)


def test_the_worker_never_waits_on_a_fetch_held_for_quiet_partitions(kafka):
    # Faust asks 1,500 ms: in the latency bench both Faust stages of the worker then stopped for
    # up to 1.2 s at a time while their topics had records (docs/stream.md#fetch-wait). A guard
    # that the setting still reaches aiokafka's requests (it sets a private attribute); the lake
    # sink keeps Faust's wait, which costs it less CPU when idle.
    # The worker's fetches also wait for some data (at most that long): answered at the first
    # record, they brought a few records each: at 100 transfers/s, 560-570 µs of the worker's CPU
    # an event against 330-360 (docs/stream.md#fetch-wait).
    from pipelines.stream.ingest import BATCH_WAIT_MS, FETCH_MIN_BYTES

    worker, sink = asyncio.run(_fetch_waits())
    assert worker == (BATCH_WAIT_MS, FETCH_MIN_BYTES) and BATCH_WAIT_MS <= 50
    assert FETCH_MIN_BYTES > 1 and sink == (1500, 1)
