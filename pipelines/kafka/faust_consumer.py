"""Faust's aiokafka transport with three changes: after a rebalance, a partition that its
consumer group never committed is read again from its first record; the worker's Faust stages
may join a consumer group other than their app id (``Transport.group``: the worker's own group,
named after the app, is its batch ingest's, pipelines/stream/ingest.py); and the decision
worker's fetches are held no longer than its ingest window, not Faust's 1.5 s
(``Transport.fetch_max_wait_ms``), and wait for some data, not the first record
(``Transport.fetch_min_bytes``).

Faust drops the records it fetched while a rebalance or a table recovery stops the flow, then
seeks every partition back to its committed offset (``Consumer.perform_seek``). aiokafka's
``seek_to_committed`` moves only the partitions whose committed offset is above 0, so a
partition never committed (a first deployment, a new partition, traffic that came while every
worker was down) stays where the dropped fetch left it: its first records are never read. A
lost transfer request is never decided, and the stream's aligner waits for ever for that
source's watermark (seen in the suite: docs/stream.md#watermarks). Re-reading from the start is
harmless: the stages are idempotent under redelivery. ``Transport`` is what ``make_app`` gives
the Faust apps (``consumer_auto_offset_reset`` is "earliest" there, which this matches).
"""
from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka


async def seek_to_committed_or_start(consumer: AIOKafkaConsumer) -> dict:
    """Seek each assigned partition to its committed offset, or to its first record when the
    group has committed none (or 0) there; returns the committed offsets, as aiokafka does."""
    committed = await consumer.seek_to_committed()
    never = [tp for tp, offset in committed.items() if not offset]
    if never:
        await consumer.seek_to_beginning(*never)
    return committed


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_to_committed(self):
        return await self.call_thread(seek_to_committed_or_start, self._ensure_consumer())

    def _create_worker_consumer(self, transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        group = getattr(transport, "group", None)
        if group:  # read by aiokafka when it starts (its coordinator): not started yet
            consumer._group_id = group
        # Committed records only, as every other Vigie consumer (clients.consumer): the payment
        # service writes transfer-status in transactions, and a fenced or failed one's records
        # must never reach the lake (the sink) as if they had happened. Faust reads committed
        # only under exactly-once processing; read by aiokafka when it starts its fetcher.
        consumer._isolation_level = "read_committed"
        wait = getattr(transport, "fetch_max_wait_ms", None)
        if wait is not None:  # read by aiokafka when it starts its fetcher
            consumer._fetch_max_wait_ms = wait
        least = getattr(transport, "fetch_min_bytes", None)
        if least is not None:  # the same
            consumer._fetch_min_bytes = least
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    group: str | None = None  # the Faust consumer group; None: the app id, as in Faust
    fetch_max_wait_ms: int | None = None  # None: Faust's 1.5 s (docs/stream.md#fetch-wait)
    fetch_min_bytes: int | None = None  # None: aiokafka's 1 byte
