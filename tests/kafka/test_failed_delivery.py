"""A record the broker refuses stops the worker before the flush that waited for it returns, so
before anything is committed or written after it (pipelines/kafka/delivery.py): on the real
broker, with a record over its topic's ``max.message.bytes`` (refused at once, not retried)."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipelines.contracts import settings
from pipelines.kafka import delivery
from pipelines.kafka.tables import raw_topic

pytestmark = pytest.mark.kafka


async def _send_then_flush(size: int, direct: bool = False) -> tuple[list[str], list[str]]:
    """Send one record of ``size`` bytes through a worker app's topic whose records may hold
    1 KB (``direct``: with a ``delivery.Sender``), then flush: (what stopped the process before
    the flush returned, after)."""
    from pipelines.stream.app import make_app

    kwargs, name = settings.load().kafka.aiokafka_kwargs(), f"t-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    await admin.create_topics([NewTopic(name, 1, 1, topic_configs={"max.message.bytes": "1024"})])
    await admin.close()
    app = make_app(f"t-{name}")
    await app.maybe_start_producer()
    try:
        if direct:
            await delivery.Sender(app, name).send(key=b"k", value=b"x" * size)
        else:
            await raw_topic(app, name).send(key=b"k", value=b"x" * size)
        await app.producer.flush()
        before = list(STOPPED)
        await asyncio.sleep(0.5)
        return before, list(STOPPED)
    finally:
        await app.producer.stop()


STOPPED: list[str] = []


@pytest.fixture
def stops(monkeypatch):
    STOPPED.clear()
    monkeypatch.setattr(delivery, "stop", lambda what, error: STOPPED.append(what))
    return STOPPED


def test_a_refused_record_stops_the_worker_before_its_flush_returns(kafka, stops):
    before, after = asyncio.run(_send_then_flush(4096))
    assert len(before) == 1 and before[0].startswith("a record to t-")
    assert after == before


@pytest.mark.parametrize("direct", [False, True], ids=["faust", "sender"])
def test_a_delivered_record_stops_nothing(kafka, stops, direct):
    assert asyncio.run(_send_then_flush(100, direct)) == ([], [])


def test_a_record_refused_past_faust_stops_the_worker_too(kafka, stops):
    before, after = asyncio.run(_send_then_flush(4096, direct=True))
    assert len(before) == 1 and before[0].startswith("a record to t-")
    assert after == before


def test_stop_exits_at_once_with_its_code():
    run = subprocess.run([sys.executable, "-c", "import logging; logging.basicConfig(); "
                          "from pipelines.kafka import delivery; "
                          "delivery.stop('a record', ValueError('refused')); print('went on')"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == delivery.EXIT_CODE
    assert "went on" not in run.stdout
    assert "a record not delivered" in run.stderr
