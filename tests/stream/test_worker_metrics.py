"""Operators' metrics on the real broker: a worker subprocess serves Prometheus metrics on its
port; after transfers through the payment service (in process) and one bad record, the scrape
shows records in by topic, decisions by action, the latency histogram, a dead letter by reason
class and the consumer lag; the payment service's /metrics shows its requests and the wait for
decisions."""
from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from recovery_support import worker_started
from service_support import Tap, aio, as_internal, as_user, eventually, publisher, rid, serving

from pipelines.contracts.metrics import TRANSFER_POINTS
from pipelines.kafka.broker import free_port
from pipelines.services import payment

pytestmark = pytest.mark.kafka


def scrape(url: str) -> dict[str, list]:
    """metric sample name -> [(labels, value)]"""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(found: dict, name: str, **labels) -> float:
    return sum(value for have, value in found.get(name, [])
               if all(have.get(k) == v for k, v in labels.items()))


@aio
async def test_a_running_worker_serves_decisions_latency_lag_and_dead_letters(kafka, processes,
                                                                             monkeypatch):
    port = free_port()
    monkeypatch.setenv("VIGIE_METRICS_PORT", str(port))  # the worker subprocess inherits it
    url = f"http://127.0.0.1:{port}/metrics"
    async with Tap("decisions") as tap, publisher() as pub, serving(payment) as pay:
        await worker_started(tap, pay, processes)
        ids = []
        for amount in (1_500, 2_000, 90_000, 250):
            sender = rid()
            resp = await pay.post("/v1/transfers", json={"sender": sender, "recipient": rid(),
                                                         "amount_cents": amount},
                                  headers=as_user(sender))
            assert resp.status == 201, await resp.text()
            ids.append((await resp.json())["transfer_id"])
        await pub.producer.send_and_wait("transfer-requests", b"{not json", key=b"k")
        await tap.until(lambda t: {d.transfer_id for d in t.events("decisions")} >= set(ids), 60)

        async def scraped():
            found = scrape(url)
            wanted = (total(found, "vigie_decisions_total", shadow="false") >= 5
                      and total(found, "vigie_dead_letters_total", reason="bad_json") >= 1
                      and "vigie_consumer_lag" in found)
            return found if wanted else None
        found = await eventually(scraped, 30)

        acting = {labels["action"]: value for labels, value in found["vigie_decisions_total"]
                  if labels["shadow"] == "false"}
        decided = [d for d in tap.events("decisions") if not d.shadow]
        assert sum(acting.values()) >= len(decided) >= 5  # the warm-up's and ours
        assert set(acting) >= {d.action for d in decided}
        assert total(found, "vigie_decision_latency_seconds_count") >= 5
        assert total(found, "vigie_decision_latency_seconds_sum") > 0
        # each transfer's way to its decision: every point reached, each no later than the next
        counts = [total(found, "vigie_transfer_progress_seconds_count", point=point)
                  for point in TRANSFER_POINTS]
        assert min(counts) >= 5, counts
        sums = [total(found, "vigie_transfer_progress_seconds_sum", point=point)
                for point in TRANSFER_POINTS]
        assert 0 < sums[0] <= sums[1] <= sums[2] <= total(
            found, "vigie_decision_latency_seconds_sum"), sums
        assert total(found, "vigie_events_in_total", topic="transfer-requests") >= 6
        assert all(labels["topic"] and value >= 0 for labels, value in found["vigie_consumer_lag"])

        resp = await pay.get("/metrics", headers=as_internal("prometheus"))
        assert resp.status == 200
        text = await resp.text()
        service = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples
                   if s.labels.get("route") == "/v1/transfers" and s.labels.get("status") == "201"}
        assert service["vigie_http_requests_total"].value >= 5
        waits = [s.value for f in text_string_to_metric_families(text) for s in f.samples
                 if s.name == "vigie_payment_decision_wait_seconds_count"]
        assert waits and waits[0] >= 5
