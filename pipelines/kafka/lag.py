"""Consumer-group lag: how many events a group has not committed yet, per topic and partition.

The console's overview shows the decision worker's lag (its group is the Faust app id of
``pipelines.stream.worker.build_worker_app``). Lag is end offset minus committed offset; a partition
the group never committed counts from the log's first offset (all of it is still to read).
"""
from __future__ import annotations

import asyncio
from typing import Iterable, Optional

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipelines.contracts import settings as settings_mod
from pipelines.contracts.topics import INPUT_TOPICS

WORKER_GROUP = "vigie"  # the worker's batch ingest of the input topics (pipelines/stream/ingest.py)


async def group_lag(group: str = WORKER_GROUP, topics: Iterable[str] = INPUT_TOPICS,
                    conf: Optional[settings_mod.Settings] = None) -> list[dict]:
    """One row per partition: topic, partition, committed, end, lag. ``topics`` are always
    listed (a group that never started lags by everything); any other topic the group has
    committed offsets on (its internal hops) is listed too."""
    conf = conf or settings_mod.load()
    kwargs = conf.kafka.aiokafka_kwargs()
    admin = AIOKafkaAdminClient(**kwargs, request_timeout_ms=5_000)
    consumer = AIOKafkaConsumer(**kwargs, request_timeout_ms=5_000, enable_auto_commit=False)
    try:
        await admin.start()
        await consumer.start()
        committed = {tp: meta.offset for tp, meta in
                     (await admin.list_consumer_group_offsets(group)).items() if meta.offset >= 0}
        names = set(topics) | {tp.topic for tp in committed}
        present = sorted(names & set(await admin.list_topics()))
        tps = sorted(TopicPartition(d["topic"], p["partition"])
                     for d in (await admin.describe_topics(present) if present else [])
                     for p in d["partitions"])
        if not tps:
            return []
        start, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
        await admin.close()
    return [{"topic": tp.topic, "partition": tp.partition, "committed": committed.get(tp),
             "end": end[tp], "lag": max(0, end[tp] - committed.get(tp, start[tp]))} for tp in tps]


def group_lag_sync(group: str = WORKER_GROUP, timeout_s: float = 3.0, **kwargs) -> list[dict]:
    """``group_lag`` from synchronous code, given up after ``timeout_s`` (TimeoutError)."""
    return asyncio.run(asyncio.wait_for(group_lag(group, **kwargs), timeout_s))
