"""A backlog of decisions is applied in shared transactions (pipelines/services/payment_owners.py
``PartitionWriter``, group commit), on the session's real broker.

Each change of a transfer is written in a transaction of its partition's fenced writer. One
transaction a change held a backlog to about a hundred changes a second a partition: after an
outage, or at a start that adopts many requests, a fresh transfer's decision waited behind the
backlog past the availability delay, and the fallback held a transfer that was to be blocked
(the stream's end-to-end test failed that way). Here a burst of decisions for pending transfers
must be applied in far fewer transactions than changes.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY
from service_support import aio, publisher, rid

from tests.services.test_payment_scaleout import instance
from tests.services.test_services import decide, send_money, transfer

pytestmark = pytest.mark.kafka
TRANSFERS = 200


def transactions_and_changes() -> tuple[float, float]:
    name = "vigie_payment_transaction_changes"
    return (REGISTRY.get_sample_value(f"{name}_count") or 0.0,
            REGISTRY.get_sample_value(f"{name}_sum") or 0.0)


@aio
async def test_a_burst_of_decisions_shares_transactions(kafka, monkeypatch):
    monkeypatch.setenv("VIGIE_AVAILABILITY_DELAY_S", "300")  # no deadline in the way
    async with instance() as (service, client):
        created = await asyncio.gather(*(send_money(client, rid("backlog")) for _ in range(TRANSFERS)))
        views = [await transfer(client, c["transfer_id"]) for c in created]
        before = transactions_and_changes()
        started = time.monotonic()
        async with publisher() as pub:  # a burst, as a backlog is read
            await asyncio.gather(*(decide(pub, view, "approve") for view in views))
        ids = [v["transfer_id"] for v in views]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(service.transfers[i].status == "approved" for i in ids):
                break
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        statuses = {service.transfers[i].status for i in ids}
        assert statuses == {"approved"}, f"not all applied in 60 s: {statuses}"
        transactions, changes = (a - b for a, b in zip(transactions_and_changes(), before))
        print(f"{TRANSFERS} decisions applied in {took:.2f} s: {changes:.0f} changes in "
              f"{transactions:.0f} transactions")
        assert changes == TRANSFERS
        assert transactions <= TRANSFERS / 5, \
            f"{transactions:.0f} transactions for {changes:.0f} changes: not shared"
