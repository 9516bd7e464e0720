"""The takeover challenge only the owner can answer (issue 11, item 4), on the real broker with
a worker subprocess and the payment and messaging services in process.

The attacker holds the victim's app session (a valid end-user token for the account): the
notifications, the case id, the answer endpoint. The owner also holds a contact verified
before the compromise, where the code goes; the test reads it as the delivery gateway does."""
from __future__ import annotations

import asyncio

import pytest
from recovery_support import (answer, code_for, notes, refused, state_is, takeover, transitions,
                              worker_started)
from service_support import Tap, acc, aio, as_user, eventually, publisher, rid, serving

from pipelines.recovery import cases as rc
from pipelines.services import messaging, payment

pytestmark = pytest.mark.kafka
TOPICS = ("recovery", "owner-verification", "notifications", "decisions")


def wrong(code: str, n: int) -> list[str]:
    """``n`` codes that are not ``code`` (an attacker's guesses)."""
    return [g for g in (f"{i:06d}" for i in range(n + 1)) if g != code][:n]


async def challenged(tap, pub, pay, msg, victim: str) -> tuple[str, str]:
    """A takeover, locked and challenged; (case id, the code the owner's contact received)."""
    await takeover(pub, victim)
    case_id = (await state_is(tap, acc(victim), "owner_verification", 60)).case_id
    resp = await refused(pay, {"sender": victim, "recipient": rid(), "amount_cents": 90_000})
    assert resp.status == 423, await resp.text()
    code = await eventually(lambda: code_for(msg, victim, case_id))
    return case_id, code


async def settled(tap, seconds: float = 3.0) -> None:
    """Give the worker time to act on what was sent, and read everything it wrote."""
    await asyncio.sleep(seconds)
    await tap.drain()


@aio
async def test_the_attackers_session_cannot_read_the_code_nor_unlock_and_the_owner_can(kafka,
                                                                                      processes):
    victim = rid()
    async with Tap(*TOPICS) as tap, publisher() as pub, serving(payment) as pay, \
            serving(messaging) as msg:
        await worker_started(tap, pay, processes)
        case_id, code = await challenged(tap, pub, pay, msg, victim)
        session = as_user(victim)  # the attacker's: the victim's own app session

        # the code is not readable with the session: the outbox is for the gateway only
        outbox = f"/v1/owner-channel/{victim}/outbox"
        resp = await msg.get(outbox, headers=session)
        assert resp.status == 403 and "internal" in (await resp.json())["error"]
        assert (await msg.get(outbox)).status == 401
        # the challenge shows (the case id is no secret), the code does not
        (challenge,) = await notes(msg, victim, "step_up_challenge")
        assert challenge["case_id"] == case_id
        listed = await msg.get(f"/v1/notifications/{victim}", headers=session)
        assert code not in await listed.text()

        # "it was me" without the code is refused at the door and publishes nothing
        resp = await answer(msg, victim, case_id, "it_was_me", None, session)
        assert resp.status == 400 and "code" in (await resp.json())["error"]
        # another user's session cannot answer for the victim, even with the right code
        resp = await answer(msg, victim, case_id, "it_was_me", code, as_user(rid()))
        assert resp.status == 403
        # guesses are taken, and change nothing
        for guess in wrong(code, rc.MAX_CODE_ATTEMPTS - 1):
            resp = await answer(msg, victim, case_id, "it_was_me", guess, session)
            assert resp.status == 202
        await settled(tap)
        assert [e.state for e in transitions(tap, acc(victim))] == [
            "opened", "contained", "owner_verification"]
        resp = await pay.post("/v1/transfers", json={"sender": victim, "recipient": rid(),
                                                     "amount_cents": 90_000}, headers=session)
        assert resp.status == 423

        # the owner, with the code from the verified contact (a third try: within the limit)
        resp = await answer(msg, victim, case_id, "confirm_compromise", code)
        assert resp.status == 202
        secured = await state_is(tap, acc(victim), "secured")
        assert secured.actor == "owner" and "verified contact" in secured.reason
        await state_is(tap, acc(victim), "restored")

        # the code was never in a topic in clear: only its keyed hash, bound to the case
        await tap.drain()
        assert not [r for r in tap.records if code.encode() in (r.value or b"")]
        sent = [e for e in tap.events("owner-verification") if e.case_id == case_id]
        assert {e.kind for e in sent} == {"code_sent", "answer"}
        assert all(e.code_digest.startswith("v_") for e in sent)


@aio
async def test_wrong_codes_past_the_limit_escalate_to_an_analyst_and_the_account_stays_locked(
        kafka, processes):
    victim = rid()
    async with Tap(*TOPICS) as tap, publisher() as pub, serving(payment) as pay, \
            serving(messaging) as msg:
        await worker_started(tap, pay, processes)
        case_id, code = await challenged(tap, pub, pay, msg, victim)
        session = as_user(victim)
        for guess in wrong(code, rc.MAX_CODE_ATTEMPTS):
            resp = await answer(msg, victim, case_id, "it_was_me", guess, session)
            assert resp.status == 202
        escalated = await state_is(tap, acc(victim), "escalated")
        assert escalated.actor == "stream"
        assert f"{rc.MAX_CODE_ATTEMPTS} wrong codes" in escalated.reason
        # the right code, now, changes nothing: the challenge has failed
        resp = await answer(msg, victim, case_id, "it_was_me", code, session)
        assert resp.status == 202
        await settled(tap)
        assert [e.state for e in transitions(tap, acc(victim))] == [
            "opened", "contained", "owner_verification", "escalated"]
        resp = await pay.post("/v1/transfers", json={"sender": victim, "recipient": rid(),
                                                     "amount_cents": 90_000}, headers=session)
        assert resp.status == 423 and "locked" in (await resp.json())["error"]
