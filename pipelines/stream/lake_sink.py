"""The lake sink, a Faust app of its own (``vigie sink``): appends every topic to Parquet (see ``pipelines.lake.parquet``).

Batches are written, then acknowledged: a crash before the write re-reads the batch, and
files are named after the offsets they hold, so the offsets already in the lake are
skipped on the way back. Nothing is lost and nothing is written twice.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from pathlib import Path

from models.expectations import EVENT_TOPICS
from pipelines.contracts import metrics, settings as settings_mod
from pipelines.contracts.topics import INPUT_TOPICS, TOPICS, InvalidEvent, decode
from pipelines.lake import parquet as lake
from pipelines.stream import ingest, quality

log = logging.getLogger(__name__)
COMPACT_AFTER_MS = 2 * 3600 * 1000  # an hour's files are merged once it ended this long ago


def flushed_offset(lake_dir: Path, topic: str, partition: int) -> int:
    """The last offset of ``topic[partition]`` already in the lake (-1 if none)."""
    last = -1
    for path in (lake_dir / topic).glob(f"hour=*/p{partition}-*.parquet"):
        match = lake.SINK_FILE.match(path.name)
        if match and int(match.group(1)) == partition:
            last = max(last, int(match.group(3)))
    return last


class LakeWriter:
    """Turns a batch of Kafka records into Parquet files, skipping offsets already written."""

    def __init__(self, lake_dir: Path, observe=None, max_ahead_s: float = ingest.MAX_AHEAD_S):
        self.lake_dir = lake_dir
        self.observe = observe  # called with (topic, event) for each event written
        # the worker's far-future bound: an input event it refuses never reaches the lake either,
        # so training replays what the stream applied (its dead letter is sunk like any other)
        self.max_ahead_s = max_ahead_s
        self.tables = {topic: lake.TopicTable(topic, with_kafka_columns=True) for topic in TOPICS}
        self.flushed: dict[tuple[str, int], int] = {}
        self.rows_written = 0

    def write(self, records) -> int:
        """``records``: (topic, partition, offset, value bytes) in offset order per partition."""
        batches: dict[tuple[str, int], list] = defaultdict(list)
        for topic, partition, offset, value in records:
            key = (topic, partition)
            if key not in self.flushed:
                self.flushed[key] = flushed_offset(self.lake_dir, topic, partition)
            if offset > self.flushed[key]:
                batches[key].append((offset, value))
        written, now = 0, int(time.time() * 1000)
        for (topic, partition), rows in batches.items():
            events, offsets = [], []
            for offset, value in rows:
                try:
                    event = decode(topic, value)
                except InvalidEvent:
                    continue  # the worker dead-letters it; the dead-letter topic is sunk too
                if topic in INPUT_TOPICS and ingest.ahead_of_clock(event, now, self.max_ahead_s):
                    continue  # refused by the worker too, for the same reason
                events.append(event)
                offsets.append(offset)
                if self.observe is not None:
                    self.observe(topic, event)
            first, last = rows[0][0], rows[-1][0]
            if events:
                lake.write_batch(self.lake_dir, topic, self.tables[topic], events,
                                 name=f"p{partition}-{first:012d}-{last:012d}",
                                 partitions=[partition] * len(events), offsets=offsets)
                written += len(events)
            self.flushed[(topic, partition)] = last
        self.rows_written += written
        return written


def register(app) -> None:
    conf = settings_mod.load()
    sampler = quality.Sampler(EVENT_TOPICS)  # input topics with a suite
    writer = LakeWriter(conf.lake_dir, observe=sampler.observe)
    quality.register(app, sampler)
    flush_s = conf.env.stream.sink_flush_s
    every_topic = app.topic(*TOPICS, key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw")

    @app.agent(every_topic, name="lake-sink")
    async def sink(stream):
        # take_events acknowledges a batch only after this loop body returns, i.e. after
        # its files are renamed into place.
        async for batch in stream.take_events(20_000, within=flush_s):
            started = time.perf_counter()
            records = [(e.message.topic, e.message.partition, e.message.offset, e.value)
                       for e in batch]
            written = writer.write(records)
            metrics.LAKE_ROWS.inc(written)
            log.info("lake: %d rows from %d records in %.0f ms", written, len(records),
                     (time.perf_counter() - started) * 1000)

    @app.timer(conf.env.stream.sink_compact_every_s)
    async def compact_closed_hours():
        # in a thread: merging an hour of files must not hold up the next batch
        closed_before = int(time.time() * 1000) - COMPACT_AFTER_MS
        done = await asyncio.to_thread(lake.compact, conf.lake_dir, closed_before)
        if done["files_merged"]:
            log.info("lake: compacted %(files_merged)d files into %(files_written)d", done)
