"""The Faust apps: the decision worker (``vigie worker``) and the lake sink (``vigie sink``), two
consumer groups over the same topics, each scaled by starting another process.

Why: docs/stream.md#app
"""
from __future__ import annotations

import gc
from pathlib import Path

import faust

from pipelines.contracts import settings as settings_mod
from pipelines.kafka.delivery import FailedDeliveries
from pipelines.kafka.faust_consumer import Transport
from pipelines.kafka.faust_metrics import instrument
from pipelines.kafka.tables import STORE_URL


def make_app(app_id: str, worker_name: str | None = None, group: str | None = None,
             fetch_max_wait_ms: int | None = None, fetch_min_bytes: int | None = None) -> faust.App:
    """A Faust app; ``group``: its stages' consumer group, when not the app id (the decision
    worker's group is its batch ingest's, docs/stream.md#ingest); ``fetch_max_wait_ms``: how
    long the broker may hold its fetches, when not Faust's 1.5 s; ``fetch_min_bytes``: how much
    data it waits for meanwhile, when not the first record (docs/stream.md#fetch-wait)."""
    conf = settings_mod.load()
    name = worker_name or conf.env.stream.worker_name
    datadir = Path(conf.state_dir) / app_id / name
    datadir.mkdir(parents=True, exist_ok=True)
    brokers = [f"kafka://{hostport}" for hostport in conf.kafka.bootstrap_servers.split(",")]
    app = faust.App(
        app_id,
        broker=brokers,
        broker_credentials=conf.kafka.faust_broker_credentials(),
        # Table state: RocksDB on local disk, one directory per worker process (two workers on
        # one machine must not share a RocksDB); the changelog topics are the durable copy.
        # Its memory is one bound for the process (tables.Memory, VIGIE_ROCKSDB_MEMORY_MB).
        store=STORE_URL,
        datadir=str(datadir),
        topic_partitions=conf.partitions,
        topic_replication_factor=conf.env.kafka.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # Fast start and fast failover. A killed worker is noticed when its session expires
        # (6 s without a heartbeat every 1 s), then the group rebalances in a few seconds:
        # well inside the 15 s budget. Faust's default of 60 s would leave partitions
        # unserved for a minute. Commits every second bound what a restart re-reads; the
        # re-read part is harmless because state updates are idempotent (offsets in state).
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
        broker_request_timeout=30.0,
        broker_commit_interval=1.0,
        stream_recovery_delay=0.0,
        # Don't wait for in-flight buffers to drain on shutdown: unacked events are
        # simply re-read by whoever owns the partition next.
        stream_wait_empty=False,
        producer_acks=-1,
        # How long a produce batch waits for more records: each hop of an event (ingest ->
        # entity-events -> transfer-parts -> decisions) can wait this long, against fewer,
        # fuller produce requests under load (see docs/benchmarks.md).
        producer_linger_ms=conf.env.stream.producer_linger_ms,
        # A produce batch holds up to 256 KB (Faust's default: 16 KB): a flush of a partition's
        # entity states is one batch of changelog records, not dozens sent one after another
        # (one batch of a partition in flight at a time). Below the broker's 1 MB a request.
        producer_max_batch_size=256 * 1024,
        table_standby_replicas=conf.env.stream.standby_replicas,
        web_enabled=False,
    )
    # Faust's aiokafka transport, but a never-committed partition is re-read from its start
    # after a rebalance instead of losing what was fetched before it (faust_consumer's doc).
    app.transport = Transport(app.conf.broker_consumer, app)
    app.transport.group = group
    app.transport.fetch_max_wait_ms = fetch_max_wait_ms
    app.transport.fetch_min_bytes = fetch_min_bytes
    app.sensors.add(FailedDeliveries())  # a record refused for good stops the process
    return instrument(app)  # Prometheus: records in, lag, the endpoint (docs/operations.md)


# Python's cyclic garbage collector, tuned for a stream worker. With its defaults (a young
# collection every 700 allocations, and each older collection walking every live object: the
# decoded entity states, the modules) it took half of the entity stage's CPU on the latency
# bench's 500 transfers/s window (``python -m pipelines.bench.state_cache``: 4.7 of 9.0 s).
# Collections now come every 50,000 allocations, the older ones rarely, and what exists once
# the app is built (modules, classes, the app) is frozen out of them; cycles are still
# collected, seconds later. docs/benchmarks.md#latency has the before and after.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """For a Faust process (``vigie worker``, ``vigie sink``), once its app is built."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
