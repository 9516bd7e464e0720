"""Privacy by design: the simulator's message texts and raw identifiers (accounts, devices,
IPs, card numbers, IBANs, conversations) reach no Kafka topic, no Parquet file and no log."""
from __future__ import annotations

import asyncio
import time

import msgspec
import pyarrow.parquet as pq
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from process_support import wait_for

import pipelines.services.requests as rq
from pipelines.contracts import settings
from pipelines.kafka.broker import free_port
from pipelines.kafka.clients import consumer
from pipelines.lake import parquet as lake
from pipelines.simulator import live

pytestmark = pytest.mark.kafka
RAW_FIELDS = ("sender", "recipient", "conversation", "account", "device", "ip", "card_number",
              "bank_account", "user", "reporter", "reported")


def _secrets_of(command) -> set[str]:
    """The raw identifiers and text a simulator request carries."""
    request = getattr(command, "request", command)
    found = set()
    if isinstance(request, msgspec.Struct):
        for field in RAW_FIELDS:
            value = getattr(request, field, None)
            if isinstance(value, str) and len(value) >= 6:
                found.add(value)
                if field == "card_number":
                    found.add(value.replace(" ", ""))
        if isinstance(request, rq.MessageRequest):
            found.add(request.text)
    user = getattr(command, "user", None)
    if isinstance(user, str):
        found.add(user)
    return found


async def _all_topic_bytes() -> bytes:
    conf = settings.load()
    admin = AIOKafkaAdminClient(**conf.kafka.aiokafka_kwargs())
    await admin.start()
    names = [t for t in await admin.list_topics() if not t.startswith("__")]
    await admin.close()
    reader = consumer(*names, conf=conf)
    await reader.start()
    chunks = []
    try:  # up to the end offsets of now: the stream keeps writing (watermarks) while it runs
        while not reader.assignment():
            await asyncio.sleep(0.1)
        ends = await reader.end_offsets(list(reader.assignment()))
        left = {tp: end for tp, end in ends.items() if end > 0}
        while left:
            batch = await reader.getmany(timeout_ms=3000, max_records=50_000)
            for tp, records in batch.items():
                chunks += [(r.key or b"") + b"\0" + (r.value or b"") for r in records
                           if r.offset < ends[tp]]
            # by position, not by the last record's offset: a transactional topic's (the
            # payment service's) last offsets are commit markers, which no record carries
            done = [tp for tp in left if await reader.position(tp) >= left[tp]]
            assert batch or done, f"no records before the end offsets of {sorted(map(str, left))}"
            for tp in done:
                left.pop(tp)
    finally:
        await reader.stop()
    return b"\n".join(chunks)


def _lake_text(lake_dir) -> str:
    parts = []
    for path in lake_dir.rglob("*.parquet"):
        for row in pq.read_table(path).to_pylist():
            parts += [str(v) for v in row.values() if v is not None]
    return "\n".join(parts)


def test_no_text_or_raw_identifier_leaves_the_services(kafka, processes, tmp_path, monkeypatch):
    ports = {name: free_port() for name in ("messaging", "payment", "assistant")}
    env = {f"VIGIE_{name.upper()}_PORT": str(port) for name, port in ports.items()}
    for name in ports:
        processes.start(name, "serve", name, env=env)
    processes.start("worker", "worker")
    processes.start("sink", "sink")
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    import aiohttp

    async def healthy():
        async with aiohttp.ClientSession() as session:
            for url in urls.values():
                try:
                    async with session.get(f"{url}/healthz") as resp:
                        if resp.status != 200:
                            return False
                except aiohttp.ClientError:
                    return False
        return True

    wait_for(lambda: asyncio.run(healthy()), timeout=60, what="the services to be healthy")

    secrets: set[str] = set()
    original = live.ServiceClient.handle

    async def recording(self, command):
        secrets.update(_secrets_of(command))
        return await original(self, command)

    monkeypatch.setattr(live.ServiceClient, "handle", recording)
    stats = asyncio.run(live.run_live(seed=11, rate=80, duration_s=25, urls=urls, users=120))
    refused = {e: n for e, n in stats["errors"].items() if e.endswith((" 401", " 403"))}
    assert not refused, f"the simulator's tokens were refused: {refused}"
    texts = {s for s in secrets if " " in s}
    assert len(texts) > 20 and len(secrets) > 100, "the simulator sent too little to prove anything"

    lake_dir = settings.load().lake_dir
    view = lambda: lake.connect(lake_dir, ["messages"]).execute(  # noqa: E731
        "SELECT count(*) FROM messages").fetchone()[0]
    wait_for(lambda: view() > 0, timeout=30, what="messages in the lake")
    time.sleep(3)  # let the sink flush what is in flight

    haystacks = {
        "kafka": asyncio.run(_all_topic_bytes()).decode("utf-8", errors="replace"),
        "lake": _lake_text(lake_dir),
        "logs": "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log")),
    }
    assert len(haystacks["kafka"]) > 10_000 and len(haystacks["lake"]) > 10_000
    leaks = {where: sorted(s for s in secrets if s in text)[:5] for where, text in haystacks.items()}
    assert leaks == {"kafka": [], "lake": [], "logs": []}
