"""The payment service (port 8082): takes transfers, applies the stream's decisions, pays out.

Owns each transfer's lifecycle. A transfer waits out the availability delay
(``VIGIE_AVAILABILITY_DELAY_S``, 30 s), the window in which Vigie decides, and is never paid
out without a decision (``EFFECTS``; none by then: ``VIGIE_NO_DECISION_FALLBACK`` holds or
blocks it, and a late one acts through ``late_steps``). Only the first automated decision
acts; analysts' act on held transfers only; shadow ones never. A recovery case locks its
account (new transfers get 423). Every change is published as a ``TransferStatus`` (id
``<transfer>.<n>``) with the transfer's new state (``payment_state``), in one transaction of
its partition's fenced writer, and applied in memory only once the broker has it.

Scaled out by starting more instances: each owns the sender partitions the consumer group on
``decisions`` gives it (``payment_owners``), restores them from the compacted state topic
before reading their decisions, keeps their open transfers and the last
``VIGIE_PAYMENT_KEEP_S`` of the others, and forwards a request for another instance's sender
there. A former owner is fenced: it can no longer write a payout.

A transfer sent with an ``Idempotency-Key`` takes the key's keyed hash as its id, so a retry
finds it (in memory, restored after a restart) and gets the same answer, or 422 for
another body; past ``VIGIE_PUBLISH_DEADLINE_S`` the answer is 503 with ``Retry-After`` and the
publish goes on, joined by the retry (``idempotency``). Hard limits (``contracts.limits``) are
checked before anything is published.

The state diagram, why, and how it scales: docs/services.md#payment
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Awaitable, Callable, Optional, Sequence

import aiohttp
import msgspec
from aiohttp import web
from aiokafka.errors import KafkaError

from pipelines.contracts import (limits as limits_mod, metrics, schemas as s,
                                 settings as settings_mod)
from pipelines.contracts.limits import DAY_MS
from pipelines.contracts.privacy import pseudonymize
from pipelines.contracts.topics import key_of
from pipelines.services import idempotency as idem, payment_state as ps, requests as rq
from pipelines.services.auth import CALLER, acting_for, acting_for_account, internal
from pipelines.services.common import ApiError, LogReader, Service, now_ms, read_json, serve
from pipelines.services.payment_owners import Membership, NotOwner, PartitionWriter

log = logging.getLogger(__name__)
TICK_S = 0.2  # how often due payouts and missed deadlines are looked at
OPEN = ("pending", "approved", "warned", "released")  # not paid out yet: a lock holds them
DONE = ("paid_out", "returned")  # final: such a transfer leaves memory after the keep window
PRUNE_EVERY_S = 60.0
FORWARDED = "Vigie-Forwarded"  # set on a request one instance passed to another, and its answer
PASSED_ON = ("Authorization", "Content-Type", idem.HEADER)
PASSED_BACK = ("Content-Type", "Retry-After", idem.REPLAYED)
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

    def __init__(self, conf=None, url: Optional[str] = None):
        super().__init__(conf)
        self.url = url  # where other instances send this one's senders (payment-owners)
        env = settings_mod.environment().services
        self.delay_ms = int(env.availability_delay_s * 1000)
        self.cooling_ms = int(env.warn_cooling_off_s * 1000)
        # Finished transfers stay this long (the limits' 24 h, an Idempotency-Key's life).
        self.keep_ms = int(env.payment_keep_s * 1000)
        self.fallback = env.no_decision_fallback
        if self.fallback not in FALLBACKS:
            raise ValueError("VIGIE_NO_DECISION_FALLBACK must be 'hold' or 'block'")
        # Only the owned partitions' senders, each partition written by its own fenced writer.
        self.writers: dict[int, PartitionWriter] = {}
        self.partitions = self.conf.partitions  # of the sender-keyed topics, read at assignment
        self.transfers: dict[str, Transfer] = {}  # open ones and those of the keep window
        self.open: dict[str, Transfer] = {}  # not yet paid, returned or held: the timer's work
        self.by_sender: dict[str, list[Transfer]] = {}  # in creation order: for the limits
        self.first_sent: dict[str, int] = {}  # sender -> its first transfer (new-account limit)
        self.restored_records = 0  # read from payment-state by the restores so far
        self.locks: dict[str, str] = {}  # account hash -> why it is locked (every account)
        self.banned: set[str] = set()
        # Changes the log refused, each tried again every tick, with the state it finds then.
        self.retries: deque[Callable[[], Awaitable[None]]] = deque()
        self.limits = limits_mod.load()
        self.flights = idem.Flights()  # creations (by transfer id) and keyed chargebacks
        self.replies = idem.Replies.of(self)  # keyed chargebacks' answers, on the log
        self.owners: Optional[ps.Owners] = None
        self.membership: Optional[Membership] = None
        self.http: Optional[aiohttp.ClientSession] = None  # to forward to another instance
        self.pruned_at = 0.0

    def routes(self):
        return [web.post("/v1/transfers", self.create), web.get("/v1/transfers/{id}", self.get),
                web.post("/v1/chargebacks", self.chargeback),
                web.post("/v1/transfers/{id}/cancel", self.cancel)]

    # --- state changes: one place, used live and when restoring a partition ---------------
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

    def partition(self, sender: str) -> int:
        return ps.partition_of(sender, self.partitions)

    async def _write(self, sender: str, records: list[tuple[str, bytes, Optional[bytes]]]) -> None:
        """Write records about ``sender`` through its partition's writer, all or none; a
        partition this instance was fenced out of is given up at once."""
        p = self.partition(sender)
        writer = self.writers.get(p)
        if writer is None:
            raise NotOwner(p)
        try:
            await writer.write(records)
        except NotOwner:
            await self.give_up({p})
            raise

    @staticmethod
    def _event(topic: str, event) -> tuple[str, bytes, bytes]:
        return topic, key_of(topic, event), s.encode(event)

    @staticmethod
    def _state(t: Transfer, history: list) -> tuple[str, bytes, bytes]:
        return (ps.STATE_TOPIC, ps.transfer_key(t.request.transfer_id),
                ps.encode(ps.Stored(request=t.request, history=history)))

    async def _change(self, t: Transfer, steps_for: Callable[[Transfer], list],
                      first: Sequence[tuple[str, bytes, bytes]] = ()) -> None:
        """Write the steps ``steps_for`` finds in the transfer's state (after ``first``
        records) with its new state, in one transaction, then apply them. Memory is never
        ahead of the log: nothing is acted on (a payout, a GET) that a restore would not find.
        A failed write raises with memory as it was; the cause is looked at again later
        (``_act``, the timer)."""
        async with t.lock:
            if self.transfers.get(t.request.transfer_id) is not t:
                return  # forgotten meanwhile (its create refused, its partition given up)
            steps = steps_for(t)
            if not steps and not first:
                return
            r, ts, n = t.request, now_ms(), len(t.history)
            records = list(first)
            for i, (status, reason) in enumerate(steps, n + 1):
                records.append(self._event("transfer-status", s.TransferStatus(
                    id=f"{r.transfer_id}.{i}", ts=ts, transfer_id=r.transfer_id, sender=r.sender,
                    recipient=r.recipient, amount_cents=r.amount_cents, status=status,
                    reason=reason)))
            history = t.history + [{"status": st, "ts": ts, "reason": why} for st, why in steps]
            records.append(self._state(t, history))
            await self._write(r.sender, records)
            for status, reason in steps:
                self._record(t, status, reason, ts)
            metrics.FALLBACK_HOLDS.labels(self.fallback).inc([w for _, w in steps].count(FALLBACK))

    async def _act(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run a change now; if the log refuses it, keep it to run again on the next tick."""
        if not await self._try(action):
            self.retries.append(action)

    @staticmethod
    async def _try(action: Callable[[], Awaitable[None]]) -> bool:
        """Run a change: False if the log refused it; dropped (True) if the transfer's
        partition is no longer ours (its new owner restored it)."""
        try:
            await action()
        except NotOwner as exc:
            log.info("a change for partition %s dropped: no longer ours", exc)
        except KafkaError as exc:
            log.warning("a transfer change did not reach the log (%s): tried again next tick",
                        type(exc).__name__)
            return False
        return True

    # --- HTTP ----------------------------------------------------------------------------
    def _owner(self, sender: str) -> Optional[str]:
        """None if this instance owns ``sender``; else the URL of the instance that does (as
        ``payment-owners`` says); 503 while its partition moves between instances."""
        p = self.partition(sender)
        if p in self.writers:
            return None
        url = self.owners.url(p) if self.owners is not None else None
        if url is None or url == self.url:
            raise ApiError(503, "this sender's partition is moving between instances: retry",
                           {"Retry-After": "1"})
        return url

    async def _forward(self, request: web.Request, url: str) -> web.Response:
        """The request, as it came (its token too), answered by the instance at ``url``. One
        hop only: a forwarded request that finds no owner gets the 503 above. Not a redirect:
        HTTP clients drop the Authorization header on a redirect to another host."""
        if request.headers.get(FORWARDED):
            raise ApiError(503, "this sender's partition is moving between instances: retry",
                           {"Retry-After": "1"})
        headers = {h: request.headers[h] for h in PASSED_ON if h in request.headers}
        try:
            async with self.http.request(request.method, url + request.path_qs,
                                         data=await request.read(),
                                         headers={**headers, FORWARDED: "1"}) as resp:
                body = await resp.read()
                kept = {h: resp.headers[h] for h in PASSED_BACK if h in resp.headers}
                return web.Response(body=body, status=resp.status,
                                    headers={**kept, FORWARDED: "1"})
        except aiohttp.ClientError:
            raise ApiError(503, "the instance serving this sender is unreachable: retry",
                           {"Retry-After": "1"}) from None

    async def _ask_the_others(self, request: web.Request) -> web.Response:
        """A request naming only a transfer id (a chargeback: the card network knows no
        sender, so no partition), which this instance does not have: asked of each other
        instance in turn, once (a forwarded one is not passed on); the first that knows the
        transfer answers. 404 when none does (finished past ``VIGIE_PAYMENT_KEEP_S``), 503
        while a partition moves between instances."""
        others = ({url for url in self.owners.urls.values() if url != self.url}
                  if self.owners is not None and not request.headers.get(FORWARDED) else ())
        for url in sorted(others):
            answer = await self._forward(request, url)
            if answer.status != 404:
                return answer
        if self._moving():  # its partition may be the one between owners: not known yet
            raise ApiError(503, "a partition is moving between instances: retry",
                           {"Retry-After": "1"})
        raise ApiError(404, "unknown transfer")

    def _moving(self) -> bool:
        """Whether a partition is between owners, as this instance sees it: not ours (or ours
        but still being restored), and announced by no other instance. No answer may say a
        transfer is unknown then: the instance restoring it would know it a moment later."""
        if self.owners is None:
            return False
        return any(p not in self.writers and self.owners.url(p) in (None, self.url)
                   for p in range(self.partitions))

    async def _served_elsewhere(self, request: web.Request, sender: str
                                ) -> Optional[web.Response]:
        url = self._owner(sender)
        return None if url is None else await self._forward(request, url)

    async def create(self, request: web.Request) -> web.Response:
        req = await read_json(request, rq.TransferRequest)
        acting_for(request, req.sender)  # only the sender's app debits the sender
        sender = pseudonymize("account", req.sender)
        if (answer := await self._served_elsewhere(request, sender)) is not None:
            return answer
        key = idem.header(request)
        # With a key, the transfer id is the key's keyed hash: a retry names the same transfer
        # whatever happened to the first try, and the state topic holds the key over restarts.
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
        # Known before it is published: a retry with the key joins the publish instead of
        # starting another.
        t = self.transfers[transfer_id] = Transfer(event)
        self.by_sender.setdefault(sender, []).append(t)
        self.flights.start(transfer_id, self._publish_new(t))
        # A keyless client cannot retry safely: it waits for the outcome, as before.
        await self.flights.wait(transfer_id, idem.deadline_s() if key is not None else None)
        return self._created(t)

    async def _publish_new(self, t: Transfer) -> None:
        """The request into the log, then its first status with its state (one transaction).
        Runs to its end even if the client stopped waiting: the producers retry until the
        broker has it. If the broker refuses the request, the transfer is forgotten: a retry
        creates it. The request is not in the transaction: the stream's watermarks take a
        feature topic's end offset for its last record, which a transaction's commit marker
        is not (a request that reached the log without its state is found by ``take``)."""
        r = t.request
        try:
            await self.publish("transfer-requests", r)
        except BaseException:
            self._forget(t)
            raise
        if not t.history:  # in the log, undecided: open, as a restore finds it
            self.open[r.transfer_id] = t
        await self._act(partial(self._first, t))

    async def _first(self, t: Transfer) -> None:
        r = t.request
        first = []
        if r.sender not in self.first_sent:
            first.append((ps.STATE_TOPIC, ps.sender_key(r.sender),
                          ps.encode(ps.SenderSeen(sender=r.sender, first_ts=r.ts))))
        await self._change(t, lambda t: [] if t.history else [("pending", "")], first)
        self.first_sent.setdefault(r.sender, r.ts)

    def _forget(self, t: Transfer) -> None:
        r = t.request
        if self.transfers.get(r.transfer_id) is t:
            del self.transfers[r.transfer_id]
        self.open.pop(r.transfer_id, None)
        mine = self.by_sender.get(r.sender, [])
        if t in mine:
            mine.remove(t)
        if not mine:
            self.by_sender.pop(r.sender, None)

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
        since = now_ms() - DAY_MS
        recent = sum(t.request.amount_cents for t in self.by_sender.get(sender, ())
                     if t.request.ts >= since and t.status != "returned")
        return self.first_sent.get(sender), recent

    async def _callers(self, request: web.Request) -> "Transfer | web.Response":
        """The transfer the path names, if it is the calling user's (403 otherwise); a user's
        transfer this instance does not serve is answered by the instance that does."""
        t = self.transfers.get(request.match_info["id"])
        account = request[CALLER].account
        if t is None and account is not None:  # a user's own transfer: its owner may have it
            if (answer := await self._served_elsewhere(request, account)) is not None:
                return answer
        if t is None:
            raise ApiError(404, "unknown transfer")
        acting_for_account(request, t.request.sender)  # the sender's only: see docs/services.md
        return t

    async def get(self, request: web.Request) -> web.Response:
        t = await self._callers(request)
        return t if isinstance(t, web.Response) else web.json_response(t.view())

    async def chargeback(self, request: web.Request) -> web.Response:
        internal(request)  # the card network's word, relayed by the bank's back office
        req = await read_json(request, rq.ChargebackRequest)
        if req.transfer_id not in self.transfers:  # another instance's, or finished long ago
            return await self._ask_the_others(request)
        t = self.transfers[req.transfer_id]

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
        t = await self._callers(request)  # the sender's app only
        if isinstance(t, web.Response):  # answered by the instance serving the sender
            return t

        async def handle() -> web.Response:
            await self.flights.wait(t.request.transfer_id, idem.deadline_s())  # its creation
            if not t.history:  # its first status is not in the log yet (the timer retries it)
                raise idem.unavailable(idem.deadline_s())
            await self._change(t, lambda t: CANCELLED if t.status in CANCELLABLE else [])
            done = next((h for h in t.history if h["status"] == "cancelled"), None)
            if done is None:
                raise ApiError(409, f"cannot cancel: the transfer is {t.status}")
            # ids only, as every keyed answer on the log (its time is in the transfer's history)
            return web.json_response({"transfer_id": t.request.transfer_id, "status": "cancelled"})
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
            metrics.payment_decided(t.request.ts, now_ms(), first=t.status == "pending")
            await self._act(partial(self._change, t, partial(self._decided, d)))

    def _due(self, t: Transfer) -> list[tuple[str, str]]:
        now = now_ms()
        if t.status == "pending" and now >= t.request.payout_due_ts:
            return FALLBACKS[self.fallback]
        if t.pay_at is not None and now >= t.pay_at:
            return [("paid_out", "availability delay over")]
        return []

    async def on_tick(self) -> None:
        while self.retries:  # first what the log refused before, in order
            if not await self._try(self.retries[0]):
                return  # still refused: nothing acts ahead of it (a lock's hold, a decision)
            self.retries.popleft()
        # side by side: the changes of a partition share a transaction (PartitionWriter)
        outcomes = await asyncio.gather(*(self._change(t, self._due)
                                          for t in list(self.open.values()) if self._due(t)),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, NotOwner):
                raise outcome  # NotOwner: its partition was given up; its new owner pays it
        if time.monotonic() - self.pruned_at > PRUNE_EVERY_S:
            await self._prune()

    async def _prune(self) -> None:
        """Finished transfers older than the keep window leave memory and the state topic (a
        tombstone each, one transaction a partition): memory stays bounded by the traffic of
        the window, and a restore reads about what memory holds."""
        self.pruned_at = time.monotonic()
        before = now_ms() - self.keep_ms
        old: dict[int, list[Transfer]] = {}
        for t in self.transfers.values():
            if t.status in DONE and t.history[-1]["ts"] < before:
                old.setdefault(self.partition(t.request.sender), []).append(t)
        for transfers in old.values():
            try:
                await self._write(transfers[0].request.sender, [
                    (ps.STATE_TOPIC, ps.transfer_key(t.request.transfer_id), None)
                    for t in transfers])
            except (NotOwner, KafkaError):
                continue  # its new owner prunes them, or the next round does
            for t in transfers:
                self._forget(t)

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

    async def _replay_recovery(self, ev: s.RecoveryEvent) -> None:
        self._set_lock(ev)

    # --- ownership: partitions taken (fenced, restored, announced) and given up ----------
    async def take(self, partitions: set[int], of: int) -> None:
        """The group gave this instance ``partitions`` (of ``of``): take each (``_take_one``),
        side by side, then hold the open transfers of the accounts locked meanwhile. Raises
        the first failure once every take has ended; the partitions taken stay taken, the
        others are as before (``Membership`` tries them again)."""
        self.partitions = of
        todo = sorted(partitions - set(self.writers))
        failures = [x for x in await asyncio.gather(*(self._take_one(p) for p in todo),
                                                    return_exceptions=True)
                    if isinstance(x, BaseException)]
        if failures:
            raise failures[0]
        for account in [a for a in self.locks if self.partition(a) in partitions]:
            await self._act(partial(self._hold_open, account))  # a lock came while unowned

    async def _take_one(self, p: int) -> None:
        """Fence partition ``p``'s former owner (our writer starts), then restore its state,
        then say where it is served. Failed or cancelled, nothing of it is kept."""
        writer = await PartitionWriter(self.conf, p).start()
        try:
            orphans = await self._restore(p)
        except BaseException:
            await writer.close()
            await self.give_up({p})  # forgets what the restore had put in memory
            raise
        self.writers[p] = writer
        await asyncio.gather(*(self._act(partial(self._first, t)) for t in orphans))
        if self.url is not None:
            await self.publisher.publish_raw(
                ps.OWNERS_TOPIC, ps.encode(ps.Owner(partition=p, url=self.url, ts=now_ms())),
                key=str(p).encode())

    async def _restore(self, p: int) -> list[Transfer]:
        """Partition ``p``'s transfers, from the state topic, and its orphan requests (returned:
        their first state is to be written)."""
        restored = await ps.restore(self.conf, p)
        self.restored_records += restored.records_read
        for stored in restored.transfers.values():
            t = Transfer(stored.request)
            for step in stored.history:
                self._record(t, step["status"], step["reason"], step["ts"])
            self.transfers[t.request.transfer_id] = t
            self.by_sender.setdefault(t.request.sender, []).append(t)
        for mine in self.by_sender.values():
            mine.sort(key=lambda t: t.request.ts)
        self.first_sent.update(restored.first_sent)
        # A request in the log without its first state: its instance died in between. Only
        # the last owner's can be (each take adopts the ones before), so from when it took
        # the partition, a minute for clocks. (Older than the keep window, a request
        # missing here was pruned, not orphaned.)
        since = now_ms() - self.keep_ms
        took = self.owners.since.get(p) if self.owners is not None else None
        since = max(since, took - 60_000) if took is not None else since
        orphans = []
        for r in await ps.requests_since(self.conf, p, since):
            if r.transfer_id not in self.transfers and r.ts >= since:
                t = self.open[r.transfer_id] = self.transfers[r.transfer_id] = Transfer(r)
                self.by_sender.setdefault(r.sender, []).append(t)
                orphans.append(t)
        log.info("payment partition %d taken: %d transfers (%d records read)", p,
                 len(restored.transfers), restored.records_read)
        return orphans

    async def give_up(self, partitions: set[int]) -> None:
        """Stop acting for ``partitions`` (revoked, or fenced by their new owner) and forget
        their senders: their new owner restores them from the state topic."""
        for p in partitions:
            writer = self.writers.pop(p, None)
            if writer is not None:
                await writer.close()
        for t in [t for t in self.transfers.values()
                  if self.partition(t.request.sender) in partitions]:
            self._forget(t)
        for sender in [x for x in self.first_sent if self.partition(x) in partitions]:
            del self.first_sent[sender]

    # --- start: locks from the log, then the group gives us our partitions ---------------
    async def start(self) -> None:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        recovery = await self.start_reader(LogReader(self.conf, "recovery"))
        await recovery.catch_up(self._replay_recovery)
        self.owners = await self.start_reader(ps.Owners(self.conf))
        self.background(self.owners.follow(), "owners reader")
        self.membership = Membership(self.conf, self.take, self.give_up)
        await self.start_reader(self.membership)  # returns once our partitions are restored
        log.info("payment instance ready: partitions %s, %d transfers (%d open), %d locked "
                 "accounts", sorted(self.writers), len(self.transfers), len(self.open),
                 len(self.locks))
        self.background(recovery.follow(self.on_recovery), "recovery reader")
        self.background(self.membership.follow(self.on_decision), "decisions consumer")
        self.background(self._timer(), "payout timer")

    async def _cleanup(self, app) -> None:
        await super()._cleanup(app)  # the group left first: nothing more is taken
        await asyncio.gather(*(w.close() for w in self.writers.values()), return_exceptions=True)
        if self.http is not None:
            await self.http.close()


def build_app(conf=None, url: Optional[str] = None) -> web.Application:
    return Payment(conf, url).app()


def run(port: int | None = None) -> None:
    port = port or settings_mod.load().service_ports[Payment.name]
    env = settings_mod.environment()
    url = env.services.payment_url or f"http://{env.deployment.bind_host}:{port}"
    serve(build_app(url=url), Payment.name, port)
