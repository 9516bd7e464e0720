"""Two versions of one event schema side by side: ``transfer-requests`` v1 (the payment
service's today) and v2 (the amount and its currency as one value, see
``schemas.TransferRequestedV2``). Both are read as the same struct; a version the topic does not
list is dead-lettered with its reason; on the real broker, a log whose transfer requests come in
both versions, interleaved, is decided exactly as the same log in v1."""
from __future__ import annotations

import asyncio
import base64
import math

import msgspec
import pytest
from process_support import wait_for
from stream_support import (DecisionWatcher, compare_features, namespaced, replayed_features,
                            simulated_log)

from features.routing import order_key
from pipelines.contracts import schemas as s
from pipelines.contracts.topics import InvalidEvent, decode
from pipelines.simulator.events import hashed, synthetic_log


def as_v2(tr: s.TransferRequested) -> s.TransferRequestedV2:
    """The same request as a v2 producer writes it."""
    fields = {f: getattr(tr, f) for f in tr.__struct_fields__
              if f not in ("v", "amount_cents", "currency")}
    return s.TransferRequestedV2(**fields, amount=s.Money(tr.amount_cents, tr.currency))


def wire(event) -> dict:
    return msgspec.json.decode(s.encode(event))


# --- decoding, without Kafka ------------------------------------------------------------------
def test_a_v2_request_reads_as_the_v1_struct_of_the_same_request():
    transfers = [e for e in synthetic_log(n_accounts=60, days=3, seed=5)
                 if type(e) is s.TransferRequested]
    first = transfers[0]
    bare = msgspec.structs.replace(first, id="bare", conversation=None, device=None, ip=None,
                                   card=None, suggestion_id=None)
    full = msgspec.structs.replace(  # every optional field set, another currency
        first, id="full", currency="CHF", conversation=hashed("conversation", "c"),
        device=hashed("device", "d"), ip=hashed("ip", "i"), card=hashed("card", "k"),
        suggestion_id="s-1", amount_edited=True, recipient_edited=True)
    for tr in [*transfers, bare, full]:
        v2 = as_v2(tr)
        assert wire(v2)["v"] == 2 and "amount_cents" not in wire(v2)
        assert decode("transfer-requests", s.encode(v2)) == \
            decode("transfer-requests", s.encode(tr)) == tr


def refusal(raw: bytes, topic: str = "transfer-requests") -> str:
    with pytest.raises(InvalidEvent) as refused:
        decode(topic, raw)
    return str(refused.value)


def test_a_version_the_topic_does_not_read_is_refused_with_its_reason():
    tr = next(e for e in synthetic_log(n_accounts=20, days=1, seed=2)
              if type(e) is s.TransferRequested)
    v1, v2 = wire(tr), wire(as_v2(tr))
    assert refusal(msgspec.json.encode({**v2, "v": 3})) == (
        "Invalid enum value 3 - at `$.v`: transfer-requests is read in schema versions 1, 2")
    # each version has its own shape: a v1 body stamped 2, or a v2 body stamped 1, is refused
    assert "unknown field `amount_cents`" in refusal(msgspec.json.encode({**v1, "v": 2}))
    assert "unknown field `amount`" in refusal(msgspec.json.encode({**v2, "v": 1}))
    assert "missing required field `currency`" in refusal(msgspec.json.encode(
        {**v2, "amount": {"cents": 100}}))  # v2 always states the currency
    assert "Expected `int`, got `str`" in refusal(msgspec.json.encode({**v2, "v": "2"}))
    # no "v" was version 1 before v2 existed, and still is
    assert decode("transfer-requests", msgspec.json.encode(
        {k: x for k, x in v1.items() if k != "v"})) == tr
    # a topic with one version refuses any other, as before
    message = next(e for e in synthetic_log(n_accounts=20, days=1, seed=2)
                   if type(e) is s.MessageSent)
    assert refusal(msgspec.json.encode({**wire(message), "v": 2}), "messages") == \
        "Invalid enum value 2 - at `$.v`"


# --- on the real broker -----------------------------------------------------------------------
async def _publish(records) -> None:
    """(topic, event or raw bytes) in order; raw bytes go as they are."""
    from pipelines.kafka.clients import Publisher

    pub = await Publisher(linger_ms=5).start()
    try:
        pending = []
        for topic, item in records:
            if isinstance(item, bytes):
                pending.append(await pub.producer.send(topic, item, key=b"k"))
            else:
                pending.append(await pub.publish(topic, item, wait=False))
        await asyncio.gather(*pending)
    finally:
        await pub.stop()


TOPIC_OF = {s.MessageSent: "messages", s.AccountEvent: "account-events",
            s.TransferRequested: "transfer-requests", s.AssistantEvent: "assistant-events",
            s.Label: "labels"}


def outcome(a: s.Decision, b: s.Decision) -> list[tuple]:
    """What differs between two decisions of the same events: features, score (NaN without a
    model), rule and list hits, action. Not the recovery stage's holds: they follow its cases,
    opened as its own records arrive, so they depend on timing, not on the events; a decision
    with one may differ from its twin only by that hit and by being a hold."""
    def parts(d: s.Decision) -> tuple:
        return (d.features, None if math.isnan(d.score) else d.score, d.list_hits,
                [hit for hit in d.rule_hits if not hit.startswith("recovery:")])

    pairs = list(zip(parts(a), parts(b)))
    if not any(hit.startswith("recovery:") for hit in a.rule_hits + b.rule_hits):
        pairs.append((a.action, b.action))
    return [(x, y) for x, y in pairs if x != y]


@pytest.mark.kafka
def test_v1_and_v2_requests_interleaved_are_decided_as_the_same_log_in_v1(
        kafka, processes, session_dir):
    """The same simulated day twice, under two tags, interleaved in event time: once all v1,
    once with every other transfer request in v2. One worker decides both; every transfer gets
    the same decision and features in both copies, and the features the replay gives the v1
    log. A v3 record is dead-lettered with its reason, and no v2 record is."""
    day = simulated_log(session_dir / "versions-lake", seed=515, tag="sv-", users=40, days=1)
    plain, mixed = namespaced(day, "1"), namespaced(day, "2")  # "1sv-t5" and "2sv-t5": twins
    transfers = [e for e in mixed if type(e) is s.TransferRequested]
    in_v2 = {t.id for t in transfers[1::2]}
    records = [(TOPIC_OF[type(e)], as_v2(e) if e.id in in_v2 else e)
               for e in sorted(plain + mixed, key=order_key)]
    unknown = msgspec.json.encode({**wire(as_v2(transfers[0])), "v": 3, "id": "sv3-unknown"})
    records.insert(len(records) // 2, ("transfer-requests", unknown))
    v2_bytes = {s.encode(e) for _, e in records if type(e) is s.TransferRequestedV2}
    assert len(v2_bytes) == len(in_v2) > 15

    with DecisionWatcher(("decisions", "dead-letters")) as watcher:
        asyncio.run(_publish(records))
        processes.start("worker", "worker")
        ids = [t.transfer_id for t in transfers]
        twins = {t: "1" + t.removeprefix("2") for t in ids}

        def letters() -> list[s.DeadLetter]:
            return [msgspec.json.decode(raw, type=s.DeadLetter)
                    for _, raw in list(watcher.other.get("dead-letters", []))]

        def v2_refused() -> list[str]:
            return [x.reason for x in letters() if base64.b64decode(x.original_b64) in v2_bytes]

        def refused() -> list[s.DeadLetter]:
            return [x for x in letters() if base64.b64decode(x.original_b64) == unknown]

        wait_for(lambda: v2_refused() or refused() and len(watcher.decisions(
            [*ids, *twins.values()])) == 2 * len(ids), timeout=120, interval=0.5,
            what="both copies decided and the v3 record dead-lettered")
        assert not v2_refused(), f"v2 records dead-lettered: {v2_refused()[:3]}"
        decided = watcher.decisions([*ids, *twins.values()])
        (letter, *_) = refused()

    first = {t: ds[0] for t, ds in decided.items()}
    differ = {t: outcome(first[t], first[twins[t]]) for t in ids}
    differ = {t: what for t, what in differ.items() if what}
    assert not differ, f"{len(differ)} of {len(ids)} transfers decided differently: {differ}"
    replayed = replayed_features(plain)
    assert not compare_features({twins[t]: first[t] for t in ids}, replayed)
    assert all(first[t].features for t in ids)
    assert letter.topic == "transfer-requests" and letter.reason == (
        "Invalid enum value 3 - at `$.v`: transfer-requests is read in schema versions 1, 2")
