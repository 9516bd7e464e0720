"""The three thin services, in-process, against the session's real Kafka broker: what each
endpoint publishes (read back from its topic), what it refuses, what never reaches Kafka or a
log line, and how the payment service applies decisions, deadlines and account locks.

Every test uses fresh random raw ids: the broker is shared by the whole session."""
from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from service_support import Tap, acc, aio, as_internal, as_user, eventually, publisher, rid, serving

from pipelines.contracts import schemas as s
from pipelines.contracts.privacy import pseudonymize
from pipelines.contracts.topics import decode
from pipelines.services import assistant, messaging, payment, requests as rq
from pipelines.services.common import now_ms

pytestmark = pytest.mark.kafka


# --- messaging -------------------------------------------------------------------------------
@aio
async def test_message_metadata_is_published_and_its_text_never_is(kafka, caplog):
    caplog.set_level(logging.DEBUG)
    sender, recipient, conv = rid(), rid(), rid("conv")
    secret = f"zebra{uuid.uuid4().hex}"
    text = f"Salut, envoie-moi 40€ pour le resto ! {secret}"
    async with Tap("messages") as tap, serving(messaging) as client:
        resp = await client.post("/v1/messages", json={
            "sender": sender, "recipient": recipient, "conversation": conv, "text": text},
            headers=as_user(sender))
        assert resp.status == 202, await resp.text()
        body = await resp.text()
        event = await tap.first("messages", id=(await resp.json())["id"])
    assert secret not in body
    assert isinstance(event, s.MessageSent)
    assert (event.sender, event.recipient) == (acc(sender), acc(recipient))
    assert event.conversation == pseudonymize("conversation", conv)
    assert event.money_talk and event.money_request and event.amount_mentioned_cents == 4000
    assert event.length == len(text)
    for record in tap.records:  # the raw bytes, key and value
        assert secret.encode() not in record.value and secret.encode() not in (record.key or b"")
        assert sender.encode() not in record.value
    assert caplog.records, "the access log should have run"
    for raw in (secret, sender, recipient, conv):
        assert raw not in caplog.text


@aio
async def test_a_scam_report_names_only_a_transfer_its_reporter_is_a_party_to(kafka):
    """The reporter must be the transfer's sender or recipient, and the reported account its
    other party; the label names the transfer's parties as the transfer log has them."""
    payer, payee, stranger = rid(), rid(), rid()
    req = rq.TransferRequest(sender=payer, recipient=payee, amount_cents=1500)
    transfer = rq.transfer_event(req, uuid.uuid4().hex, uuid.uuid4().hex, now_ms(), 30_000)

    async def report(client, reporter: str, reported: str, transfer_id: str):
        resp = await client.post("/v1/reports", headers=as_user(reporter), json={
            "reporter": reporter, "reported": reported, "transfer_id": transfer_id})
        return resp.status, await resp.json()

    tid = transfer.transfer_id
    async with Tap("labels") as tap, publisher() as pub, serving(messaging) as client:
        await pub.publish("transfer-requests", transfer)  # after the start: read on the spot
        by_payer = await report(client, payer, payee, tid)
        by_payee = await report(client, payee, payer, tid)  # the recipient reports the sender
        by_stranger = await report(client, stranger, payee, tid)
        against_a_third = await report(client, payer, stranger, tid)
        against_oneself = await report(client, payer, payer, tid)
        unknown = await report(client, payer, payee, uuid.uuid4().hex)
        labels = [await tap.first("labels", id=answer[1]["id"]) for answer in (by_payer, by_payee)]
    assert by_payer[0] == by_payee[0] == 202
    assert [(x.account, x.party, x.sender, x.recipient, x.transfer_id) for x in labels] == [
        (acc(payee), "recipient", acc(payer), acc(payee), tid),
        (acc(payer), "sender", acc(payer), acc(payee), tid)]
    assert by_stranger[0] == 403
    assert "neither the sender nor the recipient" in by_stranger[1]["error"]
    for refused in (against_a_third, against_oneself):
        assert refused[0] == 422 and "not the other party" in refused[1]["error"]
    assert unknown[0] == 422 and "unknown transfer_id" in unknown[1]["error"]


@aio
async def test_account_events_and_scam_reports_are_published_with_hashed_ids(kafka):
    account, reported, card = rid(), rid(), "4111 1111 1111 1111"
    async with Tap("account-events", "labels") as tap, serving(messaging) as client:
        resp = await client.post("/v1/account-events", json={
            "account": account, "kind": "card_registered", "device": "ios-1", "ip": "10.1.2.3",
            "country": "FR", "card_number": card}, headers=as_user(account))
        assert resp.status == 202, await resp.text()
        event = await tap.first("account-events", id=(await resp.json())["id"])
        reporter = rid()
        resp = await client.post("/v1/reports", json={
            "reporter": reporter, "reported": reported, "category": "romance"},
            headers=as_user(reporter))
        assert resp.status == 202, await resp.text()
        label = await tap.first("labels", id=(await resp.json())["id"])
        start = now_ms() - 60_000  # a confirmed takeover, with its window (ground truth)
        resp = await client.post("/v1/takeover-reports", json={
            "account": account, "occurred_ts": start, "compromise_from_ts": start,
            "compromise_to_ts": start + 30_000}, headers=as_internal())
        assert resp.status == 202, await resp.text()
        ato = await tap.first("labels", id=(await resp.json())["id"])
    assert (ato.kind, ato.account, ato.is_fraud, ato.scenario, ato.transfer_id) == (
        "ato_confirmed", acc(account), True, "ato", None)
    assert (ato.ts, ato.compromise_from_ts, ato.compromise_to_ts) == (start, start, start + 30_000)
    assert event.account == acc(account) and event.kind == "card_registered"
    assert event.card == pseudonymize("card", card.replace(" ", ""))
    assert event.device.startswith("d_") and event.ip.startswith("i_")
    assert all(card.replace(" ", "").encode() not in r.value and card.encode() not in r.value
               for r in tap.records)
    assert (label.kind, label.account, label.is_fraud, label.scenario) == (
        "user_scam_report", acc(reported), True, "romance")


BAD_REQUESTS = [
    # (method, path, body, headers, status, a fragment of the reason)
    ("POST", "/v1/messages", b'{"sender": "a", "recipient": ', {}, 400, "bad JSON"),
    ("POST", "/v1/messages", b"", {}, 400, "bad JSON"),
    ("POST", "/v1/messages", b"[1, 2]", {}, 400, "Expected `object`, got `array`"),
    ("POST", "/v1/messages", b'{"sender": 5, "recipient": "b", "conversation": "c", "text": "x"}',
     {}, 400, "Expected `str`, got `int` - at `$.sender`"),
    ("POST", "/v1/messages", b'{"sender": "a", "recipient": "b", "text": "x"}', {}, 400,
     "missing required field `conversation`"),
    ("POST", "/v1/messages", b'{"sender": "a", "recipient": "b", "conversation": "c", "text": "'
     + b"x" * 5000 + b'"}', {}, 400, "length <= 4096"),
    ("POST", "/v1/account-events", b'{"account": "a", "kind": "login", "text": "hi"}', {}, 400,
     "unknown field `text`"),
    ("POST", "/v1/account-events", b'{"account": "a", "kind": "teleported"}', {}, 400,
     "Invalid enum value 'teleported'"),
    ("POST", "/v1/account-events", b'{"account": "a", "kind": "login", "card_number": "41x1"}', {},
     400, "card_number"),
    ("POST", "/v1/account-events", b'{"account": "", "kind": "login"}', {}, 400, "length >= 1"),
    ("POST", "/v1/reports", b'{"reporter": "a", "reported": "b", "occurred_ts": 1700000000}', {},
     400, "occurred_ts"),
    ("POST", "/v1/takeover-reports", b'{"account": "a", "occurred_ts": 1700000000000, '
     b'"compromise_from_ts": 1700000000000, "compromise_to_ts": 1600000000000}', {}, 400,
     "compromise_to_ts is before compromise_from_ts"),
    ("POST", "/v1/messages", b'{"sender": "' + b"x" * 70_000 + b'"}', {}, 413, "65536"),
    ("POST", "/v1/messages", b"sender=a", {"Content-Type": "application/x-www-form-urlencoded"},
     415, "expected application/json"),
    ("GET", "/v1/messages", None, {}, 405, "method not allowed"),
    ("POST", "/v1/nope", b"{}", {}, 404, "not found"),
    ("GET", "/v1/notifications/" + "x" * 200, None, {}, 400, "length <= 128"),
]


@aio
async def test_bad_requests_get_a_reason_and_publish_nothing(kafka):
    """With a valid token (a back end's, which may post any account event), so that what is
    refused is the request itself; a token's refusals: tests/security/test_service_auth.py."""
    barrier, token = rid(), as_internal()
    async with Tap("messages", "account-events", "labels") as tap, serving(messaging) as client:
        for method, path, body, headers, status, reason in BAD_REQUESTS:
            headers = {"Content-Type": "application/json", **headers} if body is not None else {}
            headers.update(token)
            resp = await client.request(method, path, data=body, headers=headers)
            assert resp.status == status, (path, body and body[:80], await resp.text())
            assert reason.lower() in (await resp.json())["error"].lower(), (path, await resp.text())
        resp = await client.post("/v1/account-events", json={"account": barrier, "kind": "login"},
                                 headers=token)
        assert resp.status == 202
        await tap.drain()  # everything published since the tap opened, up to the barrier
    assert [(r.topic, decode(r.topic, r.value).account) for r in tap.records] == [
        ("account-events", acc(barrier))]


@aio
async def test_notifications_are_delivered_to_their_user(kafka):
    user, other = rid(), rid()

    def note(account, code):
        return s.Notification(id=uuid.uuid4().hex, ts=now_ms(), account=acc(account),
                              kind="transfer_warning", code=code, transfer_id="t1")

    async with publisher() as pub:
        await pub.publish("notifications", note(user, "before_start"))  # read back on start
        async with serving(messaging) as client:
            await pub.publish("notifications", note(user, "urgency"))
            await pub.publish("notifications", note(other, "first_contact_payee"))

            async def codes():
                resp = await client.get(f"/v1/notifications/{user}", headers=as_user(user))
                assert resp.status == 200
                found = [n["code"] for n in (await resp.json())["notifications"]]
                return found if len(found) == 2 else None

            assert await eventually(codes) == ["before_start", "urgency"]
            nobody = rid()
            resp = await client.get(f"/v1/notifications/{nobody}", headers=as_user(nobody))
            assert (await resp.json()) == {"notifications": []}


# --- payment ---------------------------------------------------------------------------------
@pytest.fixture
def fast_payment(monkeypatch):
    # short, but with room for a loaded machine to get the decisions in before the deadline
    monkeypatch.setenv("VIGIE_AVAILABILITY_DELAY_S", "2")
    monkeypatch.setenv("VIGIE_WARN_COOLING_OFF_S", "3")  # outlasts the delay


SENDERS: dict[str, str] = {}  # transfer id -> its raw sender, whose token reads it
CARD = b"4111111111111111"


async def send_money(client, sender: str, amount: int = 2500) -> dict:
    resp = await client.post("/v1/transfers", json={
        "sender": sender, "recipient": rid(), "amount_cents": amount,
        "card_number": CARD.decode()}, headers=as_user(sender))
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    SENDERS[created["transfer_id"]] = sender
    return created


async def transfer(client, transfer_id: str) -> dict:
    resp = await client.get(f"/v1/transfers/{transfer_id}", headers=as_user(SENDERS[transfer_id]))
    assert resp.status == 200
    return await resp.json()


async def decide(pub, t: dict, action: str, model: str = "lgbm-1", shadow: bool = False) -> None:
    await pub.publish("decisions", s.Decision(
        id=uuid.uuid4().hex, ts=now_ms(), transfer_id=t["transfer_id"], sender=t["sender"],
        recipient=t["recipient"], amount_cents=t["amount_cents"], action=action, score=0.5,
        model_version=model, shadow=shadow))


async def history_of(client, transfer_id: str) -> list[str]:
    return [h["status"] for h in (await transfer(client, transfer_id))["history"]]


async def settled(client, ids: dict, final: dict) -> dict:
    """Wait until every transfer reached its expected final status; their histories."""
    async def done():
        hist = {name: await history_of(client, tid) for name, tid in ids.items()}
        return hist if all(hist[n][-1] == final[n] for n in ids) else None
    return await eventually(done, timeout=20)


@aio
async def test_transfer_request_is_published_pending_and_readable(kafka, fast_payment):
    sender = rid()
    async with Tap("transfer-requests", "transfer-status") as tap, serving(payment) as client:
        created = await send_money(client, sender)
        tid = created["transfer_id"]
        assert created["status"] == "pending"
        request = await tap.first("transfer-requests", transfer_id=tid)
        status = await tap.first("transfer-status", transfer_id=tid)
        view = await transfer(client, tid)
        assert (await client.get("/v1/transfers/nope", headers=as_user(sender))).status == 404
    assert (request.transfer_id, request.sender, request.amount_cents) == (tid, acc(sender), 2500)
    assert request.payout_due_ts == created["payout_due_ts"] == request.ts + 2000
    # the card number nowhere (its digits, not "4111": that may well occur in a hex id or hash)
    assert request.card.startswith("k_") and all(CARD not in r.value for r in tap.records)
    assert (status.transfer_id, status.status) == (tid, "pending")
    assert view["sender"] == acc(sender) and view["status"] == "pending"
    assert [h["status"] for h in view["history"]] == ["pending"]


@aio
async def test_decisions_are_applied_once_and_nothing_pays_out_without_one(kafka, fast_payment):
    expected = {  # automated decisions sent, analyst decision sent once held, history
        "approve": (["approve"], None, ["pending", "approved", "paid_out"]),
        "warn": (["warn"], None, ["pending", "warned", "paid_out"]),
        "block": (["block"], None, ["pending", "blocked", "returned"]),
        "hold_release": (["hold"], "approve", ["pending", "held", "released", "paid_out"]),
        "hold_block": (["hold"], "block", ["pending", "held", "blocked", "returned"]),
        "redelivered": (["approve", "approve", "block", "hold"], None,
                        ["pending", "approved", "paid_out"]),
        "no_decision": ([], None, ["pending", "held"]),
        "shadow_only": (["shadow:approve"], None, ["pending", "held"]),
        "analyst_on_pending": (["analyst:approve"], None, ["pending", "held"]),
    }
    async with Tap("transfer-status") as tap, publisher() as pub, serving(payment) as client:
        made = {name: await send_money(client, rid()) for name in expected}
        views = {name: await transfer(client, m["transfer_id"]) for name, m in made.items()}
        for name, (actions, _, _) in expected.items():
            for action in actions:
                kind, _, act = action.rpartition(":")
                model = "analyst:alice" if kind == "analyst" else "lgbm-1"
                await decide(pub, views[name], act, model=model, shadow=kind == "shadow")
        ids = {name: m["transfer_id"] for name, m in made.items()}
        held = {n: "held" for n, (_, analyst, _) in expected.items() if analyst}
        await settled(client, {n: ids[n] for n in held}, held)
        for name in held:
            await decide(pub, views[name], expected[name][1], model="analyst:bob")
        final = {name: hist[-1] for name, (_, _, hist) in expected.items()}
        await settled(client, ids, final)
        await asyncio.sleep(1.0)  # time for a wrong payout or a second decision to show
        histories = {name: await transfer(client, tid) for name, tid in ids.items()}
        await tap.drain()
    for name, (_, _, hist) in expected.items():
        assert [h["status"] for h in histories[name]["history"]] == hist, name
    fallback = histories["no_decision"]["history"][-1]
    assert fallback["reason"] == "fallback: no decision by deadline"
    assert fallback["ts"] >= made["no_decision"]["payout_due_ts"]  # at the deadline, not before
    assert histories["hold_release"]["history"][1]["reason"] == "decision:hold model=lgbm-1"
    warn = histories["warn"]["history"]
    assert warn[2]["ts"] >= warn[1]["ts"] + 3000  # the cooling-off, ending after the delay
    approve = histories["approve"]["history"]
    assert approve[2]["ts"] >= made["approve"]["payout_due_ts"]
    # every change is in the log, once, with the id it has in the history
    published = [e for e in tap.events("transfer-status") if e.transfer_id in ids.values()]
    assert len(published) == len({e.id for e in published})
    assert len(published) == sum(len(hist) for _, _, hist in expected.values())


@aio
async def test_block_fallback_when_configured(kafka, fast_payment, monkeypatch):
    monkeypatch.setenv("VIGIE_NO_DECISION_FALLBACK", "block")
    async with serving(payment) as client:
        tid = (await send_money(client, rid()))["transfer_id"]
        hist = await settled(client, {"t": tid}, {"t": "returned"})
    assert hist["t"] == ["pending", "blocked", "returned"]


@aio
async def test_a_decision_after_the_fallback_hold_is_applied_once_and_recorded(kafka, fast_payment):
    """A late block blocks the held transfer; a late hold, approve or warn keeps it held for an
    analyst; the late decision is in the history and the log, and only the first one acts,
    before and after a restart. One sender: its decisions share a partition and are read in
    order, so a marker's effect shows that every decision sent before it was handled."""
    sender = rid()

    async def late(t: dict, action: str) -> None:
        if action != "hold":
            return await decide(pub, t, action)
        await pub.publish("decisions", s.Decision(  # a hold with what it saw
            id=uuid.uuid4().hex, ts=now_ms(), transfer_id=t["transfer_id"], sender=t["sender"],
            recipient=t["recipient"], amount_cents=t["amount_cents"], action="hold", score=0.91,
            model_version="lgbm-2", rule_hits=["big_first_payment"],
            reasons=[s.ReasonCode("recipient_account_age_days", 0.0, 0.4),
                     s.ReasonCode("sender_pair_urgent", 1.0, 0.2)]))

    names = ["block", "hold", "approve", "warn", "marker"]
    async with Tap("transfer-status") as tap, publisher() as pub:
        async with serving(payment) as client:
            made = {name: await send_money(client, sender) for name in names}
            ids = {name: m["transfer_id"] for name, m in made.items()}
            views = {name: await transfer(client, tid) for name, tid in ids.items()}
            await settled(client, ids, {name: "held" for name in names})  # all held: no decision
            for name in ["block", "hold", "approve", "warn"]:
                await late(views[name], name)
            await late(views["approve"], "block")  # a second decision: changes nothing
            await late(views["block"], "approve")
            await late(views["warn"], "hold")
            await decide(pub, views["warn"], "block", shadow=True)  # never applied
            await late(views["marker"], "block")
            await settled(client, {"marker": ids["marker"]}, {"marker": "returned"})
            # an analyst still decides the ones kept held
            await decide(pub, views["approve"], "approve", model="analyst:bob")
            await decide(pub, views["hold"], "block", model="analyst:bob")
            await settled(client, ids, {"block": "returned", "hold": "returned",
                                        "approve": "paid_out", "warn": "held", "marker": "returned"})
            before = {name: (await transfer(client, tid))["history"] for name, tid in ids.items()}
        async with serving(payment) as client:  # rebuilt from the log
            after = {name: (await transfer(client, tid))["history"] for name, tid in ids.items()}
            marker = await send_money(client, sender)
            await settled(client, {"m": marker["transfer_id"]}, {"m": "held"})
            await late(views["warn"], "block")  # after a restart, still a second decision
            await late(await transfer(client, marker["transfer_id"]), "block")
            await settled(client, {"m": marker["transfer_id"]}, {"m": "returned"})
            warn_now = (await transfer(client, ids["warn"]))["history"]
        await tap.drain()
    assert after == before and warn_now == before["warn"]
    statuses = {name: [h["status"] for h in hist] for name, hist in before.items()}
    assert statuses == {
        "block": ["pending", "held", "blocked", "returned"],
        "hold": ["pending", "held", "held", "blocked", "returned"],
        "approve": ["pending", "held", "held", "released", "paid_out"],
        "warn": ["pending", "held", "held"],
        "marker": ["pending", "held", "blocked", "returned"],
    }
    reasons = {name: [h["reason"] for h in hist] for name, hist in before.items()}
    assert reasons["block"][2] == "late decision:block model=lgbm-1 score=0.500"
    assert reasons["hold"][2] == ("late decision:hold model=lgbm-2 score=0.910 "
                                  "rules=big_first_payment "
                                  "reasons=recipient_account_age_days,sender_pair_urgent; "
                                  "kept held for an analyst")
    assert reasons["approve"][2] == ("late decision:approve model=lgbm-1 score=0.500; "
                                     "kept held for an analyst")
    assert reasons["warn"][2].startswith("late decision:warn model=lgbm-1")
    assert reasons["hold"][3] == "decision:block model=analyst:bob"
    assert reasons["approve"][3] == "decision:approve model=analyst:bob"
    # every change is in the log once, in order, with the reason the console shows
    published = tap.events("transfer-status")
    for name, tid in ids.items():
        assert [(e.status, e.reason) for e in published if e.transfer_id == tid] == [
            (h["status"], h["reason"]) for h in before[name]], name


@aio
async def test_account_locks_hold_transfers_refuse_new_ones_and_survive_restarts(
        kafka, fast_payment, monkeypatch):
    monkeypatch.setenv("VIGIE_AVAILABILITY_DELAY_S", "30")  # still pending when the lock comes
    victim, fraudster = rid(), rid()

    def recovery(raw, state, reason=""):
        return s.RecoveryEvent(id=uuid.uuid4().hex, ts=now_ms(), case_id=rid("case"),
                               account=acc(raw), state=state, actor="stream", reason=reason)

    async with Tap("transfer-requests") as tap, publisher() as pub:
        async with serving(payment) as client:
            before = (await send_money(client, victim))["transfer_id"]
            await pub.publish("recovery",
                              recovery(victim, "contained", "new device and password reset"))
            await settled(client, {"t": before}, {"t": "held"})
            assert (await transfer(client, before))["history"][-1]["reason"] == "account locked"
            resp = await client.post("/v1/transfers", json={"sender": victim, "recipient": rid(),
                                                            "amount_cents": 100},
                                     headers=as_user(victim))
            assert resp.status == 423
            assert (await resp.json()) == {"error": "account locked: new device and password reset"}
            await pub.publish("recovery", recovery(fraudster, "closed_fraudulent", "mule"))
            await pub.publish("recovery", recovery(fraudster, "restored"))  # a ban is for good
        async with serving(payment) as client:  # rebuilt from the log
            assert (await history_of(client, before)) == ["pending", "held"]
            resp = await client.post("/v1/transfers", json={"sender": victim, "recipient": rid(),
                                                            "amount_cents": 100},
                                     headers=as_user(victim))
            assert resp.status == 423
            await pub.publish("recovery", recovery(victim, "restored"))

            async def unlocked():
                resp = await client.post("/v1/transfers", json={
                    "sender": victim, "recipient": rid(), "amount_cents": 100},
                    headers=as_user(victim))
                return resp.status == 201
            await eventually(unlocked)
            resp = await client.post("/v1/transfers", json={"sender": fraudster, "recipient": rid(),
                                                            "amount_cents": 100},
                                     headers=as_user(fraudster))
            assert resp.status == 423 and "closed for fraud" in (await resp.json())["error"]
        await tap.drain()
    senders = [e.sender for e in tap.events("transfer-requests")]
    assert senders.count(acc(victim)) == 2 and acc(fraudster) not in senders  # refused: unpublished


@aio
async def test_chargebacks_label_the_transfers_sender(kafka, fast_payment):
    sender = rid()
    async with Tap("labels") as tap, serving(payment) as client:
        tid = (await send_money(client, sender))["transfer_id"]
        back_office = as_internal()
        resp = await client.post("/v1/chargebacks", headers=back_office,
                                 json={"transfer_id": tid, "category": "stolen_card"})
        assert resp.status == 202, await resp.text()
        label = await tap.first("labels", id=(await resp.json())["id"])
        resp = await client.post("/v1/chargebacks", json={"transfer_id": "unknown-transfer"},
                                 headers=back_office)
        assert resp.status == 404 and (await resp.json())["error"] == "unknown transfer"
        for bad in ({"transfer_id": tid, "amount_cents": 5}, {"category": "x"}):
            resp = await client.post("/v1/chargebacks", json=bad, headers=back_office)
            assert resp.status == 400
        resp = await client.post("/v1/transfers", json={"sender": sender, "recipient": "r",
                                                        "amount_cents": 0}, headers=as_user(sender))
        assert resp.status == 400 and "amount_cents" in (await resp.json())["error"]
    assert (label.kind, label.account, label.transfer_id, label.scenario) == (
        "chargeback", acc(sender), tid, "stolen_card")


# --- assistant -------------------------------------------------------------------------------
async def say(pub, sender: str, recipient: str, conv: str, text: str) -> s.MessageSent:
    req = rq.MessageRequest(sender=sender, recipient=recipient, conversation=conv, text=text)
    event = rq.message_event(req, uuid.uuid4().hex, now_ms())
    await pub.publish("messages", event)
    return event


async def suggestions(client, user: str, conv: str) -> list:
    resp = await client.get("/v1/suggestions", params={"user": user, "conversation": conv},
                            headers=as_user(user))
    assert resp.status == 200
    return (await resp.json())["suggestions"]


async def switch(client, user: str, enabled: bool):
    resp = await client.put(f"/v1/users/{user}/assistant", json={"enabled": enabled},
                            headers=as_user(user))
    assert resp.status == 200, await resp.text()
    return await resp.json()


@aio
async def test_money_talk_gets_a_suggestion_and_the_response_is_published(kafka):
    alice, bob, conv = rid(), rid(), rid("conv")
    async with Tap("assistant-events") as tap, publisher() as pub, serving(assistant) as client:
        await switch(client, bob, True)
        await say(pub, alice, bob, conv, "on se voit demain ?")  # no money talk: no suggestion
        await say(pub, alice, bob, conv, "tu me dois 25€ pour le resto")
        first = (await eventually(lambda: suggestions(client, bob, conv)))[0]
        assert first["amount_cents"] == 2500
        suggested = await tap.first("assistant-events", id=f"{first['suggestion_id']}.s")
        assert (suggested.kind, suggested.counterparty) == ("suggested", acc(alice))
        assert [e.kind for e in tap.events("assistant-events") if e.user == acc(bob)] == [
            "suggested"]  # one, for the money talk only

        await say(pub, alice, bob, conv, "et 30 euros pour le cadeau")  # replaces the first

        async def replaced():
            found = await suggestions(client, bob, conv)
            return found if found[0]["suggestion_id"] != first["suggestion_id"] else None
        [second] = await eventually(replaced)
        sid = second["suggestion_id"]
        assert second["amount_cents"] == 3000
        answer = {"user": bob, "response": "accepted"}
        resp = await client.post(f"/v1/suggestions/{first['suggestion_id']}/response", json=answer,
                                 headers=as_user(bob))
        assert resp.status == 404  # replaced
        resp = await client.post(f"/v1/suggestions/{sid}/response", json={**answer, "user": alice},
                                 headers=as_user(alice))
        assert resp.status == 403  # shown to bob, not alice (alice's own token)
        assert "another user" in (await resp.json())["error"]
        resp = await client.post(f"/v1/suggestions/{sid}/response",
                                 json={"user": bob, "response": "edited", "amount_cents": 2000},
                                 headers=as_user(bob))
        assert resp.status == 202, await resp.text()
        response = await tap.first("assistant-events", id=(await resp.json())["id"])
        assert (response.kind, response.amount_cents, response.amount_edited) == (
            "edited", 2000, True)
        assert await suggestions(client, bob, conv) == []
        resp = await client.post(f"/v1/suggestions/{sid}/response", json=answer,
                                 headers=as_user(bob))
        assert resp.status == 404  # already answered
        resp = await client.post("/v1/suggestions/x/response",
                                 json={"user": bob, "response": "maybe"}, headers=as_user(bob))
        assert resp.status == 400
        resp = await client.get("/v1/suggestions", params={"user": bob}, headers=as_user(bob))
        assert resp.status == 400


@aio
async def test_the_assistant_switch_is_honoured_and_survives_restarts(kafka):
    carol, dave, erin, friend, conv = rid(), rid(), rid(), rid(), rid("conv")

    async def suggested(client, pub) -> dict:
        """Money talk to carol and erin, then to dave, from one sender (one partition, so in
        order): once dave's suggestion is there, theirs would be too."""
        for user in (carol, erin, dave):
            await say(pub, friend, user, conv, "rembourse-moi les 30 euros du cadeau")
        await eventually(lambda: suggestions(client, dave, conv))
        found = {user: len(await suggestions(client, user, conv)) for user in (carol, erin)}
        for user in (carol, erin, dave):  # answer, so that the next round starts empty
            for x in await suggestions(client, user, conv):
                await client.post(f"/v1/suggestions/{x['suggestion_id']}/response",
                                  json={"user": user, "response": "declined"},
                                  headers=as_user(user))
        return found

    async with Tap("account-events") as tap, publisher() as pub:
        async with serving(assistant) as client:
            await switch(client, dave, True)
            await switch(client, carol, True)
            off = await switch(client, carol, False)
            event = await tap.first("account-events", id=off["id"])
            assert (event.account, event.kind) == (acc(carol), "assistant_disabled")
            assert await suggested(client, pub) == {carol: 0, erin: 0}  # off, and never on
            resp = await client.put(f"/v1/users/{carol}/assistant", json={"enabled": "no"},
                                    headers=as_user(carol))
            assert resp.status == 400
            resp = await client.put(f"/v1/users/{'x' * 200}/assistant", json={"enabled": True},
                                    headers=as_user(carol))
            assert resp.status == 400
        async with serving(assistant) as client:  # the switches are read back from the log
            assert await suggested(client, pub) == {carol: 0, erin: 0}
            await switch(client, carol, True)
            assert await suggested(client, pub) == {carol: 1, erin: 0}
