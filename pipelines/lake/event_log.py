"""Read the event log back from the lake as typed events, for the replay and for training.

The lake holds exactly what went through Kafka (or what the offline simulator wrote in the
same layout); this turns Parquet rows back into the msgspec events the stream saw.

``read_log`` returns the whole log as a list (small lakes, tests); ``LakeLog`` streams it in
the same order in bounded memory: each topic is sorted by DuckDB (which spills to disk past its
memory limit) and read in Arrow batches, and the topics are merged as they come.
"""
from __future__ import annotations

import heapq
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional

import duckdb
import msgspec
import pyarrow.dataset as ds

from pipelines.contracts.topics import FEATURE_TOPICS, TOPICS

BATCH_ROWS = 20_000  # rows converted to events at a time, per topic
DUCKDB_MEMORY = "512MB"  # DuckDB's own sort buffers; past it, it spills to a temporary folder
RANK = {topic: i for i, topic in enumerate(FEATURE_TOPICS)}


def time_field(topic: str) -> str:
    return "known_at" if topic == "labels" else "ts"  # labels count from when known


def read_topic(lake_dir: Path, topic: str, until_ts: Optional[int] = None) -> list:
    """Every event of one topic in the lake (deduplicated by event id), as typed events."""
    folder = Path(lake_dir) / topic
    if not any(folder.glob("hour=*/*.parquet")):
        return []
    schema_type = TOPICS[topic].schema
    fields = list(schema_type.__struct_fields__)
    dataset = ds.dataset(str(folder), format="parquet", partitioning="hive")
    flt = (ds.field(time_field(topic)) < until_ts) if until_ts is not None else None
    rows = dataset.to_table(columns=fields, filter=flt).to_pylist()
    events = msgspec.convert(rows, list[schema_type])
    seen: set[str] = set()
    unique = []
    for event in events:  # at-least-once delivery may have stored an event twice
        if event.id not in seen:
            seen.add(event.id)
            unique.append(event)
    return unique


def read_log(lake_dir: Path, topics: Iterable[str] = FEATURE_TOPICS,
             until_ts: Optional[int] = None) -> list:
    """The feature topics' events merged in the order the stream learns them: event time,
    except that a label counts from when it became known (``known_at``), never from when the
    fraud happened, so no feature sees the future. Ties are broken by topic (the order of
    FEATURE_TOPICS) and then event id, so the order is the same on every run."""
    tagged = []
    for topic in topics:
        tagged += [(getattr(e, "known_at", e.ts), RANK[topic], e.id, e)
                   for e in read_topic(lake_dir, topic, until_ts)]
    tagged.sort(key=lambda row: row[:3])
    return [row[3] for row in tagged]


class LakeLog:
    """The lake's feature topics in ``read_log``'s order, streamed: ``iter(log)`` gives every
    event, ``log.topic(name)`` one topic's, ``log.count(name)`` an upper bound of its events
    (duplicates included) for a progress bar. Iterate it as often as needed: each iteration
    reads the lake again (a forked shard iterates its own).

    A duplicate (the same event stored twice) has the same time and id, so once a topic is
    sorted by (time, id) its copies are neighbours: dropping a repeat of the previous key
    deduplicates without remembering every id."""

    def __init__(self, lake_dir: Path, until_ts: Optional[int] = None,
                 topics: Iterable[str] = FEATURE_TOPICS, batch_rows: int = BATCH_ROWS):
        self.lake_dir, self.until_ts = Path(lake_dir), until_ts
        self.topics = [t for t in topics if any((self.lake_dir / t).glob("hour=*/*.parquet"))]
        self.batch_rows = batch_rows

    def __iter__(self) -> Iterator:
        with _duckdb() as con:
            merged = heapq.merge(*(self._tagged(con.cursor(), t) for t in self.topics))
            for row in merged:  # (time, rank, id) is unique: the event is never compared
                yield row[3]

    def topic(self, topic: str) -> Iterator:
        if topic not in self.topics:
            return
        with _duckdb() as con:
            for row in self._tagged(con, topic):
                yield row[3]

    def count(self, topic: Optional[str] = None) -> int:
        with _duckdb() as con:
            return sum(con.sql(f"SELECT count(*) FROM {self._source(t)}").fetchall()[0][0]
                       for t in ([topic] if topic else self.topics) if t in self.topics)

    def _source(self, topic: str) -> str:
        files = str(self.lake_dir / topic / "hour=*" / "*.parquet").replace("'", "''")
        where = "" if self.until_ts is None else f" WHERE {time_field(topic)} < {int(self.until_ts)}"
        return f"read_parquet('{files}', union_by_name=true, hive_partitioning=false){where}"

    def _tagged(self, con, topic: str) -> Iterator[tuple]:
        """(time, rank, id, event) of one topic, sorted, duplicates dropped."""
        schema_type = TOPICS[topic].schema
        fields = list(schema_type.__struct_fields__)
        at, rank = time_field(topic), RANK[topic]
        columns = ", ".join(f'"{f}"' for f in fields)
        reader = con.sql(f"SELECT {columns} FROM {self._source(topic)} ORDER BY {at}, id") \
            .to_arrow_reader(self.batch_rows)
        last = None
        for batch in reader:
            for event in msgspec.convert(batch.to_pylist(), list[schema_type]):
                key = (getattr(event, at), rank, event.id)
                if key != last:
                    last = key
                    yield (*key, event)


class _duckdb:
    """An in-memory DuckDB whose sorts spill to a temporary folder of their own."""

    def __enter__(self):
        self.spill = tempfile.mkdtemp(prefix="vigie-replay-")
        self.con = duckdb.connect(config={"memory_limit": DUCKDB_MEMORY,
                                          "temp_directory": self.spill, "threads": 1})
        return self.con

    def __exit__(self, *exc):
        self.con.close()
        shutil.rmtree(self.spill, ignore_errors=True)
