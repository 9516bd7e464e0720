"""Where a decision's latency goes, hop by hop, from the records' own timestamps.

Every record carries the time its producer appended it (Kafka's CreateTime), so after a latency
run the topics tell, for each transfer: when the load generator sent it (transfer-requests),
when the ingest had bundled it for its last entity (entity-events), when its last entity
reported on it (transfer-parts) and when its decision left (decisions). Each hop is the time
between two of them: the next stage's fetch, its wait (the entity stage's, for the watermark)
and its work, up to its send. Read once the decisions are in, before the broker goes.

Inside the worker, its metrics page says when each transfer reached a point of its way
(``metrics.TRANSFER_POINTS``, then decided): ``points`` reads them from the pages of every
worker, so the entity hop splits into the stage's fetch and the wait for the watermark.
"""
from __future__ import annotations

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from pipelines.bench.harness import percentile
from pipelines.contracts.metrics import TRANSFER_POINTS
from pipelines.stream.envelopes import BUNDLE_DECODER, BUNDLE_KEY, decode_parts

HOPS = ("ingest", "entities", "decide")  # to entity-events, to transfer-parts, to decisions
POINTS = (*TRANSFER_POINTS, "decided")  # in the worker, from the transfer's event time
TRANSFERS = "transfer-requests"


class _Id(msgspec.Struct):
    transfer_id: str


_ID = msgspec.json.Decoder(_Id)


async def _records(topic: str, kafka: dict):
    """Every record of ``topic`` now, from its start."""
    consumer = AIOKafkaConsumer(topic, **kafka, enable_auto_commit=False)
    await consumer.start()  # with the topic's metadata
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.unsubscribe()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    yield record
    finally:
        await consumer.stop()


async def _latest(topic: str, kafka: dict, ids: set[str], ids_of) -> dict[str, int]:
    """transfer id -> the latest timestamp of a ``topic`` record about it (``ids_of(record)``
    lists the transfers a record speaks of)."""
    latest: dict[str, int] = {}
    async for record in _records(topic, kafka):
        for transfer_id in ids_of(record):
            if transfer_id in ids and record.timestamp > latest.get(transfer_id, 0):
                latest[transfer_id] = record.timestamp
    return latest


def _routed(record) -> list[str]:
    if record.key != BUNDLE_KEY:  # a watermark
        return []
    return [_ID.decode(r.event).transfer_id for r in BUNDLE_DECODER.decode(record.value)
            if r.topic == TRANSFERS]


def _parts(record) -> list[str]:
    return [_ID.decode(part.transfer).transfer_id for part in decode_parts(record.value)]


async def hop_times(ids: set[str], kafka: dict) -> dict[str, list[float]]:
    """hop -> its time in ms for each transfer of ``ids`` seen at both of its ends."""
    stamps = [await _latest(TRANSFERS, kafka, ids, lambda r: [_ID.decode(r.value).transfer_id]),
              await _latest("entity-events", kafka, ids, _routed),
              await _latest("transfer-parts", kafka, ids, _parts),
              await _latest("decisions", kafka, ids, lambda r: [_ID.decode(r.value).transfer_id])]
    return between(stamps, ids)


def between(stamps: list[dict[str, int]], ids: set[str]) -> dict[str, list[float]]:
    """hop -> its times, from each topic's latest timestamp per transfer (in ``HOPS`` order,
    the transfer-requests first)."""
    return {hop: [after[t] - before[t] for t in ids if t in before and t in after]
            for hop, before, after in zip(HOPS, stamps, stamps[1:])}


def summary(times: dict[str, list[float]], tag: str) -> dict[str, float]:
    """p50 and p99 of each hop, as bench results."""
    out = {}
    for hop, values in times.items():
        if values:
            out[f"latency_hop_{hop}_ms_p50_at_{tag}"] = percentile(values, 50)
            out[f"latency_hop_{hop}_ms_p99_at_{tag}"] = percentile(values, 99)
    return out


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile (0-1) of a histogram given as (upper bound, cumulative count) pairs,
    as Prometheus reads it: linear within the bucket it falls in (one past the last finite
    bound is that bound); None when the histogram is empty.

    >>> buckets = [(0.1, 0), (0.2, 50), (0.4, 100), (float("inf"), 100)]
    >>> histogram_quantile(buckets, 0.5), round(histogram_quantile(buckets, 0.75), 6)
    (0.2, 0.3)
    """
    buckets = sorted(buckets)
    if not buckets or not buckets[-1][1]:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0  # the bucket before: its bound and cumulative count
    for bound, count in buckets:
        if count >= rank and count > below:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def points(pages: list[str], tag: str) -> dict[str, float]:
    """p50 and p99 in ms of each of ``POINTS`` over the workers' metrics ``pages`` (their
    buckets added up), as bench results; a point with no transfer is left out."""
    buckets: dict[str, dict[float, float]] = {}
    for page in pages:
        for family in text_string_to_metric_families(page):
            for sample in family.samples:
                if sample.name == "vigie_transfer_progress_seconds_bucket":
                    point = sample.labels["point"]
                elif sample.name == "vigie_decision_latency_seconds_bucket":
                    point = "decided"
                else:
                    continue
                le = float(sample.labels["le"])
                buckets.setdefault(point, {}).setdefault(le, 0.0)
                buckets[point][le] += sample.value
    out = {}
    for point in POINTS:
        for q in (50, 99):
            value = histogram_quantile(list(buckets.get(point, {}).items()), q / 100)
            if value is not None:
                out[f"latency_point_{point}_ms_p{q}_at_{tag}"] = value * 1000
    return out
