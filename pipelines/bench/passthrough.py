"""The ceiling for any Faust agent here: a bare pass-through from ``bench-src`` to ``bench-dst``.
Run as ``python -m pipelines.bench.passthrough``, as the benchmark's own Kafka principal (the
admin: ``harness.fresh_environment``); its topics are no component's."""
from __future__ import annotations

from faust.worker import Worker

from pipelines.stream.app import make_app

app = make_app("vigie-bench-passthrough")
source = app.topic("bench-src", key_type=bytes, value_type=bytes, key_serializer="raw",
                   value_serializer="raw")
sink = app.topic("bench-dst", key_type=bytes, value_type=bytes, key_serializer="raw",
                 value_serializer="raw")


@app.agent(source)
async def passthrough(stream):
    async for event in stream.events():
        await sink.send(key=event.key, value=event.value)


if __name__ == "__main__":
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
