"""The sender calls a transfer off (``POST /v1/transfers/{id}/cancel``), on the session's real
broker: only the sender, only before the payout, once; the cancellation is in the log, so a
restart and the lake (and the console's queue, which reads the latest status) see it."""
from __future__ import annotations

import asyncio

import pytest
from service_support import Tap, aio, as_user, eventually, publisher, rid, serving

from dashboards.common import HELD_SQL
from pipelines.contracts.topics import decode
from pipelines.lake import parquet as lake
from pipelines.services import payment
from tests.services.test_services import SENDERS, decide, send_money, settled, transfer

pytestmark = pytest.mark.kafka


@pytest.fixture
def slow_payout(monkeypatch):
    # long enough to cancel before the payout, short enough to see one happen in a test
    monkeypatch.setenv("VIGIE_AVAILABILITY_DELAY_S", "4")
    monkeypatch.setenv("VIGIE_WARN_COOLING_OFF_S", "6")


async def cancel(client, transfer_id: str, who: str | None = None, key: str | None = None):
    headers = as_user(who or SENDERS[transfer_id])
    if key is not None:
        headers["Idempotency-Key"] = key
    resp = await client.post(f"/v1/transfers/{transfer_id}/cancel", headers=headers)
    return resp.status, await resp.json(), resp.headers


async def statuses(client, transfer_id: str) -> list[str]:
    return [h["status"] for h in (await transfer(client, transfer_id))["history"]]


async def reached(client, transfer_id: str, status: str) -> None:
    async def there():
        return (await statuses(client, transfer_id))[-1] == status
    await eventually(there, timeout=20)


@aio
async def test_the_sender_cancels_a_warned_transfer_and_it_is_never_paid_out(kafka, slow_payout):
    async with Tap("transfer-status") as tap, publisher() as pub, serving(payment) as client:
        made = await send_money(client, rid())
        tid = made["transfer_id"]
        await decide(pub, await transfer(client, tid), "warn")
        await reached(client, tid, "warned")
        stranger = await cancel(client, tid, who=rid())
        first = await cancel(client, tid, key="k1")
        again = await cancel(client, tid)  # no key: the state answers the same
        replayed = await cancel(client, tid, key="k1")
        await asyncio.sleep(6.5)  # past the delay and cooling-off: a payout would have happened
        history = await statuses(client, tid)
        await tap.drain()
    # restarted, the service reads the cancellation back from the log
    async with serving(payment) as client:
        rebuilt = await statuses(client, tid)
        after_restart = await cancel(client, tid)
    assert stranger[:2] == (403, {"error": "the token is for another user"})
    assert first[0] == 200 and first[1]["status"] == "cancelled" and first[1]["transfer_id"] == tid
    assert again[:2] == replayed[:2] == after_restart[:2] == first[:2]
    assert replayed[2].get("Idempotent-Replayed") == "true"
    assert history == rebuilt == ["pending", "warned", "cancelled", "returned"]
    logged = [(e.status, e.reason) for e in tap.events("transfer-status") if e.transfer_id == tid]
    assert logged == [("pending", ""), ("warned", "decision:warn model=lgbm-1"),
                      ("cancelled", "cancelled by the sender"),
                      ("returned", "cancelled: money back to the sender")]


@aio
async def test_no_cancel_after_the_payout_or_a_block_and_a_held_one_leaves_the_held_list(
        kafka, slow_payout, tmp_path):
    topics = ("transfer-requests", "decisions", "transfer-status")
    async with Tap(*topics) as tap, publisher() as pub, serving(payment) as client:
        ids = {name: (await send_money(client, rid()))["transfer_id"]
               for name in ("pending", "paid", "blocked", "held", "kept")}
        pending = await cancel(client, ids["pending"])  # undecided, before its deadline
        for name, action in (("paid", "approve"), ("blocked", "block"), ("held", "hold"),
                             ("kept", "hold")):
            await decide(pub, await transfer(client, ids[name]), action)
        await settled(client, {n: ids[n] for n in ("paid", "blocked", "held", "kept")},
                      {"paid": "paid_out", "blocked": "returned", "held": "held", "kept": "held"})
        paid, blocked = await cancel(client, ids["paid"]), await cancel(client, ids["blocked"])
        held = await cancel(client, ids["held"])
        # an analyst's release after the cancellation moves no money
        await decide(pub, await transfer(client, ids["held"]), "approve", model="analyst:bob")
        await asyncio.sleep(1.0)
        histories = {name: await statuses(client, tid) for name, tid in ids.items()}
        await tap.drain()
    assert paid[:2] == (409, {"error": "cannot cancel: the transfer is paid_out"})
    assert blocked[:2] == (409, {"error": "cannot cancel: the transfer is returned"})
    assert pending[0] == held[0] == 200
    assert histories == {"paid": ["pending", "approved", "paid_out"],
                         "blocked": ["pending", "blocked", "returned"],
                         "held": ["pending", "held", "cancelled", "returned"],
                         "kept": ["pending", "held"],
                         "pending": ["pending", "cancelled", "returned"]}
    # the console's queue, on these records as the lake sink writes them: only "kept" is held
    for topic in topics:
        records = [r for r in tap.records if r.topic == topic]
        lake.write_batch(tmp_path, topic, lake.TopicTable(topic, with_kafka_columns=True),
                         [decode(topic, r.value) for r in records], "test",
                         partitions=[r.partition for r in records],
                         offsets=[r.offset for r in records])
    queue = lake.connect(tmp_path).execute(HELD_SQL).df()
    mine = set(queue["transfer_id"]) & set(ids.values())
    assert mine == {ids["kept"]}
