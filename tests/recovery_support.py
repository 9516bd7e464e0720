"""Helpers for the recovery tests on the real broker (tests/recovery, tests/security): a
takeover by hand, the case's transitions as a tap saw them, the payment service's lock, the
messaging service's notifications, and the owner's verified channel (the gateway's outbox)."""
from __future__ import annotations

import asyncio
import time
import uuid

from service_support import Tap, acc, as_internal, as_user, rid

from pipelines.contracts import schemas as s
from pipelines.contracts.privacy import pseudonymize
from pipelines.kafka.clients import consumer
from pipelines.recovery import cases as rc
from pipelines.services.common import now_ms

DAY = 24 * 3600 * 1000


def account_event(raw: str, kind: str, ts: int, device: str, country: str, n: str = "") -> s.AccountEvent:
    return s.AccountEvent(id=f"rc-{kind}-{uuid.uuid4().hex[:10]}{n}", ts=ts, account=acc(raw),
                          kind=kind, device=pseudonymize("device", device),
                          ip=pseudonymize("ip", f"ip-{device}"), country=country)


async def takeover(pub, victim: str) -> s.AccountEvent:
    """A month-old account taken over now; returns the event that should trigger the case:
    the first login from a new device in another country."""
    now = now_ms()
    await pub.publish("account-events", account_event(victim, "signup", now - 30 * DAY, "home", "FR"))
    await pub.publish("account-events", account_event(victim, "login", now - DAY, "home", "FR"))
    for _ in range(2):
        await pub.publish("account-events", account_event(victim, "login_failed", now_ms(), "evil", "NG"))
    trigger = account_event(victim, "login", now_ms(), "evil", "NG")
    await pub.publish("account-events", trigger)
    for kind in ("device_added", "password_reset"):
        await pub.publish("account-events", account_event(victim, kind, now_ms(), "evil", "NG"))
    return trigger


def transitions(tap: Tap, account: str) -> list[s.RecoveryEvent]:
    return [e for e in tap.events("recovery") if e.account == account and rc.is_transition(e)]


async def state_is(tap: Tap, account: str, state: str, timeout: float = 20.0) -> s.RecoveryEvent:
    return await tap.until(lambda t: next((e for e in transitions(t, account) if e.state == state),
                                          None), timeout)


async def in_the_table(account: str, timeout: float = 20.0) -> None:
    """Wait until the worker's ``recovery-cases`` table has the account's case in its changelog,
    the durable copy a restarted worker recovers. The transitions go out a moment before it
    (the stage publishes, then updates the table): a worker killed in between re-opens the case
    on restart, with the same transition ids."""
    reader = consumer("vigie-recovery-cases-changelog", enable_auto_commit=False)
    await reader.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=200)
            if any(r.key == account.encode() for records in batches.values() for r in records):
                return
        raise AssertionError(f"no case in the recovery table after {timeout}s")
    finally:
        await reader.stop()


async def refused(pay, body: dict, within_s: float = 2.0):
    """POST a transfer until the payment service refuses it (423), for ``within_s``: it applies
    a lock when its own consumer reads the transition, a few ms after the test's tap may have.
    A transfer that slips through before is held by the stream (the account is flagged)."""
    deadline = time.monotonic() + within_s
    while True:
        resp = await pay.post("/v1/transfers", json=body, headers=as_user(body["sender"]))
        if resp.status == 423 or time.monotonic() > deadline:
            return resp
        await asyncio.sleep(0.05)


async def get_json(client, path, headers=None):
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def notes(client, raw: str, kind: str) -> list[dict]:
    found = (await get_json(client, f"/v1/notifications/{raw}", as_user(raw)))["notifications"]
    return [n for n in found if n["kind"] == kind]


async def code_for(msg, raw: str, case_id: str) -> str | None:
    """The newest code the owner's verified contact received for this case, as the delivery
    gateway reads it (an internal token); None until one comes."""
    body = await get_json(msg, f"/v1/owner-channel/{raw}/outbox", as_internal("sms-gateway"))
    codes = [m["code"] for m in body["messages"] if m["case_id"] == case_id]
    return codes[-1] if codes else None


async def answer(msg, raw: str, case_id: str, what: str, code: str | None, headers=None):
    """The owner's app answering the challenge (the attacker's, holding the same session)."""
    body = {"account": raw, "answer": what, **({"code": code} if code is not None else {})}
    return await msg.post(f"/v1/recovery/{case_id}/answer", json=body,
                          headers=headers or as_user(raw))


async def worker_started(tap, pay, processes) -> None:
    """The worker, once an ordinary transfer has been decided."""
    processes.start("worker", "worker")
    sender = rid()
    resp = await pay.post("/v1/transfers", json={"sender": sender, "recipient": rid(),
                                                 "amount_cents": 100}, headers=as_user(sender))
    warm_id = (await resp.json())["transfer_id"]
    await tap.until(lambda t: any(d.transfer_id == warm_id for d in t.events("decisions")), 120)
