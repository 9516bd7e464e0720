"""``LakeWriter``: buffers each topic's events in memory and writes them as the lake's hourly
Parquet files (``pipelines.lake.parquet``), sorted by event time, ``FLUSH_ROWS`` at a time.
The offline simulator and ``vigie import`` write their lakes with it (no Kafka columns)."""
from __future__ import annotations

from operator import attrgetter
from pathlib import Path

from pipelines.lake import parquet as lake

TOPICS = ("messages", "account-events", "transfer-requests", "assistant-events", "labels")
FLUSH_ROWS = 200_000  # per topic: bounds memory, keeps files large
_BY_TS = attrgetter("ts")


class LakeWriter:
    """Buffers each topic's events and writes them as the lake's hourly Parquet files."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.tables = {t: lake.TopicTable(t, with_kafka_columns=False) for t in TOPICS}
        self.buffers: dict[str, list] = {t: [] for t in TOPICS}
        self.counts = dict.fromkeys(TOPICS, 0)
        self.files: list[Path] = []
        self._seq = 0

    def flush(self, topic: str) -> None:
        events = self.buffers[topic]
        if not events:
            return
        events.sort(key=_BY_TS)  # stable: labels arrive late, everything else is in order
        self.files += lake.write_batch(self.out_dir, topic, self.tables[topic], events,
                                       name=f"sim-{self._seq:06d}")
        self._seq += 1
        self.counts[topic] += len(events)
        self.buffers[topic] = []

    def close(self) -> None:
        for topic in TOPICS:
            self.flush(topic)
