"""Account-recovery cases: the state machine, framework-free (no Kafka, no features).

A case is event-sourced: every transition is a ``RecoveryEvent`` on ``recovery`` (keyed by the
account) and ``Case.apply`` folds them into the state (``fold`` for a whole log). A ``Machine``
takes one input (``on_signal``: a suspicion, an activity, an SLA timeout, an expiry;
``on_owner``: a code sent to the owner's verified channel, or the owner's answer with a code;
``on_request``: an analyst's move) and returns its ``Effects``: transitions, notifications,
labels and decisions. An input already seen (by id) causes nothing.

>>> account = "a_" + "0" * 20
>>> suspicion = Signal(kind="suspicion", id="ev-1", account=account, ts=1, reasons=["new_device"])
>>> machine = Machine(None)
>>> effects = machine.on_signal(suspicion, now=1_000)
>>> [t.state for t in effects.transitions], [n.kind for n in effects.notifications]
(['opened', 'contained', 'owner_verification'], ['step_up_challenge'])
>>> bool(Machine(machine.case).on_signal(suspicion, now=2_000))  # redelivered: nothing
False

The states, what each one does, and its SLA: docs/recovery.md#cases
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Optional

import msgspec
from msgspec import Struct

from pipelines.contracts import schemas as s, settings

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
STRICT_MS = 72 * HOUR_MS  # after a restore, stricter decisions for this long
SUGGESTIONS_PAUSE_MS = DAY_MS
SEEN_KEEP = 256  # input ids remembered per case (redelivery happens within seconds)
KEEP_CLOSED_MS = 7 * DAY_MS  # a closed case stays in the table this long (merges, audits)
# An SLA times out this long after its deadline: an input stamped before the deadline (an
# owner's answer the messaging service took in time) may still be on its way through Kafka,
# and the owner must not lose to our lag. An answer stamped after the deadline is late, even
# if it arrives before the time-out.
IN_FLIGHT_MS = 3000

OPEN = ("opened", "contained", "owner_verification", "secured", "transfers_review", "escalated")
CLOSED = ("restored", "closed_fraudulent", "closed_legitimate")
# SLA per state: VIGIE_RECOVERY_SLA_<STATE>_S, defaults in pipelines/contracts/settings.py
# what an analyst (any actor that is neither the stream nor the owner) may ask for, by state
ANALYST_MOVES = {
    "owner_verification": ("secured", "closed_legitimate", "closed_fraudulent", "escalated"),
    "secured": ("transfers_review", "closed_fraudulent", "escalated"),
    "transfers_review": ("restored", "closed_fraudulent", "escalated"),
    "escalated": ("secured", "restored", "closed_legitimate", "closed_fraudulent"),
    "contained": ("owner_verification", "closed_legitimate", "closed_fraudulent", "escalated"),
}
OWNER_ACTORS = ("owner", "simulator-owner")
# wrong codes a challenge takes before it fails and the case escalates to an analyst (3 in a
# million codes: an attacker who guesses has a 3e-6 chance; the owner who mistypes, two more)
MAX_CODE_ATTEMPTS = 3
STREAM = "stream"


def sla_s(state: str) -> float:
    return settings.environment().recovery.sla_s(state)  # VIGIE_RECOVERY_SLA_<STATE>_S


# --- inputs ------------------------------------------------------------------------------------
class Signal(Struct, kw_only=True, array_like=True):
    """What the entity stage tells the recovery stage about an account (key: the account).

    kind "suspicion": the account looks taken over (``reasons`` say why); "activity": a money
    request or a transfer of an account already watched; "timeout": the SLA timer found the
    case overdue in state number ``seq``; "expire": a case closed a week ago leaves the table;
    "request": an analyst's transition request from the console (``request``)."""
    kind: str
    id: str  # the input's id: the source event's id (+ role), or the timer's
    account: str
    ts: int  # event time (ms)
    reasons: list[str] = []
    compromise_from_ts: Optional[int] = None
    device: Optional[str] = None
    request_to: Optional[str] = None  # a money request sent to this contact
    transfer: Optional[tuple[str, str, str, int, int]] = None  # id, sender, recipient, cents, due
    seq: int = -1  # for timeouts: the transition count the deadline belongs to
    request: Optional[bytes] = None  # kind "request": an analyst's RecoveryEvent (JSON)


class Case(Struct, kw_only=True, array_like=True):
    case_id: str
    account: str
    state: str = "opened"
    seq: int = 0  # transitions applied
    opened_ts: int = 0
    contained_ts: Optional[int] = None  # when the lock went on (wall ms)
    updated_ts: int = 0
    deadline_ts: Optional[int] = None  # SLA of the current state (wall ms); None: no SLA
    compromise_from_ts: Optional[int] = None
    reasons: list[str] = []
    devices: list[str] = []  # devices seen since the compromise (revoked when contained)
    requested: list[str] = []  # contacts sent money requests
    warned: list[str] = []  # contacts already warned
    transfers: list[tuple[str, str, str, int, int]] = []  # (id, sender, recipient, cents, due)
    escalated_from: Optional[str] = None
    labelled: bool = False
    seen: list[str] = []
    # the step-up challenge in progress: the keyed hash of the code sent to the owner's
    # verified channel (None: none sent yet, or used), and the wrong codes given so far
    code_digest: Optional[str] = None
    code_attempts: int = 0

    @property
    def is_open(self) -> bool:
        return self.state in OPEN

    def overdue(self, now: int) -> bool:
        """Open, not yet escalated, and past its deadline by more than what may be in flight."""
        return self.is_open and self.state != "escalated" and self.deadline_ts is not None \
            and now >= self.deadline_ts + IN_FLIGHT_MS

    def apply(self, ev: s.RecoveryEvent) -> None:
        """Fold one of this case's own transitions (actor "stream") into the state."""
        if ev.state == "contained":
            self.contained_ts = ev.ts
        if ev.state == "escalated":
            self.escalated_from = self.state
        self.state = ev.state
        self.seq += 1
        self.updated_ts = ev.ts
        if ev.compromise_from_ts is not None:
            self.compromise_from_ts = ev.compromise_from_ts
        sla = sla_s(ev.state)
        self.deadline_ts = ev.ts + int(sla * 1000) if sla > 0 and ev.state in OPEN else None


_CASE_DEC = msgspec.msgpack.Decoder(Case)
_SIGNAL_DEC = msgspec.msgpack.Decoder(Signal)
_ENC = msgspec.msgpack.Encoder()


def encode(obj) -> bytes:
    return _ENC.encode(obj)


def decode_case(raw: Optional[bytes]) -> Optional[Case]:
    return _CASE_DEC.decode(raw) if raw else None


def decode_signal(raw: bytes) -> Signal:
    return _SIGNAL_DEC.decode(raw)


def case_id_for(account: str, first_input: str) -> str:
    return "rc-" + hashlib.sha1(f"{account}|{first_input}".encode()).hexdigest()[:20]


# --- outputs -------------------------------------------------------------------------------------
class Effects:
    """What one input caused: transitions (``recovery``), notifications, labels, and decisions
    for held transfers (recall or release), in order."""

    def __init__(self):
        self.transitions: list[s.RecoveryEvent] = []
        self.notifications: list[s.Notification] = []
        self.labels: list[s.Label] = []
        self.decisions: list[s.Decision] = []

    def __bool__(self) -> bool:
        return bool(self.transitions or self.notifications or self.labels or self.decisions)


class Machine:
    """Turns inputs into transitions. ``now`` is wall-clock ms (SLA deadlines, lock times);
    event times (compromise window) come from the inputs."""

    def __init__(self, case: Optional[Case]):
        self.case = case
        self.out = Effects()
        self.expired = False  # the case should leave the table

    # --- transitions ----------------------------------------------------------------------
    def _go(self, state: str, now: int, reason: str, actor: str = STREAM) -> None:
        c = self.case
        ev = s.RecoveryEvent(id=f"{c.case_id}.{c.seq + 1}", ts=now, case_id=c.case_id,
                             account=c.account, state=state, actor=actor, reason=reason[:500],
                             compromise_from_ts=c.compromise_from_ts)
        c.apply(ev)
        self.out.transitions.append(ev)
        getattr(self, f"_on_{state}", lambda now: None)(now)

    def _note(self, account: str, kind: str, code: str, now: int, suffix: str,
              transfer_id: Optional[str] = None) -> None:
        c = self.case
        self.out.notifications.append(s.Notification(
            id=f"{c.case_id}.{suffix}"[:64], ts=now, account=account, kind=kind, code=code,
            case_id=c.case_id, transfer_id=transfer_id))

    def _label(self, kind: str, now: int) -> None:
        c = self.case
        if c.labelled:
            return
        c.labelled = True
        start = c.compromise_from_ts or c.opened_ts
        self.out.labels.append(s.Label(
            id=f"{c.case_id}.{kind}", ts=start, kind=kind, account=c.account, party="sender",
            is_fraud=kind == "ato_confirmed", known_at=max(now, start), scenario="ato",
            compromise_from_ts=start if kind == "ato_confirmed" else None,
            compromise_to_ts=max(c.contained_ts or now, start) if kind == "ato_confirmed" else None))

    def _decide(self, t: tuple, action: str, now: int, why: str) -> None:
        tid, sender, recipient, cents, _ = t
        self.out.decisions.append(s.Decision(
            id=f"{tid}.rc{self.case.seq}", ts=now, transfer_id=tid, sender=sender,
            recipient=recipient, amount_cents=cents, action=action, score=0.0,
            model_version="analyst:recovery", rule_hits=[why]))

    def _warn_contacts(self, now: int) -> None:
        c = self.case
        for contact in c.requested:
            if contact not in c.warned:
                c.warned.append(contact)
                self._note(contact, "contact_warning", "account_compromised", now,
                           f"cw.{contact[-16:]}")

    def _on_contained(self, now: int) -> None:
        self._warn_contacts(now)

    def _on_owner_verification(self, now: int) -> None:
        """A new challenge: the messaging service sends a code to the owner's verified channel
        when it reads this notification and tells us its hash (``on_owner``)."""
        c = self.case
        c.code_digest, c.code_attempts = None, 0
        self._note(c.account, "step_up_challenge", "account_recovery", now, f"sc{c.seq}")

    def _on_secured(self, now: int) -> None:
        self._label("ato_confirmed", now)

    def _on_restored(self, now: int) -> None:
        self._note(self.case.account, "recovery_summary", "account_restored", now, "summary")

    def _on_closed_fraudulent(self, now: int) -> None:
        self._label("ato_confirmed", now)
        for t in self.case.transfers:  # frozen: nothing held is paid out
            self._decide(t, "block", now, "recovery:closed_fraudulent")

    def _on_closed_legitimate(self, now: int) -> None:
        self._label("not_ato", now)
        for t in self.case.transfers:  # held because of the lock: let them go
            self._decide(t, "approve", now, "recovery:false_alarm")

    def _review(self, now: int) -> None:
        """secured -> transfers_review, recalling what is not paid out; restored if nothing
        waits for an analyst."""
        c = self.case
        locked = c.contained_ts or now
        pending = [t for t in c.transfers if t[4] > locked or t[2] == c.account]
        paid = [t for t in c.transfers if t not in pending]
        self._go("transfers_review", now,
                 f"{len(c.transfers)} transfers since the compromise: {len(pending)} recalled, "
                 f"{len(paid)} paid out await an analyst"
                 + "".join(f"; paid_out:{t[0]}" for t in paid[:10]))
        for t in pending:
            self._decide(t, "block", now, "recovery:recalled")
        if not paid:
            self._go("restored", now, "owner verified, credentials reset, transfers recalled; "
                     f"stricter checks until {now + STRICT_MS}")

    # --- inputs -----------------------------------------------------------------------------
    def on_signal(self, sig: Signal, now: int) -> Effects:
        c = self.case
        if sig.kind == "timeout":
            if c is not None and c.is_open and sig.seq == c.seq and c.overdue(now):
                self._seen(sig.id)
                self._go("escalated", now, f"SLA of {c.state} overdue")
            return self.out
        if sig.kind == "expire":
            if c is not None and not c.is_open and now - c.updated_ts >= KEEP_CLOSED_MS:
                self.case, self.expired = None, True
            return self.out
        if c is not None and sig.id in c.seen:
            return self.out  # redelivered
        if c is not None and not c.is_open and sig.kind == "suspicion" \
                and now - c.updated_ts > _reopen_after_ms():
            c = self.case = None  # an old closed case: a new suspicion opens a new one
        if c is None:
            if sig.kind != "suspicion":
                return self.out
            c = self.case = Case(case_id=case_id_for(sig.account, sig.id), account=sig.account,
                                 opened_ts=now, compromise_from_ts=sig.compromise_from_ts)
            self._record(sig)
            self._seen(sig.id)
            self._go("opened", now, "suspected takeover: " + ", ".join(sig.reasons))
            revoked = ", ".join(c.devices) or "none known"
            self._go("contained", now, "account locked, pending payouts held; sessions and "
                     f"devices since {c.compromise_from_ts} revoked: {revoked}")
            self._go("owner_verification", now, "step-up challenge sent to the owner")
            return self.out
        self._seen(sig.id)
        if not c.is_open:
            return self.out  # closed: remembered for merging only
        fresh = [r for r in sig.reasons if r not in c.reasons]
        c.reasons.extend(fresh)  # a duplicate suspicion merges into the open case
        self._record(sig)
        if c.contained_ts is not None and c.state not in ("restored",):
            self._warn_contacts(now)
        return self.out

    def _record(self, sig: Signal) -> None:
        c = self.case
        for r in sig.reasons:
            if r not in c.reasons:
                c.reasons.append(r)
        if sig.compromise_from_ts is not None and (c.compromise_from_ts is None
                                                   or sig.compromise_from_ts < c.compromise_from_ts):
            c.compromise_from_ts = sig.compromise_from_ts
        if sig.device and sig.device not in c.devices and len(c.devices) < 16:
            c.devices.append(sig.device)
        if sig.request_to and sig.request_to not in c.requested and len(c.requested) < 200:
            c.requested.append(sig.request_to)
        if sig.transfer and all(t[0] != sig.transfer[0] for t in c.transfers) \
                and len(c.transfers) < 200:
            c.transfers.append(tuple(sig.transfer))

    def _seen(self, input_id: str) -> None:
        seen = self.case.seen
        seen.append(input_id)
        del seen[:-SEEN_KEEP]

    def on_owner(self, ev: s.OwnerVerification, now: int) -> Effects:
        """The owner's verified channel (the messaging service): a code sent for the current
        challenge, or an answer with a code. Only an answer whose code is the one sent verifies
        the owner; the ``MAX_CODE_ATTEMPTS``-th wrong one fails the challenge and escalates the
        case to an analyst. The app's word alone ("it_was_me") proves nothing: an attacker
        holding the owner's session says it too."""
        c = self.case
        if c is None or c.case_id != ev.case_id or ev.id in c.seen:
            return self.out
        self._seen(ev.id)
        if c.state != "owner_verification":
            return self.out  # a code or answer for a challenge that is over changes nothing
        if ev.kind == "code_sent":
            if ev.challenge_id == f"{c.case_id}.sc{c.seq}"[:64]:
                c.code_digest = ev.code_digest  # a code sent again replaces the first
            return self.out
        # late: given after the deadline (its stamp) and read after it (our clock); a messaging
        # host whose clock runs ahead must not make an answer in time look late. The deadline
        # is the code's lifetime: past it the SLA timer escalates the case.
        if c.deadline_ts is not None and min(ev.ts, now) > c.deadline_ts:
            return self.out
        if ev.answer is None or ev.actor not in OWNER_ACTORS:
            return self.out
        if c.code_digest is not None and hmac.compare_digest(ev.code_digest, c.code_digest):
            c.code_digest = None  # used
            if ev.answer == "confirm_compromise":
                self._go("secured", now, "owner confirmed the takeover with the code sent to "
                         "the verified contact: credentials reset, devices removed "
                         f"({', '.join(c.devices) or 'none known'}), assistant suggestions "
                         f"paused until {now + SUGGESTIONS_PAUSE_MS}", actor=ev.actor)
                self._review(now)
            else:
                self._go("closed_legitimate", now, "owner, verified by the code sent to the "
                         "verified contact: it was me (false alarm)", actor=ev.actor)
            return self.out
        c.code_attempts += 1
        if c.code_attempts >= MAX_CODE_ATTEMPTS:
            self._go("escalated", now, f"owner verification failed: {c.code_attempts} wrong "
                     "codes; an analyst must verify the owner")
        return self.out

    def on_request(self, ev: s.RecoveryEvent, now: int) -> Effects:
        """An analyst's transition request (a console action the worker routed here). The
        stream checks it against the case and writes the real transition. A request in the
        name of the owner or the stream is refused: the owner is verified only by a code
        (``on_owner``)."""
        c = self.case
        if c is None or is_transition(ev) or c.case_id != ev.case_id or ev.id in c.seen \
                or ev.actor in (*OWNER_ACTORS, STREAM):
            return self.out
        self._seen(ev.id)
        if ev.state in ANALYST_MOVES.get(c.state, ()):
            reason = f"{ev.actor}: {ev.reason}" if ev.reason else ev.actor
            if ev.state == "secured":
                self._go("secured", now, reason, actor=ev.actor)
                self._review(now)
            else:
                self._go(ev.state, now, reason, actor=ev.actor)
        return self.out


def _reopen_after_ms() -> int:
    """A closed case absorbs new suspicions this long (the 24 h signals that opened it)."""
    return int(settings.environment().recovery.reopen_after_s * 1000)


def is_transition(ev: s.RecoveryEvent) -> bool:
    """A transition the stream wrote (id ``<case>.<n>``), whoever its actor; any other
    RecoveryEvent is an analyst's request the stream checks (it travels on
    ``recovery-signals``: only the stream writes ``recovery``)."""
    head, _, n = ev.id.rpartition(".")
    return head == ev.case_id and n.isdigit()


def fold(events: list[s.RecoveryEvent]) -> dict[str, Case]:
    """Every case rebuilt from its transitions (the audit log read back), in log order."""
    cases: dict[str, Case] = {}
    for ev in events:
        if is_transition(ev):
            case = cases.setdefault(ev.case_id, Case(case_id=ev.case_id, account=ev.account,
                                                     opened_ts=ev.ts))
            case.apply(ev)
    return cases
