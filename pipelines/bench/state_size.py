"""What the entity stage writes: the bytes of each state value (``envelopes.Stored``), split
into the entity's features state and the rest (its delivery marks; until 2026-12-06 also the
transfer parts it kept, to send one again when a crash lost it: 69 % of the bytes). The latency bench's 500
transfers/s window, applied by the stage alone (no Kafka), flushed every 740 events (100 ms of
it), as ``state_cache`` does::

    VIGIE_DEMO=1 .venv/bin/python -m pipelines.bench.state_size [seconds]

And what each kind of state takes in memory once decoded, as the entity stage's cache of
written states holds it (``entities.Live``, its size measured by ``tracemalloc``) against its
bytes as stored: what ``vigie_state_cache{measure="stored_bytes"}`` should be multiplied by.

Printed, not written: a diagnostic for a change to what a state holds (docs/benchmarks.md).
"""
from __future__ import annotations

import asyncio
import sys
import tracemalloc

from pipelines.bench.state_cache import apply_window, window
from pipelines.kafka.tables import MemoryStore
from pipelines.stream.entities import Live
from pipelines.stream.envelopes import decode_stored


def run(events: list, partitions: int = 4) -> dict:
    table, written = MemoryStore(), {"value": [], "state": [], "marks": []}
    write = table.write

    async def measured(partition, changes):
        for value in changes.values():
            if value is not None:
                stored = decode_stored(value)
                written["value"].append(len(value))
                written["state"].append(len(stored.state))
                written["marks"].append(len(value) - len(stored.state))
        return await write(partition, changes)

    table.write = measured
    asyncio.run(apply_window(table, events, 0, partitions))
    out = {"events": len(events), "state_writes": len(written["value"]), **decoded(table)}
    for name, sizes in written.items():
        sizes.sort()
        out[f"{name}_mb"] = round(sum(sizes) / 1e6, 1)
        out[f"{name}_bytes_median_p90_max"] = (sizes[len(sizes) // 2],
                                               sizes[int(len(sizes) * 0.9)], sizes[-1])
    return out


def decoded(table: dict) -> dict:
    """Per kind of entity: how many states ``table`` holds, their mean size as stored and
    decoded (``Live.read``, what the cache keeps), in bytes, and the ratio."""
    by_kind: dict[str, list[bytes]] = {}
    for key, value in table.items():
        by_kind.setdefault(key.split(b":", 1)[0].decode(), []).append(value)
    out = {}
    tracemalloc.start()
    try:
        for kind, values in sorted(by_kind.items()):
            before = tracemalloc.get_traced_memory()[0]
            kept = [Live.read(kind, value) for value in values]
            size = tracemalloc.get_traced_memory()[0] - before
            stored = sum(map(len, values))
            out[f"decoded_{kind}"] = {"states": len(kept), "stored_mean": round(stored / len(kept)),
                                      "decoded_mean": round(size / len(kept)),
                                      "ratio": round(size / stored, 1)}
            del kept
    finally:
        tracemalloc.stop()
    return out


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    for name, value in run(window(seconds=seconds)).items():
        print(f"{name}: {value}")
