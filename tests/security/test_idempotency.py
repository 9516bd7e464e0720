"""``Idempotency-Key`` on the payment service's POSTs, against the session's real broker: one
key never makes two transfers (sequential or concurrent retries, after a restart), the same key
with another body is refused, and keys are the caller's own.

Headers carry the sender's bearer token too (``as_user``): harmless before the services check
tokens, required after."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from service_support import Tap, acc, aio, as_internal, as_user, rid, serving

from pipelines.services import assistant, messaging, payment

pytestmark = pytest.mark.kafka


def body(sender: str, recipient: str, amount: int = 2500) -> dict:
    return {"sender": sender, "recipient": recipient, "amount_cents": amount,
            "card_number": "4111111111111111"}


def keyed(sender: str, key: str) -> dict:
    return {**as_user(sender), "Idempotency-Key": key}


async def post(client, json: dict, headers: dict) -> tuple[int, dict, dict]:
    resp = await client.post("/v1/transfers", json=json, headers=headers)
    return resp.status, await resp.json(), dict(resp.headers)


def requested(tap: Tap, sender_hash: str) -> list:
    return [e for e in tap.events("transfer-requests") if e.sender == sender_hash]


@aio
async def test_same_key_same_body_is_one_transfer_even_after_a_restart(kafka):
    sender, recipient, key = rid(), rid(), uuid.uuid4().hex
    async with Tap("transfer-requests") as tap:
        async with serving(payment) as client:
            first = await post(client, body(sender, recipient), keyed(sender, key))
            again = await post(client, body(sender, recipient), keyed(sender, key))
            other_key = await post(client, body(sender, recipient), keyed(sender, uuid.uuid4().hex))
        async with serving(payment) as fresh:  # a new instance: state rebuilt from the log
            after_restart = await post(fresh, body(sender, recipient), keyed(sender, key))
            changed = await post(fresh, body(sender, recipient, 2600), keyed(sender, key))
        await tap.drain()
    assert first[0] == 201, first
    assert again[:2] == first[:2] == after_restart[:2]  # same status, same body
    assert "Idempotent-Replayed" not in first[2] and again[2]["Idempotent-Replayed"] == "true"
    assert other_key[0] == 201 and other_key[1]["transfer_id"] != first[1]["transfer_id"]
    assert changed[0] == 422 and "Idempotency-Key" in changed[1]["error"]
    logged = requested(tap, acc(sender))
    assert sorted(e.transfer_id for e in logged) == sorted(
        [first[1]["transfer_id"], other_key[1]["transfer_id"]])  # one request per key


@aio
async def test_concurrent_duplicates_with_one_key_make_one_transfer(kafka):
    sender, recipient, key = rid(), rid(), uuid.uuid4().hex
    async with Tap("transfer-requests") as tap, serving(payment) as client:
        answers = await asyncio.gather(*(post(client, body(sender, recipient), keyed(sender, key))
                                         for _ in range(20)))
        await tap.drain()
    assert {a[0] for a in answers} == {201}
    assert len({a[1]["transfer_id"] for a in answers}) == 1
    assert sum("Idempotent-Replayed" not in a[2] for a in answers) == 1  # one made it
    assert len(requested(tap, acc(sender))) == 1


@aio
async def test_a_key_is_the_callers_own_and_a_bad_key_is_refused(kafka):
    alice, bob, recipient, key = rid(), rid(), rid(), "the-same-key"
    async with serving(payment) as client:
        a = await post(client, body(alice, recipient), keyed(alice, key))
        b = await post(client, body(bob, recipient), keyed(bob, key))
        too_long = await post(client, body(alice, recipient), keyed(alice, "k" * 256))
    assert a[0] == b[0] == 201 and a[1]["transfer_id"] != b[1]["transfer_id"]
    assert too_long[0] == 400 and "Idempotency-Key" in too_long[1]["error"]


@aio
async def test_a_keyed_chargeback_is_answered_once_and_refused_with_another_body(kafka):
    sender, key = rid(), uuid.uuid4().hex
    async with Tap("labels") as tap, serving(payment) as client:
        made = await post(client, body(sender, rid()), keyed(sender, uuid.uuid4().hex))
        transfer_id = made[1]["transfer_id"]
        headers = {**as_internal(), "Idempotency-Key": key}
        answers = []
        for category in ("stolen_card", "stolen_card", "fraud"):
            resp = await client.post("/v1/chargebacks", headers=headers,
                                     json={"transfer_id": transfer_id, "category": category})
            answers.append((resp.status, await resp.json()))
        await tap.drain()
    assert answers[0] == answers[1] == (202, {"id": f"{transfer_id}.cb"})
    assert answers[2][0] == 422
    assert [e.transfer_id for e in tap.events("labels")] == [transfer_id]


@aio
async def test_the_other_services_posts_answer_a_key_once(kafka):
    """The messaging and assistant POSTs (``idempotency.keyed``): in memory, for 24 h."""
    sender, key = rid(), uuid.uuid4().hex
    message = {"sender": sender, "recipient": rid(), "conversation": rid("conv"), "text": "hi"}
    headers = keyed(sender, key)
    async with Tap("messages") as tap, serving(messaging) as client:
        answers = []
        for text in ("hi", "hi", "hello"):
            resp = await client.post("/v1/messages", json={**message, "text": text},
                                     headers=headers)
            answers.append((resp.status, await resp.json()))
        await tap.drain()
    assert answers[0][0] == 202 and answers[1] == answers[0]
    assert answers[2][0] == 422
    assert [e.id for e in tap.events("messages") if e.sender == acc(sender)] == [answers[0][1]["id"]]
    async with serving(assistant) as client:  # a refusal is not remembered: checked again
        for _ in range(2):
            resp = await client.post("/v1/suggestions/nope/response", headers=headers,
                                     json={"user": sender, "response": "declined"})
            assert resp.status == 404
