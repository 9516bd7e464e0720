"""The payment service (port 8082): takes transfers, applies the stream's decisions, pays out.

Owns each transfer's lifecycle. A transfer waits out the availability delay
(``VIGIE_AVAILABILITY_DELAY_S``, 30 s), the window in which Vigie decides, and is never paid
out without a decision (``EFFECTS``; none by then: ``VIGIE_NO_DECISION_FALLBACK`` holds or
blocks it, and a late one acts through ``late_steps``). Only the first automated decision
acts; analysts' act on held transfers only; shadow ones never. A recovery case locks its
account (new transfers get 423). Every change is published as a ``TransferStatus`` (id
``<transfer>.<n>``), and applied in memory only once the broker has it; on start, the state
is rebuilt from the log before serving.

A transfer sent with an ``Idempotency-Key`` takes the key's keyed hash as its id, so a retry
finds it (in memory or, after a restart, in the log) and gets the same answer, or 422 for
another body; past ``VIGIE_PUBLISH_DEADLINE_S`` the answer is 503 with ``Retry-After`` and the
publish goes on, joined by the retry (``idempotency``). Hard limits (``contracts.limits``) are
checked before anything is published.

The state diagram, why, and how it would scale: docs/services.md#payment
"""
from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Awaitable, Callable, Optional

import msgspec
from aiohttp import web
from aiokafka.errors import KafkaError

from pipelines.contracts import limits as limits_mod, schemas as s
from pipelines.contracts.limits import DAY_MS
from pipelines.contracts.privacy import pseudonymize
from pipelines.contracts.settings import env_seconds
from pipelines.services import idempotency as idem, requests as rq
from pipelines.services.auth import acting_for, acting_for_account, internal
from pipelines.services.common import (ApiError, GroupReader, LogReader, Service, now_ms, read_json,
                                       serve)

log = logging.getLogger(__name__)
TICK_S = 0.2  # how often due payouts and missed deadlines are looked at
OPEN = ("pending", "approved", "warned", "released")  # not paid out yet: a lock holds them
RETURNED = "declined: money back to the sender"
# What a decision does: an automated one to a pending transfer, an analyst's to a held one.
EFFECTS = {
    "pending": {"approve": ["approved"], "warn": ["warned"], "hold": ["held"],
                "block": ["blocked", "returned"]},
    "held": {"approve": ["released"], "block": ["blocked", "returned"]},
}
# The sender may call a transfer off until it is paid out: the money goes back at once.
CANCELLABLE = OPEN + ("held",)
CANCELLED = [("cancelled", "cancelled by the sender"),
             ("returned", "cancelled: money back to the sender")]
FALLBACK = "fallback: no decision by deadline"
FALLBACKS = {"hold": [("held", FALLBACK)], "block": [("blocked", FALLBACK), ("returned", RETURNED)]}
LATE = "late decision:"  # how a decision that came after the fallback hold is recorded


def late_steps(d: s.Decision) -> list[tuple[str, str]]:
    """What an automated decision does to a transfer the fallback held: a block blocks it
    (the money goes back); a hold, an approve or a warn keeps it held for an analyst. Either
    way the decision is recorded in the status reason, with what it saw."""
    why = f"{LATE}{d.action} model={d.model_version} score={d.score:.3f}"
    if d.rule_hits:
        why += f" rules={','.join(d.rule_hits)}"
    if d.list_hits:
        why += f" lists={','.join(d.list_hits)}"
    if d.reasons:
        why += f" reasons={','.join(r.feature for r in d.reasons)}"
    if d.action == "block":
        return [("blocked", why[:500]), ("returned", RETURNED)]
    kept = "; kept held for an analyst"
    return [("held", why[:500 - len(kept)] + kept)]


@dataclass
class Transfer:
    request: s.TransferRequested
    status: str = "pending"
    pay_at: Optional[int] = None  # set while approved, warned or released
    history: list = field(default_factory=list)
    # Held from looking at the state to applying the change published from it, so that two
    # changes (a decision and the deadline, say) never both start from the same state.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    def view(self) -> dict:
        r = self.request
        return {"transfer_id": r.transfer_id, "sender": r.sender, "recipient": r.recipient,
                "amount_cents": r.amount_cents, "status": self.status,
                "payout_due_ts": r.payout_due_ts, "history": self.history}


class Payment(Service):
    name = "payment"

    def __init__(self, conf=None):
        super().__init__(conf)
        self.delay_ms = int(env_seconds("VIGIE_AVAILABILITY_DELAY_S", 30) * 1000)
        self.cooling_ms = int(env_seconds("VIGIE_WARN_COOLING_OFF_S", 10) * 1000)
        self.fallback = os.environ.get("VIGIE_NO_DECISION_FALLBACK") or "hold"
        if self.fallback not in FALLBACKS:
            raise ValueError("VIGIE_NO_DECISION_FALLBACK must be 'hold' or 'block'")
        self.transfers: dict[str, Transfer] = {}
        self.open: dict[str, Transfer] = {}  # not yet paid, returned or held: the timer's work
        self.locks: dict[str, str] = {}  # account hash -> why it is locked
        self.banned: set[str] = set()
        # Changes the log refused, each tried again every tick, with the state it finds then.
        self.retries: deque[Callable[[], Awaitable[None]]] = deque()
        self.limits = limits_mod.load()
        self.by_sender: dict[str, list[Transfer]] = {}  # in creation order: for the limits
        self.flights = idem.Flights()  # creations (by transfer id) and keyed chargebacks
        self.replies = idem.Replies()  # keyed chargebacks' answers

    def routes(self):
        return [web.post("/v1/transfers", self.create), web.get("/v1/transfers/{id}", self.get),
                web.post("/v1/chargebacks", self.chargeback),
                web.post("/v1/transfers/{id}/cancel", self.cancel)]

    # --- state changes: one place, used live and when replaying the log -------------------
    def _record(self, t: Transfer, status: str, reason: str, ts: int) -> None:
        r = t.request
        t.status = status
        t.history.append({"status": status, "ts": ts, "reason": reason})
        t.pay_at = {"approved": r.payout_due_ts,
                    "warned": max(r.payout_due_ts, ts + self.cooling_ms),
                    "released": max(r.payout_due_ts, ts)}.get(status)
        if status in OPEN:
            self.open[r.transfer_id] = t
        else:
            self.open.pop(r.transfer_id, None)

    async def _change(self, t: Transfer, steps_for: Callable[[Transfer], list]) -> None:
        """Publish the steps ``steps_for`` finds in the transfer's state, then apply them.
        Memory is never ahead of the log: nothing is acted on (a payout, a GET) that a restart
        would not find. A failed publish raises with memory as it was; the cause is looked at
        again later (``_act``, the timer), and a step the log did get is published again with
        its id, which the replay skips."""
        async with t.lock:
            steps = steps_for(t)
            r, ts, n = t.request, now_ms(), len(t.history)
            for i, (status, reason) in enumerate(steps, n + 1):
                await self.publish("transfer-status", s.TransferStatus(
                    id=f"{r.transfer_id}.{i}", ts=ts, transfer_id=r.transfer_id, sender=r.sender,
                    recipient=r.recipient, amount_cents=r.amount_cents, status=status,
                    reason=reason))
            for status, reason in steps:
                self._record(t, status, reason, ts)

    async def _act(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run a change now; if the log refuses it, keep it to run again on the next tick."""
        try:
            await action()
        except KafkaError as exc:
            log.warning("a transfer change did not reach the log (%s): tried again next tick",
                        type(exc).__name__)
            self.retries.append(action)

    # --- HTTP ----------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        req = await read_json(request, rq.TransferRequest)
        acting_for(request, req.sender)  # only the sender's app debits the sender
        sender = pseudonymize("account", req.sender)
        key = idem.header(request)
        # With a key, the transfer id is the key's keyed hash: a retry names the same transfer
        # whatever happened to the first try, and the log holds the key across restarts.
        transfer_id = (idem.key_id(idem.caller_scope(request), key, "transfer")
                       if key is not None else uuid.uuid4().hex)
        event = rq.transfer_event(req, transfer_id, f"{transfer_id}.r", now_ms(), self.delay_ms)
        t = self.transfers.get(transfer_id)
        if t is not None:  # the key's transfer: made, or on its way to the log
            if rq.transfer_content(t.request) != rq.transfer_content(event):
                raise ApiError(422, f"{idem.HEADER} already used for another transfer")
            await self.flights.wait(transfer_id, idem.deadline_s())
            return self._created(t, replayed=True)
        if sender in self.locks:
            raise ApiError(423, f"account locked: {self.locks[sender]}")
        refusal = self.limits.refusal(event.amount_cents, event.currency, *self._sent(sender),
                                      event.ts)
        if refusal:
            raise ApiError(422, refusal)
        # Known before it is published: its decision may come back before the ack does, and a
        # retry with the key joins the publish instead of starting another.
        t = self.transfers[transfer_id] = Transfer(event)
        self.by_sender.setdefault(sender, []).append(t)
        self.flights.start(transfer_id, self._publish_new(t))
        # A keyless client cannot retry safely: it waits for the outcome, as before.
        await self.flights.wait(transfer_id, idem.deadline_s() if key is not None else None)
        return self._created(t)

    async def _publish_new(self, t: Transfer) -> None:
        """The request into the log, then its first status. Runs to its end even if the client
        stopped waiting: aiokafka's idempotent producer retries a record until the broker has
        it (it never expires one), so a record sent in an outage lands when the broker is
        back. If the broker refuses it, it is forgotten: a retry creates it."""
        r = t.request
        try:
            await self.publish("transfer-requests", r)
        except BaseException:
            del self.transfers[r.transfer_id]
            self.by_sender[r.sender].remove(t)
            raise
        if not t.history:  # in the log, undecided: open, as a replay finds it
            self.open[r.transfer_id] = t
        await self._act(partial(self._change, t, lambda t: [] if t.history else [("pending", "")]))

    @staticmethod
    def _created(t: Transfer, replayed: bool = False) -> web.Response:
        """The answer to a transfer's creation, the same every time it is asked for: the
        status it was created in (its first in the log)."""
        r = t.request
        return web.json_response(
            {"transfer_id": r.transfer_id,
             "status": t.history[0]["status"] if t.history else "pending",
             "payout_due_ts": r.payout_due_ts},
            status=201, headers={idem.REPLAYED: "true"} if replayed else None)

    def _sent(self, sender: str) -> tuple[Optional[int], int]:
        """For the limits: when the sender's first transfer was made, and what its transfers
        of the last 24 h add up to (all but those whose money went back)."""
        mine = self.by_sender.get(sender, ())
        since = now_ms() - DAY_MS
        recent = sum(t.request.amount_cents for t in mine
                     if t.request.ts >= since and t.status != "returned")
        return (mine[0].request.ts if mine else None), recent

    def _find(self, transfer_id: str) -> Transfer:
        if transfer_id not in self.transfers:
            raise ApiError(404, "unknown transfer")
        return self.transfers[transfer_id]

    async def get(self, request: web.Request) -> web.Response:
        t = self._find(request.match_info["id"])
        acting_for_account(request, t.request.sender)  # the sender's only: see docs/services.md
        return web.json_response(t.view())

    async def chargeback(self, request: web.Request) -> web.Response:
        internal(request)  # the card network's word, relayed by the bank's back office
        req = await read_json(request, rq.ChargebackRequest)
        t = self._find(req.transfer_id)

        async def handle() -> web.Response:
            # One chargeback label per transfer, whatever the retries: the id says so.
            label = rq.chargeback_label(req, t.request, f"{req.transfer_id}.cb", now_ms())
            await self.publish("labels", label)
            return web.json_response({"id": label.id}, status=202)
        scope = idem.caller_scope(request)
        return await idem.once(self.replies, self.flights, request, scope, "chargeback",
                               msgspec.json.encode(req), handle)

    async def cancel(self, request: web.Request) -> web.Response:
        """The sender calls the transfer off before its payout (a warning heeded, a second
        thought): ``cancelled`` then ``returned``. Asked again, the same answer; 409 once the
        transfer is paid out, blocked or returned otherwise."""
        t = self._find(request.match_info["id"])
        acting_for_account(request, t.request.sender)  # the sender's app only

        async def handle() -> web.Response:
            await self.flights.wait(t.request.transfer_id, idem.deadline_s())  # its creation
            if not t.history:  # its first status is not in the log yet (the timer retries it)
                raise idem.unavailable(idem.deadline_s())
            await self._change(t, lambda t: CANCELLED if t.status in CANCELLABLE else [])
            done = next((h for h in t.history if h["status"] == "cancelled"), None)
            if done is None:
                raise ApiError(409, f"cannot cancel: the transfer is {t.status}")
            return web.json_response({"transfer_id": t.request.transfer_id, "status": "cancelled",
                                      "cancelled_ts": done["ts"]})
        return await idem.once(self.replies, self.flights, request, idem.caller_scope(request),
                               f"cancel:{t.request.transfer_id}", b"", handle)

    # --- decisions, deadlines, locks -----------------------------------------------------
    @staticmethod
    def _decided(d: s.Decision, t: Transfer) -> list[tuple[str, str]]:
        analyst = d.model_version.startswith("analyst:")
        if not analyst and t.status == "held" and t.history and t.history[-1]["reason"] == FALLBACK:
            return late_steps(d)  # the first automated decision, after the hold
        acts_on = "held" if analyst else "pending"
        statuses = EFFECTS[acts_on].get(d.action) if t.status == acts_on else None
        # anything else (a repeat or a redundant decision) changes nothing
        why = f"decision:{d.action} model={d.model_version}"
        return [(st, RETURNED if st == "returned" else why) for st in statuses or ()]

    async def on_decision(self, d: s.Decision) -> None:
        t = self.transfers.get(d.transfer_id)
        if not d.shadow and t is not None:
            await self._act(partial(self._change, t, partial(self._decided, d)))

    def _due(self, t: Transfer) -> list[tuple[str, str]]:
        now = now_ms()
        if t.status == "pending" and now >= t.request.payout_due_ts:
            return FALLBACKS[self.fallback]
        if t.pay_at is not None and now >= t.pay_at:
            return [("paid_out", "availability delay over")]
        return []

    async def on_tick(self) -> None:
        for _ in range(len(self.retries)):  # first what the log refused before, in order
            await self._act(self.retries.popleft())
        if self.retries:  # still refused: nothing acts ahead of it (a lock's hold, a decision)
            return
        for t in list(self.open.values()):
            if self._due(t):
                await self._change(t, self._due)

    async def _timer(self) -> None:
        while True:
            try:
                await self.on_tick()
            except KafkaError as exc:  # the broker away or refusing: due again next tick
                log.warning("payout timer: a change did not reach the log (%s)",
                            type(exc).__name__)
            except Exception:
                log.exception("payout timer")
            await asyncio.sleep(TICK_S)

    def _set_lock(self, ev: s.RecoveryEvent) -> None:
        if ev.state == "closed_fraudulent":
            self.banned.add(ev.account)
            self.locks[ev.account] = f"closed for fraud{': ' + ev.reason if ev.reason else ''}"
        elif ev.state == "contained" and ev.account not in self.banned:
            self.locks[ev.account] = ev.reason or "account recovery in progress"
        elif ev.state in ("restored", "closed_legitimate") and ev.account not in self.banned:
            self.locks.pop(ev.account, None)

    async def _hold_open(self, account: str) -> None:
        def hold(t: Transfer) -> list[tuple[str, str]]:
            return [("held", "account locked")] if t.status in OPEN else []
        for t in [t for t in self.open.values() if t.request.sender == account]:
            await self._change(t, hold)

    async def on_recovery(self, ev: s.RecoveryEvent) -> None:
        self._set_lock(ev)
        if ev.account in self.locks:
            await self._act(partial(self._hold_open, ev.account))

    # --- start: rebuild from the log, then follow it -------------------------------------
    async def _replay_request(self, ev: s.TransferRequested) -> None:
        if ev.transfer_id in self.transfers:  # published again after an unknown outcome
            return
        t = self.open[ev.transfer_id] = self.transfers[ev.transfer_id] = Transfer(ev)
        self.by_sender.setdefault(ev.sender, []).append(t)

    async def _replay_status(self, ev: s.TransferStatus) -> None:
        t = self.transfers.get(ev.transfer_id)
        # A step is published again (same id) when its first publish failed but reached the log.
        if t is not None and int(ev.id.rpartition(".")[2]) > len(t.history):
            self._record(t, ev.status, ev.reason, ev.ts)

    async def _replay_recovery(self, ev: s.RecoveryEvent) -> None:
        self._set_lock(ev)

    async def start(self) -> None:
        requests, statuses, recovery, decisions = await asyncio.gather(
            *(self.start_reader(LogReader(self.conf, topic))
              for topic in ("transfer-requests", "transfer-status", "recovery")),
            self.start_reader(GroupReader(self.conf, "decisions", "vigie-payment")))
        await requests.catch_up(self._replay_request)  # first: a status needs its transfer
        await statuses.catch_up(self._replay_status)
        await recovery.catch_up(self._replay_recovery)
        await asyncio.gather(requests.stop(), statuses.stop())  # our own writes from now on
        for account in list(self.locks):  # a lock may have come in while we were down
            await self._hold_open(account)
        log.info("payment state rebuilt: %d transfers (%d open), %d locked accounts",
                 len(self.transfers), len(self.open), len(self.locks))
        self.background(recovery.follow(self.on_recovery), "recovery reader")
        self.background(decisions.follow(self.on_decision), "decisions consumer")
        self.background(self._timer(), "payout timer")


def build_app(conf=None) -> web.Application:
    return Payment(conf).app()


def run(port: int | None = None) -> None:
    serve(build_app(), Payment.name, port)
