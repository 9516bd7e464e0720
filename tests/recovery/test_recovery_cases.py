"""Account takeover detection and the recovery case state machine, without Kafka: the same
``signal_for`` and ``Recovery`` the worker runs, over dict tables."""
from __future__ import annotations

import asyncio
from collections import defaultdict

import msgspec
import pytest

from features.account import AccountState
from features.routing import routes
from features.windows import DAY, HOUR, MINUTE
from pipelines.contracts import schemas as s
from pipelines.contracts.privacy import code_digest
from pipelines.recovery import cases as rc
from pipelines.recovery.stage import Recovery, signal_for
from pipelines.simulator.events import T0, Log, hashed

NOW = T0 + 30 * DAY + 400_000  # wall clock of the tests (ms): just after the takeover below
ANN = hashed("account", "ann")
CODE = "418307"  # the code the messaging service sent to Ann's verified contact


def feed(events) -> list[rc.Signal]:
    """Every event through the account states, as the entity stage does; the signals out."""
    states: dict[str, AccountState] = defaultdict(AccountState)
    out = []
    for ev in events:
        for kind, key, role in routes(ev):
            if kind == "account":
                st = states[key]
                st.learn_one(ev, role)
                sig = signal_for(key, role, ev, st)
                if sig is not None:
                    out.append(sig)
    return out


def history(log: Log, start: int) -> None:
    """Ann's normal life for a month: her phone, her friends, a few payments."""
    log.account_event("ann", start, "signup", device="ann-phone", ip="ip-ann", country="FR")
    for day in range(1, 29):
        friend = f"friend{day % 5}"
        log.account_event("ann", start + day * DAY, "login", device="ann-phone", ip="ip-ann",
                          country="FR")
        log.message("ann", friend, start + day * DAY + MINUTE)
        log.message(friend, "ann", start + day * DAY + 2 * MINUTE)
        if day % 4 == 0:
            log.transfer("ann", friend, start + day * DAY + HOUR, device="ann-phone")


def takeover(log: Log, at: int) -> int:
    """The simulator's ATO scenario by hand: failed logins, login + device_added from a new
    device in another country, a password reset, "friend in need" requests, a transfer out."""
    there = dict(device="evil-phone", ip="ip-evil", country="NG")
    for i in range(2):
        log.account_event("ann", at + i * 10_000, "login_failed", **there)
    log.account_event("ann", at + 30_000, "login", **there)
    log.account_event("ann", at + 31_000, "device_added", **there)
    log.account_event("ann", at + 90_000, "password_reset", **there)
    for i in range(4):
        log.message("ann", f"friend{i}", at + 120_000 + i * 20_000, request=True, urgent=True)
    log.transfer("ann", "mule", at + 300_000, amount=45_000, device="evil-phone")
    return at


class Harness:
    def __init__(self):
        self.table, self.flags, self.sent = {}, {}, []

        async def send(topic, key, value):
            self.sent.append((topic, key, value))

        self.stage = Recovery(self.table, self.flags, send)

    def signal(self, sig: rc.Signal, now: int = NOW) -> None:
        asyncio.run(self.stage.on_record("recovery-signals", sig.account.encode(),
                                         rc.encode(sig), now))

    def request(self, ev: s.RecoveryEvent, now: int = NOW) -> None:
        """An analyst's request, as the worker routes a console action (``from_analyst``)."""
        self.signal(rc.Signal(kind="request", id=ev.id, account=ev.account, ts=ev.ts,
                              request=s.encode(ev)), now)

    def owner(self, ev: s.OwnerVerification, now: int = NOW) -> None:
        """A code sent or an answer, as the messaging service publishes them."""
        asyncio.run(self.stage.on_record("owner-verification", ev.account.encode(),
                                         s.encode(ev), now))

    def challenged(self, signals: list[rc.Signal], code: str = CODE) -> rc.Case:
        """The takeover's signals in, and the code sent to Ann's verified contact."""
        for sig in signals:
            self.signal(sig)
        self.owner(code_sent(self.case(), code))
        return self.case()

    def case(self, account: str = ANN) -> rc.Case:
        return rc.decode_case(self.table.get(account.encode()))

    def out(self, topic: str, kind=None) -> list:
        typ = {"recovery": s.RecoveryEvent, "notifications": s.Notification,
               "labels": s.Label, "decisions": s.Decision}[topic]
        return [msgspec.json.decode(v, type=typ) for t, _, v in self.sent if t == topic]

    def states(self) -> list[str]:
        return [e.state for e in self.out("recovery")]


def code_sent(case: rc.Case, code: str = CODE, n: int = 1,
              challenge: str | None = None) -> s.OwnerVerification:
    return s.OwnerVerification(id=f"code-{n}", ts=NOW, kind="code_sent", case_id=case.case_id,
                               account=case.account, code_digest=code_digest(case.case_id, code),
                               challenge_id=challenge or f"{case.case_id}.sc{case.seq}")


def answer(case: rc.Case, what: str, code: str = CODE, actor: str = "owner",
           n: int = 1) -> s.OwnerVerification:
    return s.OwnerVerification(id=f"ans-{what}-{n}", ts=NOW, kind="answer", case_id=case.case_id,
                               account=case.account, code_digest=code_digest(case.case_id, code),
                               answer=what, actor=actor)


def analyst(case: rc.Case, state: str, actor: str = "alice", n: int = 1) -> s.RecoveryEvent:
    return s.RecoveryEvent(id=f"console-{n}", ts=NOW, case_id=case.case_id, account=case.account,
                           state=state, actor=actor, reason="customer called")


@pytest.fixture
def ato_signals() -> list[rc.Signal]:
    log = Log()
    history(log, T0)
    takeover(log, T0 + 30 * DAY)
    return feed(log)


# --- detection ------------------------------------------------------------------------------
def test_normal_life_and_a_legitimate_new_phone_raise_no_suspicion():
    log = Log()
    history(log, T0)
    at = T0 + 30 * DAY
    log.account_event("ann", at, "device_added", device="ann-new-phone", ip="ip-ann", country="FR")
    log.account_event("ann", at + 1000, "login", device="ann-new-phone", ip="ip-ann", country="FR")
    log.message("ann", "friend1", at + HOUR, request=True)
    log.transfer("ann", "friend2", at + 2 * HOUR, device="ann-new-phone")
    assert [sig for sig in feed(log) if sig.kind == "suspicion"] == []


def test_the_takeover_is_suspected_at_the_first_login_from_a_new_device_abroad(ato_signals):
    suspicions = [sig for sig in ato_signals if sig.kind == "suspicion"]
    first = suspicions[0]
    at = T0 + 30 * DAY
    assert first.ts == at + 30_000  # the login: before any change or money request
    assert first.reasons == ["new_device_and_new_country"]
    assert first.compromise_from_ts == at  # the first failed login
    assert first.device == hashed("device", "evil-phone")
    reset = next(sig for sig in suspicions if sig.ts == at + 90_000)
    assert {"new_device_and_credential_change", "new_country_and_credential_change"} <= set(reset.reasons)
    requests = {sig.request_to for sig in suspicions if sig.request_to}
    assert requests == {hashed("account", f"friend{i}") for i in range(4)}
    assert any(sig.transfer and sig.transfer[3] == 45_000 for sig in suspicions)


def test_at_home_the_takeover_is_suspected_at_the_credential_change():
    log = Log()
    history(log, T0)
    at = T0 + 30 * DAY
    log.account_event("ann", at, "device_added", device="evil-phone", ip="ip-x", country="FR")
    log.account_event("ann", at + 60_000, "email_changed", device="evil-phone", ip="ip-x",
                      country="FR")
    (first, *_) = [sig for sig in feed(log) if sig.kind == "suspicion"]
    assert first.ts == at + 60_000 and first.reasons == ["new_device_and_credential_change"]


# --- the state machine ----------------------------------------------------------------------
def test_a_suspicion_opens_contains_and_challenges_and_duplicates_merge(ato_signals):
    h = Harness()
    for sig in ato_signals:
        h.signal(sig)
    assert h.states() == ["opened", "contained", "owner_verification"]  # one case only
    case = h.case()
    assert case.state == "owner_verification" and case.deadline_ts == NOW + 1800 * 1000
    assert case.devices == [hashed("device", "evil-phone")]
    contained = h.out("recovery")[1]
    assert "revoked" in contained.reason and hashed("device", "evil-phone") in contained.reason
    warned = {n.account for n in h.out("notifications") if n.kind == "contact_warning"}
    assert warned == {hashed("account", f"friend{i}") for i in range(4)}
    assert [n.kind for n in h.out("notifications") if n.account == ANN] == ["step_up_challenge"]
    assert msgspec.msgpack.decode(h.flags[ANN.encode()])[0] == "owner_verification"


def test_redelivered_inputs_leave_the_case_unchanged(ato_signals):
    h = Harness()
    for sig in ato_signals:
        h.signal(sig)
    before, sent = h.table[ANN.encode()], len(h.sent)
    for sig in ato_signals:  # every input again
        h.signal(sig, NOW + 5000)
    assert h.table[ANN.encode()] == before and len(h.sent) == sent
    wrong = answer(h.case(), "it_was_me", code="000000")
    h.owner(code_sent(h.case()))
    h.owner(wrong)
    assert h.case().code_attempts == 1
    h.owner(wrong, NOW + 1000)  # a redelivered wrong code is not a second attempt
    assert h.case().code_attempts == 1
    ans = answer(h.case(), "confirm_compromise")
    h.owner(ans)
    after, sent = h.table[ANN.encode()], len(h.sent)
    h.owner(ans, NOW + 9000)
    assert h.table[ANN.encode()] == after and len(h.sent) == sent


def test_confirmed_takeover_is_secured_reviewed_and_restored(ato_signals):
    h = Harness()
    h.challenged(ato_signals)
    h.owner(answer(h.case(), "confirm_compromise"), NOW + 60_000)
    assert h.states()[3:] == ["secured", "transfers_review", "restored"]
    secured = h.out("recovery")[3]
    assert secured.actor == "owner" and "credentials reset" in secured.reason
    assert "suggestions paused" in secured.reason
    (label,) = h.out("labels")
    at = T0 + 30 * DAY
    assert label.kind == "ato_confirmed" and label.is_fraud
    assert label.compromise_from_ts == at and label.compromise_to_ts == NOW
    recalled = h.out("decisions")
    assert [(d.action, d.amount_cents, d.model_version) for d in recalled] == \
        [("block", 45_000, "analyst:recovery")]
    assert [n.kind for n in h.out("notifications") if n.account == ANN][-1] == "recovery_summary"
    assert h.case().state == "restored" and h.case().deadline_ts is None


def test_false_alarm_closes_legitimate_releases_and_labels_not_ato(ato_signals):
    h = Harness()
    h.challenged(ato_signals)
    h.owner(answer(h.case(), "it_was_me"))
    assert h.states()[-1] == "closed_legitimate" and h.out("recovery")[-1].actor == "owner"
    (label,) = h.out("labels")
    assert label.kind == "not_ato" and not label.is_fraud
    assert [d.action for d in h.out("decisions")] == ["approve"]
    h.signal(rc.Signal(kind="suspicion", id="later:security", account=ANN, ts=NOW,
                       reasons=["new_device_and_credential_change"]), NOW + HOUR)
    assert h.states()[-1] == "closed_legitimate"  # the same 24 h signals do not reopen it


def test_the_owners_word_without_the_code_changes_nothing(ato_signals):
    """An attacker holding Ann's session sees the challenge and its case id; "it was me"
    without the code sent to her verified contact, or with a guess, unlocks nothing."""
    h = Harness()
    case = h.challenged(ato_signals)
    for n, guess in enumerate(("000000", "123456"), 1):
        h.owner(answer(case, "it_was_me", code=guess, n=n))
    assert h.states()[-1] == "owner_verification" and h.case().code_attempts == 2
    # nor in the owner's name through the analysts' door (from_analyst routes it here)
    h.request(analyst(case, "closed_legitimate", actor="owner"))
    h.request(analyst(case, "closed_legitimate", actor="stream", n=2))
    assert h.states()[-1] == "owner_verification" and h.out("labels") == []
    # the owner, with the code, within the limit: verified
    h.owner(answer(case, "confirm_compromise", n=3))
    assert h.states()[3] == "secured" and h.out("recovery")[3].actor == "owner"
    # the code is used: given again, it proves nothing more
    h.owner(answer(case, "it_was_me", n=4))
    assert "closed_legitimate" not in h.states()


def test_an_answer_before_any_code_or_with_an_old_challenges_code_is_wrong(ato_signals):
    h = Harness()
    for sig in ato_signals:
        h.signal(sig)
    case = h.case()
    h.owner(answer(case, "it_was_me"))  # no code sent yet: nothing can match
    h.owner(code_sent(case, challenge=f"{case.case_id}.sc1"))  # not this challenge's
    h.owner(answer(case, "it_was_me", n=2))
    assert h.case().code_attempts == 2 and h.states()[-1] == "owner_verification"
    h.owner(code_sent(case, "555111", n=2))
    h.owner(code_sent(case, "777222", n=3))  # sent again (a redelivered challenge): the last counts
    h.owner(answer(case, "it_was_me", code="555111", n=3))
    assert h.states()[-1] == "escalated"  # the third wrong code


def test_three_wrong_codes_escalate_then_an_analyst_closes_it_fraudulent(ato_signals):
    h = Harness()
    case = h.challenged(ato_signals)
    for n in range(1, rc.MAX_CODE_ATTEMPTS + 1):
        assert h.states()[-1] == "owner_verification"
        h.owner(answer(case, "it_was_me", code=f"{n:06d}", n=n))
    assert h.states()[-1] == "escalated" and h.case().escalated_from == "owner_verification"
    escalated = h.out("recovery")[-1]
    assert escalated.actor == "stream" and f"{rc.MAX_CODE_ATTEMPTS} wrong codes" in escalated.reason
    h.owner(answer(case, "it_was_me", n=9))  # the right code, too late: changes nothing
    assert h.states()[-1] == "escalated"
    assert msgspec.msgpack.decode(h.flags[ANN.encode()])[0] == "escalated"  # still held
    h.request(analyst(case, "closed_fraudulent"))
    assert h.states()[-1] == "closed_fraudulent"
    closing = h.out("recovery")[-1]
    assert closing.actor == "alice" and "customer called" in closing.reason
    assert [lb.kind for lb in h.out("labels")] == ["ato_confirmed"]
    assert {d.action for d in h.out("decisions")} == {"block"}


def test_an_answer_given_in_time_counts_even_if_it_arrives_after_the_deadline(ato_signals):
    h = Harness()
    case = h.challenged(ato_signals)
    # taken by the service at the deadline, read just after it
    in_time = msgspec.structs.replace(answer(case, "confirm_compromise"), ts=case.deadline_ts)
    assert h.stage.overdue(case.deadline_ts + rc.IN_FLIGHT_MS - 1) == []  # no time-out yet
    h.owner(in_time, case.deadline_ts + rc.IN_FLIGHT_MS - 1)
    assert h.states()[-1] in ("transfers_review", "restored")


def test_an_answer_read_before_the_deadline_counts_whatever_its_stamp_says(ato_signals):
    """The messaging host's clock runs 5 minutes ahead: its stamp is past the deadline, but
    the worker reads the answer a minute before it."""
    h = Harness()
    case = h.challenged(ato_signals)
    skewed = msgspec.structs.replace(answer(case, "confirm_compromise"),
                                     ts=case.deadline_ts + 5 * 60_000)
    h.owner(skewed, case.deadline_ts - 60_000)
    assert h.states()[-1] in ("transfers_review", "restored")


def test_an_answer_given_after_the_deadline_changes_nothing(ato_signals):
    h = Harness()
    case = h.challenged(ato_signals)
    # arrives before the time-out fires, but was given too late
    late = msgspec.structs.replace(answer(case, "confirm_compromise"), ts=case.deadline_ts + 1)
    h.owner(late, case.deadline_ts + 2)
    assert h.states()[-1] == "owner_verification"
    (key, timeout), = h.stage.overdue(case.deadline_ts + rc.IN_FLIGHT_MS)
    h.signal(timeout, case.deadline_ts + rc.IN_FLIGHT_MS)
    assert h.states()[-1] == "escalated"


def test_an_overdue_case_escalates_once_and_stale_timeouts_do_nothing(ato_signals):
    h = Harness()
    for sig in ato_signals:
        h.signal(sig)
    assert h.stage.overdue(NOW + 1000) == []
    deadline = h.case().deadline_ts
    assert h.stage.overdue(deadline) == []  # an answer given in time may still be in flight
    fires = deadline + rc.IN_FLIGHT_MS
    (key, timeout), = h.stage.overdue(fires)
    assert h.stage.overdue(fires + 1000) == []  # sent once
    stale = rc.Signal(kind="timeout", id="t:old", account=ANN, ts=fires, seq=timeout.seq - 1)
    h.signal(stale, fires)
    assert h.states()[-1] == "owner_verification"
    h.signal(timeout, fires)
    h.signal(timeout, fires + 2000)
    assert h.states()[-2:] == ["owner_verification", "escalated"]
    assert "overdue" in h.out("recovery")[-1].reason


def test_the_table_equals_the_fold_of_the_transitions(ato_signals):
    h = Harness()
    h.challenged(ato_signals)
    h.owner(answer(h.case(), "confirm_compromise"))
    folded = rc.fold(h.out("recovery") + [analyst(h.case(), "escalated", n=9)])  # a request
    case = h.case()
    (rebuilt,) = folded.values()
    assert (rebuilt.state, rebuilt.seq, rebuilt.deadline_ts, rebuilt.contained_ts) == \
        (case.state, case.seq, case.deadline_ts, case.contained_ts)


def test_decide_holds_transfers_around_an_open_case_and_is_stricter_after_restore():
    h = Harness()
    other = hashed("account", "bob")
    tr = s.TransferRequested(id="x1", ts=NOW, transfer_id="x1", sender=other, recipient=ANN,
                             amount_cents=100, payout_due_ts=NOW + 30_000)
    assert h.stage.adjust(tr, "approve", []) == "approve"
    h.flags[ANN.encode()] = rc.encode(("contained", NOW))
    hits = []
    assert h.stage.adjust(tr, "approve", hits) == "hold" and hits == ["recovery:recipient_contained"]
    assert h.stage.adjust(tr, "block", []) == "block"
    import time
    h.flags[ANN.encode()] = rc.encode(("restored", int(time.time() * 1000)))
    mine = msgspec.structs.replace(tr, sender=ANN, recipient=other)
    assert h.stage.adjust(mine, "approve", []) == "warn"
    assert h.stage.adjust(mine, "warn", []) == "hold"
    h.flags[ANN.encode()] = rc.encode(("restored", int(time.time() * 1000) - 73 * HOUR))
    assert h.stage.adjust(mine, "approve", []) == "approve"


def test_bench_figures_on_a_hand_built_takeover_and_a_new_phone():
    from features.routing import order_key
    from pipelines.bench.recovery import measure

    log = Log()
    history(log, T0)
    at = takeover(log, T0 + 30 * DAY)
    friend_pays = log.transfer("friend1", "ann", at + 400_000, amount=30_000)
    bob = T0 + 10 * DAY
    log.account_event("bob", bob, "signup", device="bob-phone", ip="ip-bob", country="FR")
    log.account_event("bob", bob + 5 * DAY, "device_added", device="bob-new", ip="ip-bob", country="FR")
    log.account_event("bob", bob + 5 * DAY + 3 * HOUR, "password_reset", device="bob-new",
                      ip="ip-bob", country="FR")
    end = at + HOUR
    log.append(s.Label(id="gt", ts=at, kind="ato_confirmed", account=ANN, is_fraud=True,
                       known_at=end + HOUR, scenario="ato", compromise_from_ts=at,
                       compromise_to_ts=end))
    for n, tr in enumerate([t for t in log if type(t) is s.TransferRequested and t.ts >= at]):
        log.append(s.Label(id=f"gt{n}", ts=tr.ts, kind="user_scam_report", account=ANN,
                           transfer_id=tr.transfer_id, is_fraud=True, known_at=end + 2 * HOUR,
                           scenario="ato"))
    figures = measure(sorted(log, key=order_key))
    assert figures["takeovers"] == figures["contained"] == 1
    assert figures["time_to_contain_s"]["p50"] == 30.0  # the login from the new device abroad
    assert figures["fraud_transfers"] == 2
    assert figures["saved_eur_per_takeover"] == (45_000 + friend_pays.amount_cents) / 100
    assert figures["lost_eur_per_takeover"] == 0
    assert figures["false_locks"] == 0 and figures["legit_device_changes"] == 1


def test_console_actions_open_cases_and_ask_for_transitions():
    from pipelines.contracts.topics import InvalidEvent
    from pipelines.recovery.stage import SIGNALS, from_analyst

    def action(kind, target_kind, target, **params):
        return s.AnalystAction(id=f"x-{kind}", ts=NOW, actor="alice", role="analyst", action=kind,
                               target_kind=target_kind, target=target, reason="customer called",
                               params=params)

    h = Harness()
    topic, key, value = from_analyst(action("open_case", "account", ANN))
    assert (topic, key) == (SIGNALS, ANN.encode())
    h.signal(rc.decode_signal(value))
    assert h.states() == ["opened", "contained", "owner_verification"]
    assert h.out("recovery")[0].reason == "suspected takeover: analyst:alice"
    topic, key, value = from_analyst(action("case_transition", "case", h.case().case_id,
                                            account=ANN, state="closed_legitimate"))
    assert topic == SIGNALS  # never straight onto ``recovery``: payment would act on it
    h.signal(rc.decode_signal(value))
    assert h.states()[-1] == "closed_legitimate" and h.out("recovery")[-1].actor == "alice"
    with pytest.raises(ValueError):
        from_analyst(action("open_case", "account", "user-123"))
    with pytest.raises(InvalidEvent):
        from_analyst(action("case_transition", "case", "rc-1", account=ANN, state="teleported"))
    with pytest.raises(KeyError):
        from_analyst(action("case_transition", "case", "rc-1", state="restored"))


def test_a_closed_case_leaves_the_table_after_a_week(ato_signals):
    h = Harness()
    h.challenged(ato_signals)
    h.owner(answer(h.case(), "it_was_me"))
    assert h.stage.overdue(NOW + DAY) == []
    (key, expire), = h.stage.overdue(NOW + rc.KEEP_CLOSED_MS)
    h.signal(expire, NOW + rc.KEEP_CLOSED_MS)
    assert ANN.encode() not in h.table


def test_an_expired_case_takes_its_flag_along_once_the_strict_period_is_over(ato_signals):
    h = Harness()
    through: list[tuple[bytes, object]] = []  # what went to the changelog, in order

    async def set_flag(key, value):
        through.append((key, value))
        await h.stage._set_in_place(key, value)

    h.stage.set_flag = set_flag
    h.challenged(ato_signals)
    h.owner(answer(h.case(), "confirm_compromise"))
    assert msgspec.msgpack.decode(h.flags[ANN.encode()])[0] == "restored"
    (key, expire), = h.stage.overdue(NOW + rc.KEEP_CLOSED_MS)
    h.signal(expire, NOW + rc.KEEP_CLOSED_MS)
    assert ANN.encode() not in h.table and ANN.encode() not in h.flags
    assert through[-1] == (ANN.encode(), None)  # a tombstone, the way every flag change goes
    assert all(value is not None for _, value in through[:-1])

    # a flag that still says something stays: a restore within 72 h, an open case
    for state, since in (("restored", NOW + rc.KEEP_CLOSED_MS - HOUR), ("contained", NOW)):
        h.flags[ANN.encode()] = rc.encode((state, since))
        asyncio.run(h.stage._drop_flag(ANN.encode(), NOW + rc.KEEP_CLOSED_MS))
        assert ANN.encode() in h.flags, state
