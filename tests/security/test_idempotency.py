"""``Idempotency-Key`` on every POST, against the session's real broker: one key never makes
two transfers (sequential or concurrent retries, after a restart), the same key with another
body is refused, and keys are the caller's own. The other keyed POSTs (messages, account
events, scam reports, recovery answers, suggestion responses, chargebacks) answer a key once
for 24 h through their service's record on the log: after a restart, on another instance,
never from another caller's key.

Headers carry the caller's bearer token too (``as_user``, ``as_internal``)."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

import msgspec
import pytest
from service_support import Tap, acc, aio, as_internal, as_user, eventually, publisher, rid, serving

from pipelines.services import assistant, messaging, payment, requests as rq
from pipelines.services.common import now_ms

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
    """The messaging and assistant POSTs (``idempotency.keyed``), on one instance."""
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


# --- the keyed replies' record: durable, shared, the caller's own ----------------------------
@dataclass
class Family:
    """One kind of keyed non-money POST: its service, the topic its event goes to, what the
    test sets up first (``setup(client, ctx)``), the request (``variant`` 0 or 1: two bodies)
    and how to tell this test's events from the others'."""
    module: object
    topic: str
    path: Callable[[dict], str]
    body: Callable[[dict, int], dict]
    mine: Callable[[object, dict], bool]
    setup: Optional[Callable] = None
    caller: Callable[[dict], dict] = lambda ctx: as_user(ctx["user"])


async def _a_transfer(client, ctx: dict) -> None:
    made = await post(client, body(ctx["user"], ctx["peer"]), keyed(ctx["user"], uuid.uuid4().hex))
    ctx["transfer_id"] = made[1]["transfer_id"]


async def _a_suggestion(client, ctx: dict) -> None:
    """The peer talks money to the user, whose assistant is on: one open suggestion."""
    user = ctx["user"]
    resp = await client.put(f"/v1/users/{user}/assistant", json={"enabled": True},
                            headers=as_user(user))
    assert resp.status == 200
    req = rq.MessageRequest(sender=ctx["peer"], recipient=user, conversation=ctx["conv"],
                            text="tu me dois 25 euros")
    async with publisher() as pub:
        await pub.publish("messages", rq.message_event(req, uuid.uuid4().hex, now_ms()))

    async def listed():
        resp = await client.get("/v1/suggestions", headers=as_user(user),
                                params={"user": user, "conversation": ctx["conv"]})
        return (await resp.json())["suggestions"]
    ctx["suggestion_id"] = (await eventually(listed))[0]["suggestion_id"]


FAMILIES = {
    "message": Family(
        messaging, "messages", lambda c: "/v1/messages",
        lambda c, v: {"sender": c["user"], "recipient": c["peer"], "conversation": c["conv"],
                      "text": ("see you at 8", "see you at 9")[v]},
        lambda e, c: e.sender == acc(c["user"])),
    "account-event": Family(
        messaging, "account-events", lambda c: "/v1/account-events",
        lambda c, v: {"account": c["user"], "kind": ("device_added", "phone_changed")[v]},
        lambda e, c: e.account == acc(c["user"])),
    "scam-report": Family(
        messaging, "labels", lambda c: "/v1/reports",
        lambda c, v: {"reporter": c["user"], "reported": c["peer"],
                      "category": ("romance", "marketplace")[v]},
        lambda e, c: e.account == acc(c["peer"])),
    "recovery-answer": Family(
        messaging, "owner-verification", lambda c: f"/v1/recovery/{c['case']}/answer",
        lambda c, v: {"account": c["user"], "answer": "it_was_me",
                      "code": ("123456", "654321")[v]},
        lambda e, c: e.account == acc(c["user"]) and e.kind == "answer"),
    "suggestion-response": Family(
        assistant, "assistant-events", lambda c: f"/v1/suggestions/{c['suggestion_id']}/response",
        lambda c, v: {"user": c["user"], "response": ("declined", "accepted")[v]},
        lambda e, c: e.suggestion_id == c.get("suggestion_id") and e.kind != "suggested",
        setup=_a_suggestion),
    "chargeback": Family(
        payment, "labels", lambda c: "/v1/chargebacks",
        lambda c, v: {"transfer_id": c["transfer_id"], "category": ("stolen_card", "fraud")[v]},
        lambda e, c: e.transfer_id == c.get("transfer_id") and e.kind == "chargeback",
        setup=_a_transfer, caller=lambda c: as_internal(c["backoffice"])),
}


def context() -> dict:
    return {"user": rid(), "peer": rid(), "conv": rid("conv"), "case": rid("case"),
            "backoffice": rid("backoffice"), "key": uuid.uuid4().hex}


async def send(client, family: Family, ctx: dict, variant: int = 0,
               caller: Optional[dict] = None, retry_moving: bool = False
               ) -> tuple[int, dict, dict]:
    """One keyed POST; with ``retry_moving``, a 503 that says when (a partition moving between
    instances) is retried then, as a client does."""
    headers = {**(caller or family.caller(ctx)), "Idempotency-Key": ctx["key"]}
    for _ in range(30 if retry_moving else 1):
        resp = await client.post(family.path(ctx), json=family.body(ctx, variant), headers=headers)
        if resp.status != 503 or "Retry-After" not in resp.headers:
            break
        await asyncio.sleep(float(resp.headers["Retry-After"]))
    return resp.status, await resp.json(), dict(resp.headers)


def replayed(answer: tuple) -> bool:
    return answer[2].get("Idempotent-Replayed") == "true"


@pytest.mark.parametrize("name", FAMILIES)
@aio
async def test_a_keyed_answer_survives_a_restart(kafka, name):
    """Same key and body after a restart: the first answer again, and one event in the log;
    another body: 422. The record holds neither the key nor anything of the request."""
    family, ctx = FAMILIES[name], context()
    reply_topic = f"idempotency-{family.module.__name__.rpartition('.')[2]}"
    async with Tap(family.topic, reply_topic) as tap:
        async with serving(family.module) as client:
            if family.setup:
                await family.setup(client, ctx)
            first = await send(client, family, ctx)
        async with serving(family.module) as restarted:
            again = await send(restarted, family, ctx)
            other = await send(restarted, family, ctx, variant=1)
        await tap.drain()
    assert first[0] == 202 and not replayed(first), first
    assert again[:2] == first[:2] and replayed(again)
    assert other[0] == 422 and "Idempotency-Key" in other[1]["error"]
    assert [e for e in tap.events(family.topic) if family.mine(e, ctx)] == [
        e for e in tap.events(family.topic) if e.id == first[1]["id"]] != []  # one, the first
    [record] = [r for r in tap.records if r.topic == reply_topic
                and msgspec.json.decode(r.value)["answer"] == first[1]]
    sent = {k: v for k, v in family.body(ctx, 0).items() if k != "transfer_id"}  # an answer id
    for raw in (ctx["key"], ctx["user"], ctx["peer"], *map(str, sent.values())):
        assert raw.encode() not in record.value + record.key


@pytest.mark.parametrize("name", ["message", "recovery-answer", "suggestion-response",
                                  "chargeback"])
@aio
async def test_two_instances_of_a_service_share_the_keys(kafka, name):
    """A retry sent to another instance of the service (same broker, one started after the
    first answer, one before it) gets the first answer; another body, 422 there too."""
    family, ctx = FAMILIES[name], context()
    async with Tap(family.topic) as tap, serving(family.module) as one:
        if family.setup:
            await family.setup(one, ctx)
        async with serving(family.module) as two:
            first = await send(one, family, ctx, retry_moving=True)
            on_two = await send(two, family, ctx, retry_moving=True)
            other_on_two = await send(two, family, ctx, variant=1, retry_moving=True)
        await tap.drain()
    assert first[0] == 202 and on_two[:2] == first[:2] and replayed(on_two)
    assert other_on_two[0] == 422
    assert len([e for e in tap.events(family.topic) if family.mine(e, ctx)]) == 1


@pytest.mark.parametrize("name", ["message", "chargeback"])
@aio
async def test_one_callers_key_is_not_another_ones_after_a_restart(kafka, name):
    """User B (or another back office) sending user A's key is not A's retry: B's request is
    handled as B's own, neither replayed with A's answer nor refused as another body."""
    family, a = FAMILIES[name], context()
    b = {**context(), "key": a["key"], "transfer_id": None}
    async with Tap(family.topic) as tap:
        async with serving(family.module) as client:
            if family.setup:
                await family.setup(client, a)
                b["transfer_id"] = a["transfer_id"]
            first = await send(client, family, a)
        async with serving(family.module) as restarted:
            by_b = await send(restarted, family, b)
            by_a = await send(restarted, family, a)
        await tap.drain()
    assert first[0] == by_b[0] == 202 and not replayed(by_b)
    assert by_a[:2] == first[:2] and replayed(by_a)
    if name == "message":  # B's message is B's event; a chargeback is one label per transfer
        assert by_b[1] != first[1]
        assert len([e for e in tap.events(family.topic) if family.mine(e, b)]) == 1


def test_the_reply_topics_are_compacted_and_expire_after_a_day(kafka):
    """What bounds the record: compaction by key, deletion past retention (25 h, 1 h segments)."""
    from confluent_kafka.admin import ConfigResource

    from pipelines.contracts.topics import REPLY_TOPICS
    from pipelines.kafka import acls

    admin = acls.admin_client(kafka.internal_bootstrap, acls.passwords(kafka.secrets_dir)["admin"])
    wanted = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in REPLY_TOPICS]
    for resource, future in admin.describe_configs(wanted).items():
        config = {k: v.value for k, v in future.result(timeout=30).items()}
        assert (config["cleanup.policy"], config["retention.ms"], config["segment.ms"]) == (
            "compact,delete", str(25 * 3_600_000), "3600000"), resource


def service_of(client):
    """The ``Service`` behind a served app (its startup hook is a bound method of it)."""
    return next(hook.__self__ for hook in client.server.app.on_startup
                if getattr(hook, "__name__", "") == "_startup")


@aio
async def test_an_instance_that_has_not_read_the_record_yet_never_handles_the_key_again(
        kafka, monkeypatch):
    """Instance two's reader of the record stalls: a retry sent there is not handled as new (it
    looks for the key in the whole log first): 503 with Retry-After until it has read it, then
    the first answer."""
    monkeypatch.setenv("VIGIE_PUBLISH_DEADLINE_S", "1")
    family, ctx = FAMILIES["message"], context()
    async with Tap(family.topic) as tap, serving(messaging) as one, serving(messaging) as two:
        reader = service_of(two).keyed_replies.reader.consumer
        reader.pause(*reader.assignment())
        first = await send(one, family, ctx)
        while_stalled = await send(two, family, ctx)
        reader.resume(*reader.assignment())
        after = await send(two, family, ctx)
        await tap.drain()
    assert first[0] == 202
    assert while_stalled[0] == 503 and while_stalled[2]["Retry-After"] == "1"
    assert after[:2] == first[:2] and replayed(after)
    assert len([e for e in tap.events(family.topic) if family.mine(e, ctx)]) == 1


@aio
async def test_concurrent_duplicates_of_a_keyed_message_make_one_event(kafka):
    """20 tries at once on one instance (each first looks for the key in the log): one is
    handled, the others join it or replay it."""
    family, ctx = FAMILIES["message"], context()
    async with Tap(family.topic) as tap, serving(messaging) as client:
        answers = await asyncio.gather(*(send(client, family, ctx) for _ in range(20)))
        await tap.drain()
    assert {a[0] for a in answers} == {202} and len({a[1]["id"] for a in answers}) == 1
    assert sum(not replayed(a) for a in answers) == 1
    assert len([e for e in tap.events(family.topic) if family.mine(e, ctx)]) == 1
