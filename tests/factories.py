"""Valid and malformed events for every input topic, built through the public contracts."""
from __future__ import annotations

import itertools
import random

import msgspec

import pipelines.services.requests as rq
from pipelines.contracts import schemas, signatures
from pipelines.contracts.privacy import pseudonymize
from pipelines.contracts.topics import INPUT_TOPICS, MAX_EVENT_BYTES

T0 = 1_790_000_000_000
_seq = itertools.count()


def _n() -> int:
    return next(_seq)


def valid_event(topic: str, rnd: random.Random):
    i = _n()
    a, b = f"user-{rnd.randrange(10_000)}", f"user-{rnd.randrange(10_000)}"
    ts = T0 + i * 1000
    if topic == "messages":
        return rq.message_event(rq.MessageRequest(sender=a, recipient=b, conversation=f"conv-{i}",
                                                  text=f"tu me dois {i % 90 + 1}€ pour le resto"), f"f-m{i}", ts)
    if topic == "account-events":
        return rq.account_event(rq.AccountEventRequest(account=a, kind="login", device=f"dev-{i}",
                                                       ip=f"10.0.{i % 250}.1", country="FR"), f"f-a{i}", ts)
    if topic == "transfer-requests":
        return rq.transfer_event(rq.TransferRequest(sender=a, recipient=b, amount_cents=100 + i,
                                                    device=f"dev-{i}"), f"t{i}", f"f-t{i}", ts, 30_000)
    if topic == "assistant-events":
        msg = valid_event("messages", rnd)
        return rq.suggestion_event(msg, f"sg{i}", ts)
    if topic == "labels":
        return rq.scam_report_label(rq.ScamReportRequest(reporter=a, reported=b, category="romance"),
                                    f"f-l{i}", ts)
    if topic == "analyst-actions":
        return signatures.sign(schemas.AnalystAction(  # as the console writes it: signed
            id=f"f-x{i}", ts=ts, actor="alice", role="analyst", action="claim",
            target_kind="transfer", target=f"t{i}", reason="looking into it"))
    if topic == "model-updates":
        return schemas.ModelUpdate(id=f"f-u{i}", ts=ts, action="shadow", version=f"m-test-{i}",
                                   actor="dana")
    raise ValueError(topic)


def _as_dict(event) -> dict:
    return msgspec.to_builtins(event)


MALFORMATIONS = ["bad_json", "wrong_type", "missing_field", "oversized", "unknown_version",
                 "unknown_field", "raw_identifier", "not_an_object"]


def malformed(topic: str, kind: str, rnd: random.Random) -> bytes:
    """One malformed record of ``kind`` for ``topic``."""
    good = _as_dict(valid_event(topic, rnd))
    if kind == "bad_json":
        return schemas.ENCODER.encode(good)[:-3]
    if kind == "wrong_type":
        good["ts"] = str(good["ts"])
    elif kind == "missing_field":
        good.pop("id")
    elif kind == "oversized":
        good["padding"] = "x" * (MAX_EVENT_BYTES + 10)
    elif kind == "unknown_version":
        good["v"] = 99
    elif kind == "unknown_field":
        good["text"] = "this message body must never be stored"
    elif kind == "raw_identifier":
        for field in ("sender", "account", "user", "actor"):
            if field in good:
                good[field] = "user-123" if field != "actor" else "not a valid actor!"
                break
    elif kind == "not_an_object":
        return b"[1, 2, 3]"
    return msgspec.json.encode(good)


def key_for(topic: str, raw_event) -> bytes:
    return pseudonymize("account", str(_n())).encode()


__all__ = ["INPUT_TOPICS", "MALFORMATIONS", "malformed", "valid_event", "T0"]
