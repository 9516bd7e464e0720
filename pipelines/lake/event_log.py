"""Read the event log back from the lake as typed events, for the replay and for training.

The lake holds exactly what went through Kafka (or what the offline simulator wrote in the
same layout); this turns Parquet rows back into the msgspec events the stream saw.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import msgspec
import pyarrow.dataset as ds

from pipelines.contracts.topics import FEATURE_TOPICS, TOPICS


def read_topic(lake_dir: Path, topic: str, until_ts: Optional[int] = None) -> list:
    """Every event of one topic in the lake (deduplicated by event id), as typed events."""
    folder = Path(lake_dir) / topic
    if not any(folder.glob("hour=*/*.parquet")):
        return []
    schema_type = TOPICS[topic].schema
    fields = list(schema_type.__struct_fields__)
    dataset = ds.dataset(str(folder), format="parquet", partitioning="hive")
    time_field = "known_at" if topic == "labels" else "ts"  # labels count from when known
    flt = (ds.field(time_field) < until_ts) if until_ts is not None else None
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
    rank = {topic: i for i, topic in enumerate(FEATURE_TOPICS)}
    tagged = []
    for topic in topics:
        tagged += [(getattr(e, "known_at", e.ts), rank[topic], e.id, e)
                   for e in read_topic(lake_dir, topic, until_ts)]
    tagged.sort(key=lambda row: row[:3])
    return [row[3] for row in tagged]
