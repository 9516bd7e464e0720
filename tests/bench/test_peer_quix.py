"""The peer bench's two Quix Streams shapes on the test broker, on a few records: every record
forwarded, and the per-key state counters add up to the records (no update lost). Skipped when
Quix Streams cannot be installed into build/quix-venv (its own venv, made here as `vigie bench
--only peer` makes it: ~40 s once, from PyPI)."""
from __future__ import annotations

import asyncio

import pytest

from pipelines.bench import peer_quix
from pipelines.bench.stream import _create, _end_total, _preload

NOT_INSTALLED = (f"Quix Streams could not be installed into {peer_quix.QUIX_VENV} (no PyPI?): "
                 "pip install 'quixstreams>=3,<4' into a venv of its own")
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def quix():
    python = peer_quix.quix_python(install=True)
    if python is None:
        pytest.skip(NOT_INSTALLED)
    return python

RECORDS = 3000  # preloaded as the same 1,500 keys twice: a lost update shows in the total


def test_quix_shapes_forward_every_record_and_count_each_in_state(kafka, quix, tmp_path):
    asyncio.run(_create("bench-src-quix-test", "bench-dst-quix-test"))
    for _ in range(2):
        asyncio.run(_preload("bench-src-quix-test", RECORDS // 2))

    forwarded = peer_quix.run_quix(quix, "passthrough", RECORDS, "bench-src-quix-test",
                                   "bench-dst-quix-test", tmp_path, timeout_s=90)
    assert asyncio.run(_end_total("bench-dst-quix-test")) == RECORDS
    assert forwarded["events_per_s"] > 0 and forwarded["cpu_us_per_event"] > 0

    counted = peer_quix.run_quix(quix, "state", RECORDS, "bench-src-quix-test", "", tmp_path,
                                 timeout_s=90)
    assert counted["state_total"] == RECORDS
