"""The decision worker's consumer lag on the console's overview: read from the real broker, and a
clear message (not a crash) when the broker cannot be reached."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from streamlit.testing.v1 import AppTest

from pipelines.kafka import lag

PROBE = "lag-test-probe"
OVERVIEW = Path(__file__).resolve().parents[2] / "dashboards" / "pages" / "overview.py"


def overview() -> AppTest:
    at = AppTest.from_file(str(OVERVIEW), default_timeout=60)
    at.session_state["auth"] = {"username": "alice", "role": "analyst"}
    return at.run()


@pytest.mark.kafka
def test_lag_is_end_minus_committed_per_partition(kafka):
    from pipelines.kafka.clients import Publisher, consumer

    async def go():
        # a topic of its own: records on a real input topic would be dead-lettered by every
        # worker the later tests start, and counted there
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        from pipelines.contracts import settings

        admin = AIOKafkaAdminClient(**settings.load().kafka.aiokafka_kwargs())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(PROBE, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
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


@pytest.mark.kafka
def test_overview_shows_the_worker_lag(kafka, tmp_path, monkeypatch):
    from console_lake import write_lake

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    write_lake(tmp_path / "lake")
    at = overview()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    metric = {m.label: m.value for m in at.metric}["Worker lag"]
    assert metric != "unknown" and int(metric.replace(",", "")) >= 0
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
