"""Faust's stateful shape for the peer bench (``peer_quix``): one table update per record, a
counter per key in a RocksDB table with its changelog, read from ``bench-src``. Run as
``python -m pipelines.bench.faust_counter worker``, as the benchmark's own Kafka principal (the
admin); each update sends one record to ``vigie-bench-counter-counts-changelog``, whose growth
the bench times."""
from __future__ import annotations

from faust.worker import Worker

from pipelines.stream.app import make_app

app = make_app("vigie-bench-counter")
source = app.topic("bench-src", key_type=bytes, value_type=bytes, key_serializer="raw",
                   value_serializer="raw")
counts = app.Table("counts", default=int, key_type=str, value_type=int)


@app.agent(source)
async def count(stream):
    async for event in stream.events():
        counts[event.key.decode()] += 1


if __name__ == "__main__":
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
