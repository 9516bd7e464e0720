"""Helpers for the streaming-decision tests: namespaced simulator logs, publishing in event-time
order, a background reader of the decisions topic, and value-for-value feature comparison.

The offline simulator's ids are deterministic and shared across seeds (``user-000001``,
``sim-t12``...), so every log published to the session broker is first *namespaced*: each
identifier (event and transfer ids, and every keyed hash) is rewritten under a per-test tag. Two
logs then touch disjoint entities and never share a transfer id, whatever their seeds.
"""
from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

import msgspec
from msgspec.structs import replace

from features.routing import order_key
from pipelines.contracts import schemas as s
from pipelines.contracts.privacy import pseudonymize

TOPIC_OF = {s.MessageSent: "messages", s.AccountEvent: "account-events",
            s.TransferRequested: "transfer-requests", s.AssistantEvent: "assistant-events",
            s.Label: "labels", s.AnalystAction: "analyst-actions", s.ModelUpdate: "model-updates"}
HASHED = {"sender": "account", "recipient": "account", "account": "account", "user": "account",
          "counterparty": "account", "conversation": "conversation", "device": "device",
          "ip": "ip", "card": "card", "bank_account": "bank_account"}
IDS = ("id", "transfer_id", "suggestion_id")


TIMES = ("ts", "known_at", "payout_due_ts", "compromise_from_ts", "compromise_to_ts")
DAY_MS = 86_400_000
_shifts: dict[str, int] = {}  # tag -> how far its log was moved in time
_next_start = [0]  # where the next log may start: after everything published before


def namespaced(events: Iterable, tag: str, shift_ms: int = 0) -> list:
    """The same log with every identifier rewritten under ``tag`` and every time moved by
    ``shift_ms`` (same shape)."""
    out = []
    for event in events:
        changes = {}
        for name in event.__struct_fields__:
            value = getattr(event, name)
            if value is None:
                continue
            if name in HASHED:
                changes[name] = pseudonymize(HASHED[name], f"{tag}/{value}")
            elif name in IDS:
                changes[name] = f"{tag}{value}"
            elif name in TIMES and shift_ms:
                changes[name] = value + shift_ms
        out.append(replace(event, **changes))
    return out


def simulated_log(out: Path, seed: int, tag: str, **kwargs) -> list:
    """Simulate offline into ``out``, read the log back, namespace it; event-time order.

    Each log is moved (by whole days) to start after the present and after every log before it
    in the session: like live traffic, what is published later is not older, which the stream's
    watermarks rely on (pipelines/stream/watermarks.py). The offline simulator starts every log
    on the same date, and the session's broker keeps what earlier tests published."""
    from pipelines.lake.event_log import read_log
    from pipelines.simulator.offline import run_offline

    run_offline(out, seed=seed, **kwargs)
    log = read_log(out)
    start, end = min(e.ts for e in log), max(max(e.ts, getattr(e, "known_at", 0)) for e in log)
    begin = max(int(time.time() * 1000), _next_start[0]) + 120_000  # room for a probe before it
    shift = _shifts[tag] = -(-(begin - start) // DAY_MS) * DAY_MS
    _next_start[0] = end + shift + 1
    return sorted(namespaced(log, tag, shift), key=order_key)


def read_labels(lake_dir: Path, tag: str) -> list[s.Label]:
    """The labels of ``simulated_log(lake_dir, ..., tag)``, namespaced and moved like it."""
    from pipelines.lake.event_log import read_topic

    return namespaced(read_topic(lake_dir, "labels"), tag, _shifts.get(tag, 0))


async def _publish(events, live: bool, on_each=None, pace_s: float = 0.0) -> None:
    from pipelines.kafka.clients import Publisher

    pub = await Publisher(linger_ms=0 if live else 5).start()
    try:
        pending = []
        for i, event in enumerate(events):
            pending.append(await pub.publish(TOPIC_OF[type(event)], event, wait=False))
            if live:  # one at a time, each acknowledged before the next: live traffic
                await asyncio.gather(*pending)
                pending = []
                if on_each is not None:
                    on_each(i, event)
                if pace_s:
                    await asyncio.sleep(pace_s)
            elif len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await pub.stop()


def publish(events, live: bool = False, on_each=None, pace_s: float = 0.0) -> None:
    """Publish ``events`` in the order given, each to its topic, keyed as the services key it.
    ``live``: one by one, each acknowledged before the next is sent (as live traffic arrives);
    otherwise all at once (a backlog). ``on_each(i, event)`` is called after each live send."""
    asyncio.run(_publish(list(events), live, on_each, pace_s))


_probe_seq = iter(range(10**9))


def hand_transfer(sender: str, recipient: str, amount_cents: int, tag: str, ts=None,
                  delay_ms: int = 30_000, **extra) -> s.TransferRequested:
    """A transfer between raw ids (hashed as the payment service hashes them), now."""
    import pipelines.services.requests as rq

    n = next(_probe_seq)
    ts = ts or int(time.time() * 1000)
    return rq.transfer_event(rq.TransferRequest(sender=sender, recipient=recipient,
                                                amount_cents=amount_cents, **extra),
                             f"{tag}-t{n}", f"{tag}-t{n}.r", ts, delay_ms)


class DecisionWatcher:
    """Follows the decisions topic (from the beginning) in a thread: ``.seen`` maps transfer id
    to [(arrival monotonic time, Decision)] for the transfer ids it was asked to watch."""

    def __init__(self, topics=("decisions",)):
        self.topics = topics
        self.seen: dict[str, list] = {}
        self.other: dict[str, list] = {}  # topic -> raw values of the other topics
        self.watched: Optional[set] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> "DecisionWatcher":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("decision watcher did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    async def _run(self) -> None:
        from pipelines.kafka.clients import consumer

        reader = consumer(*self.topics)
        await reader.start()
        self._ready.set()
        try:
            while not self._stop.is_set():
                batch = await reader.getmany(timeout_ms=100)
                now = time.monotonic()
                for tp, records in batch.items():
                    for record in records:
                        if tp.topic != "decisions":
                            with self._lock:
                                self.other.setdefault(tp.topic, []).append((now, record.value))
                            continue
                        d = msgspec.json.decode(record.value, type=s.Decision)
                        with self._lock:
                            self.seen.setdefault(d.transfer_id, []).append((now, d))
        finally:
            await reader.stop()

    def decisions(self, transfer_ids=None, shadow: bool = False) -> dict[str, list[s.Decision]]:
        with self._lock:
            items = list(self.seen.items()) if transfer_ids is None else \
                [(t, self.seen[t]) for t in transfer_ids if t in self.seen]
        return {t: [d for _, d in ds if d.shadow == shadow] for t, ds in items
                if any(d.shadow == shadow for _, d in ds)}

    def arrivals(self, transfer_id: str) -> list:
        with self._lock:
            return list(self.seen.get(transfer_id, []))

    def wait_all(self, transfer_ids, timeout: float, what: str = "decisions"):
        from process_support import wait_for

        ids = set(transfer_ids)
        wait_for(lambda: len(self.decisions(ids)) == len(ids), timeout=timeout, interval=0.5,
                 what=f"{what}: {len(ids)} transfers decided "
                      f"(got {len(self.decisions(ids))})")
        return self.decisions(ids)


def same_value(a, b) -> bool:
    """Stream value (None for NaN) vs replay value (NaN for missing): identical, bit for bit."""
    a_missing = a is None or (isinstance(a, float) and math.isnan(a))
    b_missing = b is None or (isinstance(b, float) and math.isnan(b))
    if a_missing or b_missing:
        return a_missing and b_missing
    return float(a) == float(b)


def compare_features(decided: dict[str, s.Decision], replayed: dict[str, dict]) -> list[tuple]:
    """(transfer id, feature, stream value, replay value) for every value that differs."""
    diffs = []
    for transfer_id, decision in decided.items():
        expected = replayed[transfer_id]
        if set(decision.features) != set(expected):
            diffs.append((transfer_id, "<names>", sorted(decision.features), sorted(expected)))
            continue
        for name, value in expected.items():
            if not same_value(decision.features[name], value):
                diffs.append((transfer_id, name, decision.features[name], value))
    return diffs


def replayed_features(events) -> dict[str, dict]:
    from features.replay import replay

    return {row.transfer_id: row.features for row in replay(events)}


def publish_at(records) -> None:
    """Publish (topic, event, partition) records, each to the partition given (modulo the
    topic's partition count: single-partition control topics take them all), in order."""
    from pipelines.contracts.schemas import encode
    from pipelines.kafka.clients import Publisher

    async def run():
        pub = await Publisher().start()
        try:
            for topic, event, partition in records:
                count = len(await pub.producer.partitions_for(topic))
                await pub.producer.send_and_wait(topic, encode(event), partition=partition % count)
        finally:
            await pub.stop()

    asyncio.run(run())
