"""A worker killed (SIGKILL) between a batch's produce and its offset commit, in each stage that
reads batches: the batch ingest (``pipelines/stream/ingest.py``) commits a batch's input offsets
only once Kafka acknowledged everything it produced, so the next worker reads the batch again,
and the redelivery marks in the entity states make the re-read harmless; the decide stage
(``pipelines/stream/decide.py``) acknowledges a bundle of transfer parts only once every transfer
in it is decided, so the next worker decides them again, with the same decisions. Every transfer
is decided, one decision each. The entity stage writes a state only once what its events sent is
delivered, so killed after a state write, it loses no part."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from process_support import wait_for
from stream_support import DecisionWatcher, hand_transfer, publish

from pipelines.contracts import settings
from pipelines.kafka.acls import STAGES_GROUP, WORKER_APP
from pipelines.kafka.clients import consumer

pytestmark = pytest.mark.kafka
TRANSFERS = 300
# stage -> (what its batch produced, the group and topic whose offsets it must not have
# committed when killed)
STAGES = {"ingest": ("entity-events", WORKER_APP, "transfer-requests"),
          "decide": ("decisions", STAGES_GROUP, "transfer-parts"),
          # killed once it wrote entity states (after their parts were delivered), before it
          # acknowledged their records: the re-read events find themselves applied and are
          # skipped, and their transfers are decided on the parts sent the first time
          "entities": ("transfer-parts", STAGES_GROUP, "entity-events")}


async def _committed(group: str, topic: str) -> int:
    """The sum of ``group``'s committed offsets on ``topic``."""
    admin = AIOKafkaAdminClient(**settings.load().kafka.aiokafka_kwargs())
    await admin.start()
    try:
        for _ in range(60):  # a fresh broker creates its offsets topic on the first ask
            try:
                offsets = await admin.list_consumer_group_offsets(group)
                break
            except GroupCoordinatorNotAvailableError:
                await asyncio.sleep(0.5)
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)
    finally:
        await admin.close()


async def _end(topic: str) -> int:
    reader = consumer(topic)
    await reader.start()
    try:
        parts = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic)]
        return sum((await reader.end_offsets(parts)).values())
    finally:
        await reader.stop()


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_worker_killed_between_produce_and_commit_loses_and_doubles_no_decision(
        kafka, processes, stage):
    produced, group, source = STAGES[stage]
    tag = f"crash-{uuid.uuid4().hex[:6]}"
    transfers = [hand_transfer(f"{tag}-s{i % 40}", f"{tag}-r{i % 25}", 1000 + i, tag)
                 for i in range(TRANSFERS)]
    ids = [t.transfer_id for t in transfers]
    inputs_before = asyncio.run(_committed(WORKER_APP, "transfer-requests"))
    committed_before = asyncio.run(_committed(group, source))
    produced_before = asyncio.run(_end(produced))
    with DecisionWatcher() as watcher:
        publish(transfers)  # a backlog: the first batch holds transfers
        first = processes.start(f"crash-{stage}", "worker", "--name", f"crash-{stage}",
                                env={"VIGIE_TEST_CRASH_AFTER_PRODUCE": "1",
                                     "VIGIE_TEST_CRASH_STAGE": stage})
        assert first.wait(60) == -9, "the worker did not kill itself after its first batch"
        assert f"{stage} killed after a batch's produce" in processes.log_of(first)
        # the batch's output reached Kafka, what it came from was not committed
        assert asyncio.run(_end(produced)) > produced_before
        assert asyncio.run(_committed(group, source)) == committed_before

        # same state directory
        processes.start(f"after-{stage}", "worker", "--name", f"crash-{stage}")
        watcher.wait_all(ids, timeout=45, what="after the crash")
        wait_for(lambda: asyncio.run(_committed(WORKER_APP, "transfer-requests"))
                 >= inputs_before + TRANSFERS, timeout=20, what="the re-read batch committed")
        decided = watcher.decisions(ids)
    assert set(decided) == set(ids)
    # a redelivered part may repeat a decision record: the same decision (its id and content),
    # which the payment service applies once; never a second, different one
    differ = {t: ds for t, ds in decided.items()
              if len({(d.id, d.action, d.score, tuple(d.rule_hits)) for d in ds}) != 1}
    assert not differ, list(differ.items())[:3]
