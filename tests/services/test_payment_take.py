"""A payment instance keeps its group membership however long it takes its partitions
(pipelines/services/payment_owners.py ``Membership``), on the session's real broker.

Taking a partition fences its former owner and reads its state: seconds each. aiokafka sends no
heartbeat while a rebalance callback runs, so a take inside the callback that outlasted the
session (10 s) cost the instance its membership: the group removed it, it joined again, gave up
its partitions and took them again, and decisions read meanwhile came after the availability
delay (the fallback held transfers that were to be blocked). Here a take lasts longer than the
session; the instance must take its partitions once, give up none, and read no decision of a
partition before its take has ended.
"""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from service_support import acc, aio, publisher

from pipelines.contracts import schemas as s, settings
from pipelines.services.common import now_ms
from pipelines.services.payment_owners import Membership

pytestmark = pytest.mark.kafka
SESSION_S = 10.0  # aiokafka's default session timeout, which the payment group keeps


def a_decision(sender: str) -> s.Decision:
    return s.Decision(id=uuid.uuid4().hex, ts=now_ms(), transfer_id=uuid.uuid4().hex,
                      sender=sender, recipient=acc("take-test-payee"), amount_cents=100,
                      action="approve", score=0.1, model_version="take-test")


@aio
async def test_a_take_longer_than_the_session_keeps_the_membership_and_holds_decisions(kafka):
    takes, given_up, read = [], [], []
    took_at: list[float] = []
    sender = acc(f"take-test-{uuid.uuid4().hex[:8]}")

    async def take(partitions: set[int], of: int) -> None:
        takes.append(sorted(partitions))
        async with publisher() as pub:  # a decision waiting for this take to end
            await pub.publish("decisions", a_decision(sender))
        await asyncio.sleep(SESSION_S + 3)
        took_at.append(time.monotonic())

    async def give_up(partitions: set[int]) -> None:
        if partitions:  # the first join revokes nothing
            given_up.append(sorted(partitions))

    async def on_decision(d: s.Decision) -> None:
        if d.sender == sender:
            read.append(time.monotonic())

    membership = Membership(settings.load(), take, give_up)
    await membership.start(timeout_s=60)  # returns once the take has ended
    follow = asyncio.ensure_future(membership.follow(on_decision))
    try:
        # a member the group removed finds out at its next heartbeat (every 3 s) and rejoins
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not read:
            await asyncio.sleep(0.2)
        await asyncio.sleep(4)
        assert len(takes) == 1, f"the partitions were taken again: {takes}"
        assert given_up == [], f"the instance lost its partitions: {given_up}"
        assert len(read) == 1 and read[0] >= took_at[0], \
            "the decision was not read once, after its partition's take"
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await membership.stop()
