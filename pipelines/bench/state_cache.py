"""How often the entity stage reads a state back from RocksDB, and its CPU and the garbage
collector's share of it, with and without keeping written states decoded (``entities.Recent``),
with Python's default collection thresholds and with the worker's
(``stream.app.GC_THRESHOLDS``): the latency bench's 500 transfers/s window, applied by the stage
alone (no Kafka), flushed every 740 events (100 ms of it)::

    VIGIE_DEMO=1 .venv/bin/python -m pipelines.bench.state_cache [users] [size,size,...]
"""
from __future__ import annotations

import asyncio
import gc
import sys
import time

from pipelines.bench.stream import TOPIC_OF, _simulated_log, latency_window
from pipelines.contracts import schemas
from pipelines.kafka.tables import MemoryStore
from pipelines.stream.app import GC_THRESHOLDS
from pipelines.stream.entities import EntityStage, routed_for
from pipelines.stream.envelopes import partition_for, source_id

FLUSH_EVERY = 740  # events: 100 ms at the 500 transfers/s window's 7.4k events/s


def window(users: int = 8000, transfers_per_s: float = 500.0, seconds: float = 20.0) -> list:
    """The events ``stream._latency_at`` publishes."""
    events = [e for e in _simulated_log(users, 4.0) if type(e) in TOPIC_OF]
    return latency_window(events, transfers_per_s, seconds)[0]


async def apply_window(table, events: list, recent: int, partitions: int = 4) -> int:
    """Apply ``events`` with an ``EntityStage`` on ``table`` (parts and derived events sent
    nowhere), its states written every ``FLUSH_EVERY`` events; returns the routed events."""
    async def nothing(key, value):
        pass

    stage, applied = EntityStage(table, nothing, nothing, recent=recent), 0
    for i, event in enumerate(events):
        topic = TOPIC_OF[type(event)]
        for key, routed in routed_for(event, topic, schemas.encode(event),
                                      source_id(topic, 0), i, event.ts):
            applied += 1
            await stage.apply(routed, partition_for(key, partitions), i)
        if i % FLUSH_EVERY == 0:
            await stage.write_states()
    await stage.write_states()
    return applied


def run(events: list, size: int, partitions: int = 4) -> dict:
    table, reads, applied = MemoryStore(), [0], [0]
    read = table.read

    def counted(partition, key):
        reads[0] += 1
        return read(partition, key)

    table.read = counted

    async def go():
        applied[0] = await apply_window(table, events, size, partitions)

    collecting, started = [0.0], [0.0]

    def timed(phase, _info):
        if phase == "start":
            started[0] = time.process_time()
        else:
            collecting[0] += time.process_time() - started[0]

    gc.callbacks.append(timed)
    cpu = time.process_time()
    try:
        asyncio.run(go())
    finally:
        gc.callbacks.remove(timed)
    return {"cache": size, "gc_thresholds": gc.get_threshold(), "entities": len(table),
            "events": len(events), "read_share": round(reads[0] / applied[0], 3),
            "stage_cpu_s": round(time.process_time() - cpu, 2),
            "gc_cpu_s": round(collecting[0], 2)}


if __name__ == "__main__":
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    sizes = [int(s) for s in sys.argv[2].split(",")] if len(sys.argv) > 2 else [0, 5000, 20000]
    events = window(users)
    default = gc.get_threshold()
    for thresholds in (default, GC_THRESHOLDS):
        gc.set_threshold(*thresholds)
        for size in sizes:
            print(run(events, size), flush=True)
    gc.set_threshold(*default)
