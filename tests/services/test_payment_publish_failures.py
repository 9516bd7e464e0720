"""The payment service never acts on a state the log does not have: while the broker refuses
its records (for real: the topics' ``max.message.bytes`` is set below any record's size), a
new transfer gets a 503 and does not exist, a decision and a due payout are not applied, and
memory keeps what the log has. Once the broker takes records again, the changes that failed
are made, in order, and memory equals what a fresh instance rebuilds from the log.

A broker of its own (``own_broker``, tests/conftest.py): the refusal is a topic setting,
which the session's broker must not see.
"""
from __future__ import annotations

import asyncio
import types
from collections import Counter

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from service_support import Tap, aio, as_user, eventually, publisher, rid, serving

from pipelines.contracts import settings
from pipelines.services import payment
from pipelines.services.common import now_ms
from tests.services.test_services import decide, send_money, transfer

pytestmark = pytest.mark.kafka
REFUSING = ("transfer-requests", "transfer-status")


async def refuse_records(refuse: bool) -> None:
    """Make the broker refuse (or take again) every record on the payment's own topics."""
    # bytes: below any of the payment's records (300 B and more) but above a transaction's
    # commit or abort marker (about 80 B: the broker must still be able to end a transaction);
    # the second is the broker's default
    limit = "200" if refuse else "1048588"
    admin = AIOKafkaAdminClient(**settings.load().kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                  configs={"max.message.bytes": limit})
                                   for topic in REFUSING])
    finally:
        await admin.close()
    await asyncio.sleep(1.0)  # the broker applies a topic setting from its metadata log


def as_served(service: payment.Payment):
    return types.SimpleNamespace(build_app=service.app)


def logged(tap: Tap, transfer_id: str) -> list[dict]:
    """A transfer's history as the log has it."""
    return [{"status": e.status, "ts": e.ts, "reason": e.reason}
            for e in tap.events("transfer-status") if e.transfer_id == transfer_id]


@aio
async def test_a_refused_publish_never_leaves_memory_ahead_of_the_log(own_broker, monkeypatch):
    monkeypatch.setenv("VIGIE_AVAILABILITY_DELAY_S", "6")  # room to start refusing before it
    service = payment.Payment()
    async with Tap(*REFUSING) as tap, publisher() as pub:
        async with serving(as_served(service)) as client:
            async def new_transfer() -> dict:
                return await transfer(client, (await send_money(client, rid()))["transfer_id"])
            paid = await new_transfer()  # approved, then due while refused
            late = await new_transfer()  # its decision comes while refused
            await decide(pub, paid, "approve")

            async def approved():
                return (await transfer(client, paid["transfer_id"]))["status"] == "approved"
            await eventually(approved)

            await refuse_records(True)
            sender = rid()
            resp = await client.post("/v1/transfers", json={
                "sender": sender, "recipient": rid(), "amount_cents": 100,
                "card_number": "4111111111111111"}, headers=as_user(sender))
            assert resp.status == 503 and resp.headers["Retry-After"] == "1"  # when to try again
            assert (await resp.json()) == {"error": "event log unavailable, retry later"}
            assert set(service.transfers) == {paid["transfer_id"], late["transfer_id"]}

            await decide(pub, late, "approve")
            # Past both payout times, with ticks to spare: nothing may have moved in memory.
            await asyncio.sleep(max(0, paid["payout_due_ts"] - now_ms()) / 1000 + 2.0)
            await tap.drain()
            for t, expected in ((paid, ["pending", "approved"]), (late, ["pending"])):
                seen = await transfer(client, t["transfer_id"])
                assert [h["status"] for h in seen["history"]] == expected
                assert seen["history"] == logged(tap, t["transfer_id"])
            assert service.retries, "the refused decision waits to be tried again"

            await refuse_records(False)

            async def converged():
                await tap.drain()
                views = {t["transfer_id"]: await transfer(client, t["transfer_id"])
                         for t in (paid, late)}
                done = all(v["status"] == "paid_out" for v in views.values())
                return views if done else None
            views = await eventually(converged, timeout=20)
            assert [h["status"] for h in views[late["transfer_id"]]["history"]] == [
                "pending", "approved", "paid_out"]  # the decision was not lost
            for transfer_id, view in views.items():
                assert view["history"] == logged(tap, transfer_id)
            assert (await send_money(client, rid()))["status"] == "pending"  # a retry creates

        # A fresh instance, from the log alone, sees what the first one had in memory.
        async with serving(payment) as fresh:
            for transfer_id, view in views.items():
                assert await transfer(fresh, transfer_id) == view

        await tap.drain()
        statuses = tap.events("transfer-status")
        payouts = Counter(e.transfer_id for e in statuses if e.status == "paid_out")
        assert payouts == {paid["transfer_id"]: 1, late["transfer_id"]: 1}
        assert len({e.id for e in statuses}) == len(statuses), "a status id published twice"
        assert len(tap.events("transfer-requests")) == 3  # the refused one never reached the log
