"""The latency bench's hop breakdown (``pipelines/bench/hops.py``) reads the transfers out of
the stream's own records: bundles of routed events, parts bundles, watermarks left out."""
from __future__ import annotations

from collections import namedtuple

from prometheus_client import CollectorRegistry, Histogram, generate_latest

import pipelines.services.requests as rq
from pipelines.bench import hops
from pipelines.contracts import metrics, schemas
from pipelines.stream.entities import routed_for
from pipelines.stream.envelopes import BUNDLE_KEY, Part, encode, source_id
from pipelines.stream.watermarks import WATERMARK_KEY, encode_watermarks

Record = namedtuple("Record", "key value timestamp")


def _transfer(transfer_id: str):
    tr = rq.transfer_event(rq.TransferRequest(sender="alice", recipient="bob", amount_cents=500),
                           transfer_id, f"{transfer_id}.r", 1_800_000_000_000, 30_000)
    return tr, schemas.encode(tr)


def test_the_transfers_a_bundle_and_a_parts_bundle_speak_of():
    tr, raw = _transfer("t-1")
    msg = rq.message_event(rq.MessageRequest(sender="alice", recipient="bob", conversation="c",
                                             text="ça va ?"), "m-1", 1_800_000_000_000)
    routed = [r for _, r in routed_for(tr, "transfer-requests", raw,
                                       source_id("transfer-requests", 0), 3, tr.ts)]
    routed += [r for _, r in routed_for(msg, "messages", schemas.encode(msg),
                                        source_id("messages", 0), 4, msg.ts)]
    assert hops._routed(Record(BUNDLE_KEY, encode(routed), 0)) == ["t-1", "t-1"]
    assert hops._routed(Record(WATERMARK_KEY, encode_watermarks({1: 5}), 0)) == []
    parts = [Part(raw, "sender", "account", {}, 2), Part(raw, "transfer", "device", {}, 2)]
    assert hops._parts(Record(b"k", encode(parts), 0)) == ["t-1", "t-1"]


def test_each_hop_is_the_time_between_the_latest_records_at_its_ends():
    sent, bundled, parted, decided = ({"a": 0, "b": 5}, {"a": 20, "b": 30},
                                      {"a": 90, "b": 60}, {"a": 100})
    times = hops.between([sent, bundled, parted, decided], {"a", "b"})
    assert sorted(times["ingest"]) == [20, 25]
    assert sorted(times["entities"]) == [30, 70]
    assert times["decide"] == [10]  # b was not decided: left out
    summary = hops.summary(times, "9_tps")
    assert (summary["latency_hop_entities_ms_p50_at_9_tps"],
            summary["latency_hop_entities_ms_p99_at_9_tps"]) == (30, 70)


def _worker_page(read_ms: list[float], decided_ms: list[float]) -> str:
    """A metrics page as a worker serves it, with these transfers' progress."""
    registry = CollectorRegistry()
    progress = Histogram("vigie_transfer_progress_seconds", "", ["point"], registry=registry,
                         buckets=metrics.LATENCY_BUCKETS)
    decided = Histogram("vigie_decision_latency_seconds", "", registry=registry,
                        buckets=metrics.LATENCY_BUCKETS)
    for ms in read_ms:
        progress.labels("entity_read").observe(ms / 1000)
    for ms in decided_ms:
        decided.observe(ms / 1000)
    return generate_latest(registry).decode()


def test_the_points_add_up_every_workers_buckets():
    # 98 transfers read at ~40 ms, two at ~140 ms, one on each worker; 100 decided at ~180 ms
    pages = [_worker_page([40] * 98 + [140], [180] * 50), _worker_page([140], [180] * 50)]
    found = hops.points(pages, "500_tps")
    assert 25 < found["latency_point_entity_read_ms_p50_at_500_tps"] <= 50  # its bucket
    assert 100 < found["latency_point_entity_read_ms_p99_at_500_tps"] <= 150  # the slow ones
    assert 150 < found["latency_point_decided_ms_p99_at_500_tps"] <= 200
    assert "latency_point_parts_complete_ms_p50_at_500_tps" not in found  # none observed
    assert hops.points(["", ""], "500_tps") == {}  # workers that did not answer
