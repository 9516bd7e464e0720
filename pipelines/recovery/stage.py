"""The recovery stage: account-takeover detection in the stream, and the recovery cases.

``signal_for`` (the entity stage's hook, where account state lives) turns an account's
takeover signals into a ``Signal`` on ``recovery-signals``, keyed by account like
``recovery``. The ``recovery`` agent reads it and ``owner-verification`` (the codes the
messaging service sent to owners' verified channels, and the owners' answers, keyed the same
way), keeps each case in ``recovery-cases`` (with its SLA deadline, checked by a 1 s timer, and
its challenge's code hash and wrong attempts), lets ``pipelines.recovery.cases`` decide, and
publishes the transitions with their notifications, labels and decisions: it is the only writer
of ``recovery``, so the only one that can say an owner was verified. ``recovery-flags`` (a global
table) tells the decide stage which accounts are under recovery or recently restored.

How and why: docs/recovery.md#stage
"""
from __future__ import annotations

import logging
import time
from typing import Optional

import msgspec

from features.security import CREDENTIALS, NEW_COUNTRY, NEW_DEVICE
from features.windows import DAY, HOUR
from pipelines.contracts import schemas
from pipelines.contracts.schemas import AccountEvent, MessageSent, TransferRequested
from pipelines.contracts.topics import InvalidEvent, decode
from pipelines.kafka.delivery import Sender
from pipelines.kafka.tables import raw_global_table, raw_table
from pipelines.recovery import cases as rc

log = logging.getLogger(__name__)
SIGNALS = "recovery-signals"
OWNER = "owner-verification"  # codes sent and answers given (messaging service)
WATCH_CHANGES = (*CREDENTIALS, NEW_DEVICE, NEW_COUNTRY)
BURST = 8  # money requests in an hour that are suspicious even without a security change
SEVERITY = {"approve": 0, "warn": 1, "hold": 2, "block": 3}
_FLAG = msgspec.msgpack.Decoder(tuple[str, int])


def now_ms() -> int:
    return int(time.time() * 1000)


# --- detection (features side: reads an AccountState) ------------------------------------------
def _compromise_from(state, t: int) -> Optional[int]:
    """The earliest security change / failed login in the takeover window (absolute ms)."""
    sec = state.sec
    times = [c for i, c in enumerate(sec.changes) if i in WATCH_CHANGES and c is not None
             and t - DAY <= c < t]
    times += [f for f in sec.fail_ts if t - HOUR <= f < t]
    return state.base + min(times) if times and state.base is not None else None


def takeover_reasons(signals: dict[str, float], recent: dict[str, bool]) -> list[str]:
    """Why an account looks taken over. ``signals``: ``AccountState.ato_signals`` (24 h
    windows); ``recent``: which security changes happened in the last hour. A takeover changes
    device, country and credentials within minutes; an owner's new phone and password reset
    are usually hours apart, so the pairs count only within the hour."""
    dev, country, cred = recent["device"], recent["country"], recent["credentials"]
    requests, recipients = signals["money_requests_out_1h"], signals["new_recipients_24h"]
    reasons = []
    if dev and cred:
        reasons.append("new_device_and_credential_change")
    if country and cred:
        reasons.append("new_country_and_credential_change")
    if dev and country:
        reasons.append("new_device_and_new_country")
    if signals["new_device_24h"] and requests >= 3:
        reasons.append("new_device_and_money_request_burst")
    if recent["device_3h"] and recipients >= 3:
        reasons.append("new_device_and_new_recipients")
    if signals["failed_logins_1h"] >= 3 and cred:
        reasons.append("failed_logins_and_credential_change")
    if requests >= BURST:
        reasons.append("money_request_burst")
    return reasons


def signal_for(account: str, role: str, event, state) -> Optional[rc.Signal]:
    """What the recovery stage should hear about ``event``, just learnt by ``account``'s
    state in ``role``; None for the vast majority of events (no recent security change)."""
    kind = type(event)
    if not ((role == "security" and kind is AccountEvent) or (role == "msg_out" and kind is MessageSent)
            or (role in ("sender", "recipient") and kind is TransferRequested)):
        return None
    ts = event.ts + 1  # the event itself counts
    t = state.now(ts)
    sec = state.sec
    watched = sec.recent_change(t, WATCH_CHANGES, DAY)
    request = kind is MessageSent and event.money_request
    if not watched and not request and len(sec.fail_ts) < 3:
        return None
    if not watched and state.chat.requests_out_1h(t) < BURST:
        return None
    signals = state.ato_signals(ts)
    established = sec.created is None or ts - sec.created >= DAY  # not a new account's device
    if not established:
        signals["new_device_24h"] = 0.0
    recent = {"device": established and sec.recent_change(t, (NEW_DEVICE,), HOUR),
              "device_3h": established and sec.recent_change(t, (NEW_DEVICE,), 3 * HOUR),
              "country": sec.recent_change(t, (NEW_COUNTRY,), HOUR),
              "credentials": sec.recent_change(t, CREDENTIALS, HOUR)}
    reasons = takeover_reasons(signals, recent)
    if not reasons and not (request or kind is TransferRequested):
        return None
    transfer = None
    if kind is TransferRequested:
        transfer = (event.transfer_id, event.sender, event.recipient, event.amount_cents,
                    event.payout_due_ts)
    device = getattr(event, "device", None) if role in ("security", "sender") else None
    return rc.Signal(kind="suspicion" if reasons else "activity", id=f"{event.id}:{role}",
                     account=account, ts=event.ts, reasons=reasons,
                     compromise_from_ts=_compromise_from(state, t) if reasons else None,
                     device=device, request_to=event.recipient if request else None,
                     transfer=transfer)


# --- analysts (console actions routed by the worker's Router) -----------------------------------
def from_analyst(action: schemas.AnalystAction) -> tuple[str, bytes, bytes]:
    """(topic, key, value) for a console action on recovery: ``open_case`` on an account opens
    (or merges into) its case like a suspicion; ``case_transition`` on a case (params
    ``account`` and ``state``) asks the stream for that transition. Raises ValueError/KeyError
    for a malformed action (the Router dead-letters it with the reason)."""
    if action.action == "open_case":
        account = action.target
        try:
            msgspec.convert(account, schemas.AccountId)  # a hash, never a raw id
        except msgspec.ValidationError as exc:
            raise ValueError(f"open_case needs an account hash: {exc}") from None
        sig = rc.Signal(kind="suspicion", id=action.id, account=account, ts=action.ts,
                        reasons=[f"analyst:{action.actor}"])
        return SIGNALS, account.encode(), rc.encode(sig)
    params = action.params
    request = schemas.RecoveryEvent(id=action.id, ts=action.ts, case_id=action.target,
                                    account=params["account"], state=params["state"],
                                    actor=action.actor, reason=action.reason)
    raw = schemas.encode(request)
    decode("recovery", raw)  # InvalidEvent (a ValueError) if a field is wrong
    # through recovery-signals, not ``recovery``: payment acts on every state it reads there,
    # so only transitions the stream has checked may appear on it
    sig = rc.Signal(kind="request", id=action.id, account=request.account, ts=action.ts,
                    request=raw)
    return SIGNALS, request.account.encode(), rc.encode(sig)


# --- the stage ---------------------------------------------------------------------------------
class Recovery:
    """The recovery agent's logic around its table; framework-free apart from the tables and
    the send callables, so tests can drive it directly."""

    def __init__(self, table, flags, send, set_flag=None):
        self.table = table  # account hash (bytes) -> Case (msgpack)
        self.flags = flags  # account hash (bytes) -> (state, wall ms) (msgpack)
        self.send = send  # async (topic, key: bytes, value: bytes) -> None
        self.set_flag = set_flag or self._set_in_place  # async (key, value; None: delete) -> None
        self.fired: dict[str, int] = {}  # case id -> seq whose timeout was sent (memory only)

    async def _set_in_place(self, key: bytes, value: Optional[bytes]) -> None:
        if value is None:
            self.flags.pop(key, None)
        else:
            self.flags[key] = value

    async def _drop_flag(self, key: bytes, now: int) -> None:
        """The flag of an expired case, unless it still says something: an open case (a
        newer one than the table knew), or a restore less than 72 h ago."""
        raw = self.flags.get(key)
        if not raw:
            return
        state, since = _FLAG.decode(raw)
        if state not in rc.OPEN and now - since >= rc.STRICT_MS:
            await self.set_flag(key, None)

    async def on_record(self, topic: str, key: bytes, value: bytes, now: Optional[int] = None) -> None:
        now = now if now is not None else now_ms()
        raw = self.table.get(key)
        machine = rc.Machine(rc.decode_case(raw))
        if topic == OWNER:
            try:
                ev = decode(OWNER, value)
            except InvalidEvent as exc:
                log.warning("unreadable owner verification: %s", exc)
                return
            out = machine.on_owner(ev, now)
        else:
            sig = rc.decode_signal(value)
            if sig.kind == "request":
                out = machine.on_request(decode("recovery", sig.request), now)
            else:
                out = machine.on_signal(sig, now)
        case = machine.case
        if machine.expired:
            self.table.pop(key, None)
            await self._drop_flag(key, now)
            return
        for ev in out.transitions:
            await self.send("recovery", ev.account.encode(), schemas.encode(ev))
        for n in out.notifications:
            await self.send("notifications", n.account.encode(), schemas.encode(n))
        for label in out.labels:
            await self.send("labels", label.account.encode(), schemas.encode(label))
        for d in out.decisions:
            await self.send("decisions", d.sender.encode(), schemas.encode(d))
        if out.transitions:
            await self.set_flag(key, rc.encode((case.state, out.transitions[-1].ts)))
        if case is not None:
            new = rc.encode(case)
            if new != raw:
                self.table[key] = new

    def overdue(self, now: Optional[int] = None) -> list[tuple[bytes, rc.Signal]]:
        """Timeout signals for the open cases past their deadline (this worker's partitions)."""
        now = now if now is not None else now_ms()
        out, present = [], set()
        for key, raw in list(self.table.items()):
            case = rc.decode_case(raw)
            present.add(case.case_id)
            if not case.is_open and now - case.updated_ts >= rc.KEEP_CLOSED_MS \
                    and self.fired.get(case.case_id) != -1:
                self.fired[case.case_id] = -1
                out.append((key, rc.Signal(kind="expire", id=f"x:{case.case_id}",
                                           account=case.account, ts=now)))
            elif case.overdue(now) and self.fired.get(case.case_id) != case.seq:
                self.fired[case.case_id] = case.seq
                out.append((key, rc.Signal(kind="timeout", id=f"t:{case.case_id}:{case.seq}",
                                           account=case.account, ts=now, seq=case.seq)))
        self.fired = {cid: seq for cid, seq in self.fired.items() if cid in present}
        return out

    def adjust(self, tr, action: str, hits: list) -> str:
        """The decide stage's hook: hold transfers from or to an account under recovery; one
        step stricter for 72 h after a restore."""
        for account, role in ((tr.sender, "sender"), (tr.recipient, "recipient")):
            raw = self.flags.get(account.encode())
            if not raw:
                continue
            state, since = _FLAG.decode(raw)
            if state in rc.OPEN:
                hits.append(f"recovery:{role}_{state}")
                return action if SEVERITY[action] >= SEVERITY["hold"] else "hold"
            if role == "sender" and state == "restored" and now_ms() - since < rc.STRICT_MS:
                stricter = {"approve": "warn", "warn": "hold"}.get(action, action)
                if stricter != action:
                    hits.append("recovery:sender_restored_72h")
                    action = stricter
        return action


def register(app) -> Recovery:
    # straight to the app's producer (delivery.Sender): a signal comes from the entity stage's
    # account learns, hundreds a second on the latency bench
    signals = Sender(app, SIGNALS)
    inputs = app.topic(OWNER, SIGNALS, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    outputs = {name: Sender(app, name) for name in ("recovery", "notifications", "labels",
                                                   "decisions")}
    table = raw_table(app, "recovery-cases")
    flags = raw_global_table(app, "recovery-flags")

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await outputs[topic].send(key=key, value=value)

    async def set_flag(key: bytes, value: Optional[bytes]) -> None:
        # through the changelog (None: a tombstone, which deletes the key in every copy),
        # which every worker (this one too) applies to the global table:
        # written in place, the value would sit in this worker's copy of the *event's*
        # partition and hide later changes made by another owner after a rebalance (the same
        # reason as pipelines/stream/control.py)
        await flags.changelog_topic.send(key=key, value=value, key_serializer="raw",
                                         value_serializer="raw")

    stage = Recovery(table, flags, send, set_flag)

    async def watch(role: str, event, state) -> None:
        key = getattr(event, {"security": "account", "msg_out": "sender", "sender": "sender",
                              "recipient": "recipient"}.get(role, "id"), None)
        sig = signal_for(key, role, event, state) if key else None
        if sig is not None:
            await signals.send(key=key.encode(), value=rc.encode(sig))

    stage.watch = watch

    @app.agent(inputs, name="recovery")
    async def recovery(stream):
        async for event in stream.events():
            message = event.message
            try:
                await stage.on_record(message.topic, event.key, event.value)
            except Exception:  # one bad case must not stop the others
                log.exception("recovery failed on %s[%d]@%d", message.topic, message.partition,
                              message.offset)

    @app.timer(1.0)
    async def recovery_deadlines():
        for key, sig in stage.overdue():
            await signals.send(key=key, value=rc.encode(sig))

    return stage
