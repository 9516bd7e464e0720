"""Foundation figures: broker start, worker start to first processed event, failover,
lake sink throughput, offline simulator throughput (``vigie bench --only foundation``)."""
from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from pathlib import Path

from aiokafka.structs import TopicPartition

import pipelines.services.requests as rq
from pipelines.bench.harness import fresh_environment, median, spawn, stop
from pipelines.contracts import schemas, settings
from pipelines.kafka.broker import EmbeddedKafka, free_port
from pipelines.kafka.clients import Publisher, consumer
from pipelines.lake import parquet as lake
from pipelines.simulator.offline import run_offline

BAD = b'{"not": "an event"}'


async def _end_offsets(topic: str) -> int:
    reader = consumer()
    await reader.start()
    try:
        parts = [TopicPartition(topic, p) for p in await _partitions(reader, topic)]
        return sum((await reader.end_offsets(parts)).values())
    finally:
        await reader.stop()


async def _partitions(reader, topic):
    await reader._client.force_metadata_update()
    return sorted(reader.partitions_for_topic(topic) or [])


async def _send_bad_to_every_partition(topic: str = "messages") -> int:
    pub = await Publisher().start()
    try:
        n = settings.load().partitions
        for p in range(n):
            await pub.producer.send_and_wait(topic, BAD, partition=p)
        return n
    finally:
        await pub.stop()


def _wait_dead_letters(target: int, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if asyncio.run(_end_offsets("dead-letters")) >= target:
            return time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError(f"dead letters did not reach {target}")


def broker_start(runs: int = 3) -> dict:
    cold, warm = [], []
    for _ in range(runs):
        log_dir = Path(tempfile.mkdtemp(prefix="vigie-broker-"))
        port = free_port()
        t = time.monotonic()
        broker = EmbeddedKafka(port, log_dir, log_dir / "secrets").start()
        cold.append(time.monotonic() - t)
        broker.stop()
        t = time.monotonic()
        broker = EmbeddedKafka(port, log_dir, log_dir / "secrets").start()
        warm.append(time.monotonic() - t)
        broker.stop()
    return {"broker_cold_start_s_median": median(cold), "broker_restart_s_median": median(warm)}


def worker_start_and_failover(runs: int = 3) -> dict:
    starts, failovers = [], []
    with fresh_environment() as (_broker, root):
        expected = 0
        for i in range(runs):
            expected += asyncio.run(_send_bad_to_every_partition())
            t = time.monotonic()
            worker = spawn(root, f"worker-start-{i}", "worker")
            _wait_dead_letters(expected)
            starts.append(time.monotonic() - t)
            stop(worker)
        for i in range(runs):
            a = spawn(root, f"fo-a{i}", "worker", "--name", f"a{i}")
            b = spawn(root, f"fo-b{i}", "worker", "--name", f"b{i}")
            time.sleep(8)  # both joined and own a share of the partitions
            expected += asyncio.run(_send_bad_to_every_partition())
            _wait_dead_letters(expected)
            stop(a, signal.SIGKILL)  # kill -9: no goodbye to the group
            t = time.monotonic()
            expected += asyncio.run(_send_bad_to_every_partition())
            _wait_dead_letters(expected, timeout=120)
            failovers.append(time.monotonic() - t)
            stop(b)
    return {"worker_start_to_first_event_s_median": median(starts),
            "worker_start_to_first_event_s_runs": starts,
            "failover_killed_worker_s_median": median(failovers),
            "failover_killed_worker_s_runs": failovers}


def sink_throughput(n: int = 200_000) -> dict:
    with fresh_environment() as (_broker, root):
        event = rq.message_event(rq.MessageRequest(sender="a", recipient="b", conversation="c",
                                                   text="on partage ? 20€"), "x", 1_790_000_000_000)

        async def produce():
            pub = await Publisher().start()
            for i in range(n):
                e = schemas.MessageSent(**{**{f: getattr(event, f) for f in event.__struct_fields__},
                                           "id": f"b{i}", "ts": event.ts + i})
                await pub.producer.send("messages", schemas.encode(e), key=str(i % 64).encode())
            await pub.producer.flush()
            await pub.stop()

        asyncio.run(produce())
        lake_dir = settings.load().lake_dir
        count = lambda: lake.connect(lake_dir, ["messages"]).execute(  # noqa: E731
            "SELECT count(*) FROM messages").fetchone()[0]
        sink = spawn(root, "sink", "sink")
        while (first := count()) == 0:
            time.sleep(0.1)
        t0 = time.monotonic()
        while (last := count()) < n:
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        stop(sink)
    return {"lake_sink_events_per_s": (last - first) / elapsed if elapsed else float("nan"),
            "lake_sink_events": n}


def offline_simulator() -> dict:
    rates = []
    for _ in range(3):
        stats = run_offline(Path(tempfile.mkdtemp(prefix="vigie-sim-")), seed=7)
        rates.append(stats["events_per_s"])
    return {"offline_simulator_events_per_s_median": median(rates),
            "offline_simulator_events": stats["events"]}


def run() -> dict:
    results = {}
    for part in (broker_start, worker_start_and_failover, sink_throughput, offline_simulator):
        print(f"bench: {part.__name__} …", flush=True)
        results.update(part())
        print({k: v for k, v in results.items()}, flush=True)
    return results
