"""Streaming benchmarks (``vigie bench --only stream``): the ceilings of this broker and
machine, then Vigie's worker on the simulator's mixed traffic.

- ceiling_aiokafka: a plain aiokafka consume -> produce loop;
- ceiling_faust_passthrough: a bare Faust agent that forwards each event;
- pipeline: every input event of a simulated log pre-loaded, one worker started; events/s from
  its first routed event to its last decision, transfers decided per second, worker CPU an event;
- latency: the same traffic at a fixed rate, event times re-stamped to the wall clock;
  decision latency (transfer event time -> decision) percentiles;
- replay: the offline feature replay over the log;
- RSS: the worker's resident memory growth per 100k active accounts.
"""
from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from features.replay import replay
from pipelines.bench import hops
from pipelines.bench.harness import cpu_seconds, fresh_environment, median, percentile, spawn, stop
from pipelines.contracts import schemas, settings
from pipelines.contracts.settings import REPO_ROOT
from pipelines.contracts.topics import key_of
from pipelines.kafka.broker import free_port
from pipelines.lake.event_log import read_log
from pipelines.simulator.offline import run_offline
from pipelines.stream.envelopes import partition_for

CEILING_EVENTS = 150_000
TOPIC_OF = {schemas.MessageSent: "messages", schemas.AccountEvent: "account-events",
            schemas.TransferRequested: "transfer-requests", schemas.AssistantEvent: "assistant-events",
            schemas.Label: "labels"}


def _kafka_kwargs() -> dict:
    return settings.load().kafka.aiokafka_kwargs()


async def _preload(topic: str, n: int, size: int = 300) -> None:
    producer = AIOKafkaProducer(**_kafka_kwargs(), linger_ms=5)
    await producer.start()
    payload = b"x" * size
    for i in range(n):
        await producer.send(topic, payload, key=str(i % 10_000).encode())
    await producer.flush()
    await producer.stop()


async def _create(*names: str) -> None:
    admin = AIOKafkaAdminClient(**_kafka_kwargs())
    await admin.start()
    existing = set(await admin.list_topics())
    new = [NewTopic(n, settings.load().partitions, 1) for n in names if n not in existing]
    if new:
        await admin.create_topics(new)
    await admin.close()


async def _end_total(topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, **_kafka_kwargs())
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


def _rate_of_growth(topic: str, target: int, timeout: float = 600,
                    start_topic: str | None = None, checkpoint=None) -> float:
    """Records/s at which ``topic`` grows to ``target`` records, timed from the first record of
    ``start_topic`` (default: of ``topic`` itself). The pipeline is timed from its first routed
    event: the entity stage holds a backlog's transfers until every source has passed them, so
    decisions start late and timing from the first decision would flatter the rate.
    ``checkpoint``: (count, callable), called once when ``topic`` reaches count."""
    started = time.monotonic()
    while (first := asyncio.run(_end_total(start_topic or topic))) == 0:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"nothing reached {start_topic or topic}")
        time.sleep(0.05)
    t0 = time.monotonic()
    first = first if start_topic is None else 0
    while (count := asyncio.run(_end_total(topic))) < target:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{topic} stuck at {count}/{target}")
        if checkpoint is not None and count >= checkpoint[0]:
            checkpoint[1]()
            checkpoint = None
        time.sleep(0.2)
    return (count - first) / (time.monotonic() - t0)


async def _aiokafka_loop(n: int) -> float:
    consumer = AIOKafkaConsumer("bench-src", **_kafka_kwargs(), group_id="bench-aiokafka",
                                auto_offset_reset="earliest", enable_auto_commit=True)
    producer = AIOKafkaProducer(**_kafka_kwargs(), linger_ms=1)
    await consumer.start()
    await producer.start()
    seen, t0 = 0, None
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                if t0 is None:
                    t0 = time.monotonic()
                for record in records:
                    await producer.send("bench-dst-aiokafka", record.value, key=record.key)
                    seen += 1
        await producer.flush()
        return seen / (time.monotonic() - t0)
    finally:
        await consumer.stop()
        await producer.stop()


def ceilings() -> dict:
    with fresh_environment() as (_broker, root):
        asyncio.run(_create("bench-src", "bench-dst", "bench-dst-aiokafka"))
        asyncio.run(_preload("bench-src", CEILING_EVENTS))
        aiokafka_rate = asyncio.run(_aiokafka_loop(CEILING_EVENTS))
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.bench.passthrough", "worker"],
                                cwd=REPO_ROOT, stdout=open(root / "passthrough.log", "ab"),
                                stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy())
        try:
            time.sleep(2)
            cpu_before = cpu_seconds(proc.pid)
            faust_rate = _rate_of_growth("bench-dst", CEILING_EVENTS)
            faust_cpu = cpu_seconds(proc.pid) - cpu_before
        finally:
            stop(proc)
    return {"ceiling_aiokafka_events_per_s": aiokafka_rate,
            "ceiling_faust_passthrough_events_per_s": faust_rate,
            "ceiling_faust_passthrough_cpu_us_per_event": faust_cpu / CEILING_EVENTS * 1e6}


def _simulated_log(users: int, days: float) -> list:
    out = Path(tempfile.mkdtemp(prefix="vigie-bench-sim-"))
    try:
        run_offline(out, seed=13, users=users, days=days)
        return read_log(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


# The load generator's pacing step: it sends each step's records together, up to PACE_S early,
# and the producer's linger (as long) sends them as one request. Stepping by 1 ms, the records'
# batches came ready one partition at a time: ~400 produce requests a second at 100 transfers/s
# (the broker's request log), two thirds of all the broker served.
PACE_S = 0.005


async def _publish(events, rate: float | None = None, restamp: bool = False) -> None:
    """Publish input events in order; with ``rate``, paced, and with ``restamp`` their event
    times moved to the wall clock (so decision latency is measured from the send).

    The generator shares the machine's two cores with the broker and the worker, so it costs
    them as little as it can: records linger 5 ms (Kafka 4's default for Java producers) and
    are sent in steps as long (``PACE_S``), which took the broker's CPU an event at 500
    transfers/s from 62-70 µs to 40-47, the generator's from 45-57 to 23-30 (the wait counts in the
    latency measured: an event's time is stamped before it lingers); and a key's partition is
    the worker's cached murmur2 (``partition_for``), as aiokafka's partitioner would give it, not
    recomputed in pure Python for every record."""
    producer = AIOKafkaProducer(**_kafka_kwargs(), linger_ms=5)
    await producer.start()
    partitions = {topic: len(await producer.partitions_for(topic))
                  for topic in set(TOPIC_OF.values())}
    started = time.monotonic()
    try:
        for i, event in enumerate(events):
            if rate:
                # up to PACE_S early: a wake-up an event (7k a second at 500 transfers/s) cost
                # the generator CPU on the cores the broker and the worker share (and see PACE_S)
                ahead = started + i / rate - time.monotonic()
                if ahead > PACE_S:
                    await asyncio.sleep(ahead)
            if restamp:
                now = int(time.time() * 1000)
                changes = {"ts": now}
                if type(event) is schemas.TransferRequested:
                    changes["payout_due_ts"] = now + 30_000
                if type(event) is schemas.Label:
                    changes["known_at"] = now
                event = msgspec.structs.replace(event, **changes)
            topic = TOPIC_OF[type(event)]
            key = key_of(topic, event)
            await producer.send(topic, schemas.encode(event), key=key, partition=(
                partition_for(key, partitions[topic]) if key is not None else None))
        await producer.flush()
    finally:
        await producer.stop()


_MODEL_CACHE: list[Path] = []


def _train_model(root: Path) -> None:
    """The worker needs a model: train one once on a separate simulated history, then copy it
    into each fresh environment's registry and promote it there (only a promoted model acts)."""
    from models import registry

    target = settings.load().data_dir / "models"
    if not _MODEL_CACHE:
        subprocess.run([sys.executable, "-m", "pipelines.cli", "--log-level", "warning", "train",
                        "--bootstrap"], cwd=REPO_ROOT, env=os.environ.copy(), check=True,
                       stdout=subprocess.DEVNULL)
        cache = Path(tempfile.mkdtemp(prefix="vigie-bench-models-")) / "models"
        shutil.copytree(target, cache)
        _MODEL_CACHE.append(cache)
        atexit.register(shutil.rmtree, cache.parent, True)  # each bench run left one behind
    else:
        shutil.copytree(_MODEL_CACHE[0], target, dirs_exist_ok=True)
    # promoted as an operator would, on the record (and as the console principal)
    subprocess.run([sys.executable, "-m", "pipelines.cli", "--log-level", "warning", "promote",
                    registry.latest(), "--actor", "vigie-bench", "--reason", "the benchmark's model"],
                   cwd=REPO_ROOT, env=os.environ.copy(), check=True, stdout=subprocess.DEVNULL)


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _latencies(transfer_ids: set[str], timeout: float = 300) -> list[tuple[float, float]]:
    """(latency ms, when the transfer was sent, ms) of each transfer's first decision."""
    consumer = AIOKafkaConsumer("decisions", **_kafka_kwargs(), auto_offset_reset="earliest")
    await consumer.start()
    found: dict[str, tuple[float, float]] = {}
    started = time.monotonic()
    decoder = msgspec.json.Decoder(schemas.Decision)
    try:
        while len(found) < len(transfer_ids) and time.monotonic() - started < timeout:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    decision = decoder.decode(record.value)
                    if decision.transfer_id in transfer_ids and not decision.shadow:
                        found.setdefault(decision.transfer_id, (
                            decision.latency_ms, record.timestamp - decision.latency_ms))
    finally:
        await consumer.stop()
    return list(found.values())


def pipeline(users: int = 8000, days: float = 4.0, latency_rates=(1000.0, 10.0)) -> dict:
    events = [e for e in _simulated_log(users, days) if type(e) in TOPIC_OF]
    transfers = [e for e in events if type(e) is schemas.TransferRequested]
    accounts = {a for e in transfers for a in (e.sender, e.recipient)}
    # Memory per account is measured at the margin: the worker's RSS growth from a third of the
    # transfers decided to all, over the accounts first seen in between (the start-up memory,
    # model and libraries, is not per account). Transfers are decided roughly in log order.
    third = len(transfers) // 3
    early = {a for e in transfers[:third] for a in (e.sender, e.recipient)}
    rss_at_third: list[float] = []
    results = {"pipeline_log_events": len(events), "pipeline_log_transfers": len(transfers)}
    with fresh_environment() as (_broker, root):
        _train_model(root)
        asyncio.run(_publish(events))
        worker = spawn(root, "worker", "worker")
        try:
            time.sleep(3)
            cpu_before = cpu_seconds(worker.pid)
            started = time.monotonic()
            decided_rate = _rate_of_growth(
                "decisions", len(transfers), timeout=1800, start_topic="entity-events",
                checkpoint=(third, lambda: rss_at_third.append(_rss_mb(worker.pid))))
            elapsed = time.monotonic() - started
            rss_at_end = _rss_mb(worker.pid)
            results["pipeline_cpu_us_per_event"] = (cpu_seconds(worker.pid) - cpu_before) / len(events) * 1e6
            results.update(
                transfers_decided_per_s=decided_rate,
                pipeline_events_per_s=decided_rate * len(events) / len(transfers),
                pipeline_wall_s=elapsed,
                rss_mb_per_100k_accounts=(rss_at_end - rss_at_third[0])
                / len(accounts - early) * 100_000,
                rss_mb_worker_at_end=rss_at_end,
                pipeline_active_accounts=len(accounts),
            )
        finally:
            stop(worker)
    for rate in latency_rates:
        results.update(_latency_at(events, rate))
    return results


def latency_window(events: list, transfers_per_s: float, seconds: float) -> tuple[list, float]:
    """The events a latency run publishes, and their rate in events/s: ``seconds`` of traffic at
    ``transfers_per_s`` with their messages and account events, in the simulator's mix."""
    per_transfer = len(events) / sum(type(e) is schemas.TransferRequested for e in events)
    rate = transfers_per_s * per_transfer
    # from the first transfer: the log opens with sign-ups, and a slow rate's window would hold
    # none (the 10 transfers/s run once measured nothing for that reason)
    first = next(i for i, e in enumerate(events) if type(e) is schemas.TransferRequested)
    return events[first: first + int(rate * seconds)], rate


def _metrics_page(port: int) -> str:
    """A worker's metrics page ('' when it does not answer: its figures are left out)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            return page.read().decode()
    except OSError:
        return ""


def machine_demand(cpu_us: dict[str, float], events_per_s: float,
                   cores: int | None = None) -> float:
    """The share of the machine's cores a load of ``events_per_s`` asks of the processes whose
    CPU an event is ``cpu_us`` (the worker, the broker and the load generator of a latency run):
    near 1 or above, the run measures a queue the machine cannot drain, not the pipeline's path.
    On a quiet day at 500 transfers/s (7,375 events/s)::

    >>> round(machine_demand({"worker": 120, "broker": 51, "generator": 44}, 7375, cores=2), 2)
    0.79
    """
    return sum(cpu_us.values()) * events_per_s / 1e6 / (cores or os.cpu_count() or 1)


def _latency_at(events: list, transfers_per_s: float, seconds: float = 20.0,
                workers: int = 1) -> dict:
    """Decision latency with traffic at ``transfers_per_s`` (plus its messages and account
    events, in the simulator's mix), for ``seconds``, on ``workers`` workers (the figures of
    more than one are tagged ``_<n>_workers``)."""
    window, rate = latency_window(events, transfers_per_s, seconds)
    ids = {e.transfer_id for e in window if type(e) is schemas.TransferRequested}
    tag = f"{int(transfers_per_s)}_tps" + (f"_{workers}_workers" if workers > 1 else "")
    with fresh_environment() as (broker, root):
        _train_model(root)
        ports = [free_port() for _ in range(workers)]  # their metrics (hops.points)
        procs = [spawn(root, f"worker-{n}", "worker", "--name", f"w{n}",
                       env={"VIGIE_METRICS_PORT": str(port)})
                 for n, port in enumerate(ports, start=1)]
        try:
            # started and assigned before the clock runs (more workers: a rebalance or two)
            time.sleep(8 if workers == 1 else 8 + 6 * workers)
            # the workers' CPU for the window, to the last decision: the live cost of an event
            # (steadier than latency on a shared machine; a worker behind pays less an event);
            # and the broker's and the load generator's (this process, while it sends), which
            # share the machine's two cores with them
            pids = {"broker": [broker.proc.pid], "generator": [os.getpid()],
                    "worker": [p.pid for p in procs]}

            def cpu(name: str) -> float:
                return sum(cpu_seconds(pid) for pid in pids[name])
            cpu_before = {name: cpu(name) for name in pids}
            sent_at = time.monotonic()
            asyncio.run(_publish(window, rate=rate, restamp=True))
            achieved = len(window) / (time.monotonic() - sent_at)
            cpu_after = {"generator": cpu("generator")}
            decided = asyncio.run(_latencies(ids))
            cpu_after.update((name, cpu(name)) for name in ("broker", "worker"))
            cpu_us = {name: (after - cpu_before[name]) / len(window) * 1e6
                      for name, after in cpu_after.items()}
            by_hop = hops.summary(asyncio.run(hops.hop_times(ids, _kafka_kwargs())), tag)
            by_hop.update(hops.points([_metrics_page(port) for port in ports], tag))
        finally:
            for proc in procs:
                stop(proc)
    if not decided:
        return {f"latency_at_{tag}_error": "no decisions"}
    latencies = [latency for latency, _sent in decided]
    # when in the window the decisions came late: a backlog building, or a stall
    first = min(sent for _latency, sent in decided)
    by_second: dict[int, list[float]] = {}
    for latency, sent in decided:
        by_second.setdefault(int((sent - first) // 1000), []).append(latency)
    return {f"latency_ms_p99_by_second_at_{tag}": [percentile(v, 99) for _s, v in
                                                    sorted(by_second.items())],
            f"latency_ms_p50_at_{tag}": percentile(latencies, 50),
            f"latency_ms_p95_at_{tag}": percentile(latencies, 95),
            f"latency_ms_p99_at_{tag}": percentile(latencies, 99),
            f"latency_decided_share_at_{tag}": len(latencies) / len(ids),
            **{f"latency_{name}_cpu_us_per_event_at_{tag}": us for name, us in cpu_us.items()},
            f"latency_machine_demand_at_{tag}": machine_demand(cpu_us, achieved),
            **by_hop,
            f"latency_offered_events_per_s_at_{tag}": achieved}


def replay_rate(users: int = 8000, days: float = 4.0) -> dict:
    """Replay events/s in one process, and as `vigie replay` runs by default: sharded over the
    machine's cores (the headline figure)."""
    events = _simulated_log(users, days)
    workers = os.cpu_count() or 1
    rates = {}
    for n_workers in sorted({1, workers}):
        started = time.perf_counter()
        n = sum(1 for _ in replay(events, presorted=True, workers=n_workers))
        rates[n_workers] = len(events) / (time.perf_counter() - started)
    return {"replay_events_per_s": rates[workers], "replay_workers": workers,
            "replay_events_per_s_one_process": rates[1], "replay_transfers": n}


def throughput(runs: int = 2, users: int = 3000, days: float = 2.0) -> dict:
    """The worker's CPU an event and events/s on a backlog, against the aiokafka ceiling measured
    in the same run, ``runs`` times: medians, and each run's figures (the A/B of
    docs/benchmarks.md; a shorter log than ``pipeline``'s, so that two runs take minutes)."""
    keys = ("pipeline_cpu_us_per_event", "pipeline_events_per_s", "ceiling_aiokafka_events_per_s",
            "ratio_pipeline_to_aiokafka")
    each = []
    for _ in range(runs):
        figures = {**ceilings(), **pipeline(users=users, days=days, latency_rates=())}
        figures["ratio_pipeline_to_aiokafka"] = (figures["pipeline_events_per_s"]
                                                 / figures["ceiling_aiokafka_events_per_s"])
        print(figures, flush=True)
        each.append(figures)
    out = {f"{key}_runs": [round(f[key], 3) for f in each] for key in keys}
    out.update({key: median([f[key] for f in each]) for key in keys})
    out.update({key: each[0][key] for key in ("pipeline_log_events", "pipeline_log_transfers")})
    return out


def run() -> dict:
    results = {}
    for part in (ceilings, replay_rate, pipeline):
        print(f"bench: {part.__name__} …", flush=True)
        results.update(part())
        print(results, flush=True)
    if results.get("ceiling_faust_passthrough_events_per_s"):
        results["ratio_pipeline_to_faust_passthrough"] = (
            results["pipeline_events_per_s"] / results["ceiling_faust_passthrough_events_per_s"])
        results["ratio_pipeline_to_aiokafka"] = (
            results["pipeline_events_per_s"] / results["ceiling_aiokafka_events_per_s"])
    if "latency_ms_p50_at_1000_tps" in results:
        results["latency_ms_p50_at_1k_tps"] = results["latency_ms_p50_at_1000_tps"]
        results["latency_ms_p99_at_1k_tps"] = results["latency_ms_p99_at_1000_tps"]
    return results
