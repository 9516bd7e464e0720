"""The decision worker's consumer lag on the console's overview: read from the real broker, and a
clear message (not a crash) when the broker cannot be reached."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from console_lake import signed_in
from streamlit.testing.v1 import AppTest

from pipelines.kafka import lag

PROBE = "lag-test-probe"
OVERVIEW_PROBE = "lag-overview-probe"
OVERVIEW = Path(__file__).resolve().parents[2] / "dashboards" / "pages" / "overview.py"


def overview() -> AppTest:
    return signed_in(AppTest.from_file(str(OVERVIEW), default_timeout=60), "alice", "analyst").run()


def _create_topic(name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from pipelines.contracts import settings

    async def go():
        admin = AIOKafkaAdminClient(**settings.load().kafka.aiokafka_kwargs())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(go())


@pytest.mark.kafka
def test_lag_is_end_minus_committed_per_partition(kafka):
    from pipelines.kafka.clients import Publisher, consumer

    # a topic of its own: records on a real input topic would be dead-lettered by every worker
    # the later tests start, and counted there
    _create_topic(PROBE, partitions=1)

    async def go():
        pub = await Publisher().start()
        try:
            for i in range(5):
                await pub.publish_raw(PROBE, b"{}")
        finally:
            await pub.stop()
        tp = TopicPartition(PROBE, 0)
        c = consumer(group_id="lag-test", enable_auto_commit=False)
        await c.start()
        try:
            c.assign([tp])
            end = (await c.end_offsets([tp]))[tp]
            await c.commit({tp: end - 3})
        finally:
            await c.stop()
        return end

    end = asyncio.run(go())
    rows = lag.group_lag_sync("lag-test", topics=[PROBE, "analyst-actions"])
    by_topic = {r["topic"]: r for r in rows}
    assert by_topic[PROBE]["committed"] == end - 3
    assert by_topic[PROBE]["lag"] == by_topic[PROBE]["end"] - (end - 3) >= 3
    # Never committed by this group: everything in the log is still to read.
    assert by_topic["analyst-actions"]["committed"] is None
    assert by_topic["analyst-actions"]["lag"] == by_topic["analyst-actions"]["end"]


def _shown_lag() -> int:
    """The overview's "Worker lag", freshly read (the page caches the lag for a refresh period)."""
    from dashboards import common

    common.consumer_lag.clear()
    at = overview()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    return int({m.label: m.value for m in at.metric}["Worker lag"].replace(",", ""))


async def _worker_lag_by_hand() -> int:
    """The worker group's real lag, by another road than ``pipelines.kafka.lag``: every partition
    of the cluster, the group's committed offset asked by a consumer of that group, the log's end
    (or its start, for an input topic the group never committed: all of it still to read)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from pipelines.contracts import settings
    from pipelines.contracts.topics import INPUT_TOPICS
    from pipelines.kafka.clients import consumer

    admin = AIOKafkaAdminClient(**settings.load().kafka.aiokafka_kwargs())
    await admin.start()
    try:
        tps = [TopicPartition(d["topic"], p["partition"])
               for d in await admin.describe_topics(await admin.list_topics()) for p in d["partitions"]]
    finally:
        await admin.close()
    c = consumer(group_id=lag.WORKER_GROUP, enable_auto_commit=False)
    await c.start()
    try:
        committed = {tp: await c.committed(tp) for tp in tps}
        tps = [tp for tp in tps if committed[tp] is not None or tp.topic in INPUT_TOPICS]
        start, end = await c.beginning_offsets(tps), await c.end_offsets(tps)
    finally:
        await c.stop()
    return sum(end[tp] - (start[tp] if committed[tp] is None else committed[tp]) for tp in tps)


async def _worker_group_commits(offsets: dict[int, int]) -> None:
    """Commit, as the worker's group, these offsets of the probe topic's partitions (no worker
    runs here, so the group is empty and takes a plain commit)."""
    from pipelines.kafka.clients import consumer

    c = consumer(group_id=lag.WORKER_GROUP, enable_auto_commit=False)
    await c.start()
    try:
        tps = {p: TopicPartition(OVERVIEW_PROBE, p) for p in offsets}
        c.assign(list(tps.values()))
        await c.commit({tps[p]: offset for p, offset in offsets.items()})
    finally:
        await c.stop()


async def _publish_to_probe(per_partition: dict[int, int]) -> None:
    from pipelines.kafka.clients import Publisher

    pub = await Publisher().start()
    try:
        for partition, n in per_partition.items():
            for _ in range(n):
                await pub.producer.send_and_wait(OVERVIEW_PROBE, b"{}", partition=partition)
    finally:
        await pub.stop()


@pytest.mark.kafka
def test_overview_shows_the_worker_lag(kafka, tmp_path, monkeypatch):
    """The number on the page is the worker group's real lag: it matches the lag counted by
    hand, grows by exactly the records published that nobody consumes, and shrinks by exactly
    what the group commits. The probe is a topic of its own that the worker group commits on
    (the page lists every topic the group committed), so no real input topic gets stray records."""
    from console_lake import write_lake

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    write_lake(tmp_path / "lake")
    _create_topic(OVERVIEW_PROBE, partitions=2)
    asyncio.run(_publish_to_probe({0: 2, 1: 1}))
    asyncio.run(_worker_group_commits({0: 2, 1: 1}))  # all read: the probe lags by nothing yet
    before = _shown_lag()
    assert before == asyncio.run(_worker_lag_by_hand())

    asyncio.run(_publish_to_probe({0: 4, 1: 3}))  # nobody consumes them
    assert _shown_lag() == before + 7 == asyncio.run(_worker_lag_by_hand())

    asyncio.run(_worker_group_commits({0: 2 + 3, 1: 1 + 1}))  # 4 of them read: 1 + 2 left
    assert _shown_lag() == before + 3 == asyncio.run(_worker_lag_by_hand())
    at = overview()
    assert "Decision worker consumer lag (events)" in [s.value for s in at.subheader]


def test_overview_says_when_the_broker_is_unreachable(tmp_path, monkeypatch):
    from console_lake import write_lake

    from pipelines.kafka.broker import free_port

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")  # nobody listens
    write_lake(tmp_path / "lake")
    at = overview()
    assert not at.exception, [e.value for e in at.exception]
    assert {m.label: m.value for m in at.metric}["Worker lag"] == "unknown"
    assert any("Kafka could not be reached" in w.value for w in at.warning)
    assert "Held transfers by age" in [s.value for s in at.subheader]  # the rest still renders
