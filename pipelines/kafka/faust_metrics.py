"""Prometheus metrics of a Faust app (the worker, the lake sink): records read by topic (a Faust
sensor), consumer lag per owned partition (from Faust's own monitor: the end offset it last
fetched minus the offset it last committed), RocksDB memory, and the endpoint, started with the
app.

The names are in pipelines/contracts/metrics.py; docs/operations.md says how to scrape them."""
from __future__ import annotations

import faust

from pipelines.contracts import metrics
from pipelines.kafka import tables

LAG_EVERY_S = 5.0


class EventsIn(faust.Sensor):
    """Counts every record the app's consumer hands on (one counter child per topic, kept)."""

    def __init__(self):
        super().__init__()
        self.by_topic: dict = {}

    def on_message_in(self, tp, offset, message) -> None:
        counter = self.by_topic.get(tp.topic)
        if counter is None:
            counter = self.by_topic[tp.topic] = metrics.EVENTS_IN.labels(tp.topic)
        counter.inc()


def instrument(app: faust.App) -> faust.App:
    """Count ``app``'s records and lag, and serve the metrics once the app runs (importing the
    app, e.g. ``faust -A``, opens no port)."""
    app.sensors.add(EventsIn())

    shown: set[tuple[str, str]] = set()

    @app.timer(LAG_EVERY_S, name=f"{app.conf.id}.metrics-lag")
    async def consumer_lag():
        monitor, now = app.monitor, set()
        for tp in app.consumer.assignment():
            end = monitor.tp_end_offsets.get(tp)
            if end is not None:
                labels = (tp.topic, str(tp.partition))
                lag = max(0, end - monitor.tp_committed_offsets.get(tp, 0))
                metrics.CONSUMER_LAG.labels(*labels).set(lag)
                now.add(labels)
        rocks = tables.current_memory()
        if rocks is not None:  # a process with tables: what its bound holds now
            for kind, used in rocks.usage().items():
                metrics.ROCKSDB_MEMORY.labels(kind).set(used)
        for labels in shown - now:  # given away in a rebalance: no longer this process's lag
            metrics.CONSUMER_LAG.remove(*labels)
        shown.clear()
        shown.update(now)

    @app.task
    async def serve_metrics():
        metrics.serve()

    return app
