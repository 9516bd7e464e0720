"""Entity states as the stream keeps them: idempotence, serialisation, size, expiry, event time."""
from __future__ import annotations

import math
import time

import pytest
from msgspec.structs import replace

from features import state as state_module
from features.account import AccountState
from features.links import DeviceState
from features.replay import replay
from features.routing import STATE_CLASSES, order_key
from features.windows import DAY, HOUR, MINUTE, WEEK
from pipelines.simulator.events import T0, Log, synthetic_log


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal value for value, NaN equal to NaN, in the same order."""
    return list(a) == list(b) and all(x == y or (math.isnan(x) and math.isnan(y))
                                      for x, y in zip(a.values(), b.values()))


def rows(events, **kw) -> list:
    return [(r.transfer_id, r.features) for r in replay(events, **kw)]


def assert_same_rows(a: list, b: list) -> None:
    assert [i for i, _ in a] == [i for i, _ in b]
    bad = [i for (i, fa), (_, fb) in zip(a, b) if not same(fa, fb)]
    assert not bad, f"{len(bad)} transfers differ, e.g. {bad[:3]}"


@pytest.fixture(scope="module")
def month() -> Log:
    return synthetic_log(n_accounts=100, days=35, seed=3)


@pytest.fixture(scope="module")
def month_rows(month) -> list:
    return rows(month)


def test_seen_and_mark():
    st = AccountState()
    assert not st.seen(0)
    st.mark(5)
    assert st.seen(5) and st.seen(3) and not st.seen(6)
    st.mark(2)  # never goes back
    assert st.seq == 5


def test_a_redelivered_event_changes_nothing():
    log = Log()
    st = AccountState()
    events = [log.message("ann", "bob", T0, money=True), log.transfer("ann", "bob", T0 + MINUTE)]
    for seq, (ev, role) in enumerate(zip(events, ("msg_out", "sender"))):
        st.learn_one(ev, role)
        st.mark(seq)
    before = st.to_bytes()
    for seq, (ev, role) in enumerate(zip(events, ("msg_out", "sender"))):  # the restart
        if not st.seen(seq):
            st.learn_one(ev, role)
            st.mark(seq)
    assert st.to_bytes() == before


def test_serialisation_round_trip_preserves_every_state_and_feature(month):
    """Serialise every state halfway through a month and carry on from the copies: the second
    half's features are the same, value for value, as without serialisation."""
    ordered = sorted(month, key=order_key)
    half = len(ordered) // 2
    kept: dict = {}
    rows(ordered[:half], states=kept, presorted=True)
    restored = {}
    for (kind, key), st in kept.items():
        copy = STATE_CLASSES[kind].from_bytes(st.to_bytes())
        assert copy == st and copy.to_bytes() == st.to_bytes()
        restored[(kind, key)] = copy
    assert_same_rows(rows(ordered[half:], states=kept, presorted=True),
                     rows(ordered[half:], states=restored, presorted=True))


def test_features_do_not_depend_on_sweeps_or_the_time_base(month, month_rows, monkeypatch):
    """Sweeping daily and moving the base every 2 days changes no feature: reads filter by
    time themselves, and stored times shift with the base."""
    monkeypatch.setattr(state_module, "SWEEP_EVERY", DAY)
    monkeypatch.setattr(state_module, "REBASE_AT", state_module.BASE_LAG + 2 * DAY)
    assert_same_rows(rows(month), month_rows)


def test_event_time_only_never_the_wall_clock(month, month_rows, monkeypatch):

    def no_wall_clock(*_):
        raise AssertionError("a feature read the wall clock")

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"):
        monkeypatch.setattr(time, name, no_wall_clock)
    assert_same_rows(rows(month), month_rows)


def test_input_order_does_not_matter(month, month_rows):
    assert_same_rows(rows(list(reversed(month))), month_rows)


def typical_week(log: Log, week: int, contacts: list[str]) -> None:
    """~100 messages, ~20 transfers (10 each way), ~10 account events in a week for "me"."""
    start = T0 + week * WEEK
    for day in range(7):
        for burst in range(3):
            friend = contacts[(day * 3 + burst) % len(contacts)]
            t = start + day * DAY + (9 + 4 * burst) * HOUR
            for k in range(5):
                a, b = ("me", friend) if k % 2 == 0 else (friend, "me")
                log.message(a, b, t + k * MINUTE, money=k == 0 and burst == 0)
        friend = contacts[day % len(contacts)]
        log.transfer("me", friend, start + day * DAY + 20 * HOUR, 1_500 + 100 * day, device="ph")
        log.transfer(contacts[(day + 3) % len(contacts)], "me", start + day * DAY + 21 * HOUR, 900)
        if day < 3:
            log.transfer("me", friend, start + day * DAY + 22 * HOUR, 700, device="ph")
            log.transfer(friend, "me", start + day * DAY + 23 * HOUR, 400)
        log.account_event("me", start + day * DAY + 8 * HOUR, "login", device="ph", country="FR")
    for k in range(3):
        log.account_event("me", start + k * DAY + 12 * HOUR, "login", device="ph", country="FR")
    log.assistant("me", contacts[0], start + 6 * DAY, "suggested", f"sg{week}")


def test_a_typical_active_account_fits_in_2_kb():
    """Measured at the counterparty-risk change: 868 bytes before it, 1,771 after: 31 day
    buckets (start, count, sum, max) in each direction for the 30-day counts and spending
    (2 x 375 bytes) and the recipient's 20-transfer amount history (+148)."""
    log = Log()
    contacts = [f"friend{i}" for i in range(8)]
    log.account_event("me", T0 - DAY, "signup", device="ph", country="FR")
    for week in range(6):  # past the 30 days of the longest memory: the steady state
        typical_week(log, week, contacts)
    states: dict = {}
    for _ in replay(log, states=states):
        pass
    me = states[("account", log[0].account)]
    assert len(me.sent.ts) >= 20 and len(me.chat.pairs) == 8
    assert len(me.sent.days) // 4 >= 30 and len(me.received.ts) >= 20
    assert len(me.to_bytes()) <= 2048


def test_expiry_empties_dead_keys_but_keeps_what_must_last():
    log = Log()
    device, account = DeviceState(), AccountState()
    start = T0 - 3 * DAY  # T0 starts a week of event time: the expiries below cross into it
    for i, ev in enumerate([log.account_event("ann", start, "signup", device="ph"),
                            log.transfer("ann", "bob", start + HOUR, device="ph")]):
        device.learn_one(ev, "seen" if i == 0 else "transfer")
        account.learn_one(ev, "security" if i == 0 else "sender")
    for st in (device, account):
        st.expire(start + 6 * DAY)
        assert not st.is_empty()
    device.expire(start + 8 * DAY)  # a device remembers 7 days
    assert device.is_empty()
    account.expire(start + 20 * DAY)
    assert account.chat.pairs and account.sent.ts  # an account, 30 days
    account.expire(start + 40 * DAY)
    assert not account.is_empty() and account.sec.created == start  # the signup keeps the age
    assert not account.chat.pairs and not account.sent.ts


def test_reading_features_changes_no_state(month):
    """features_for is a pure read: the stream may call it on a state it then fails to learn."""
    states: dict = {}
    for _ in replay(month, states=states):
        pass
    before = {k: st.to_bytes() for k, st in states.items()}
    for tr in [e for e in month if type(e).__name__ == "TransferRequested"][-200:]:
        probe = replace(tr, ts=tr.ts + 45 * DAY)  # far ahead: every window has aged
        for (kind, key), st in states.items():
            if kind == "account" and key in (tr.sender, tr.recipient):
                st.features_for(probe, "sender" if key == tr.sender else "recipient")
            elif key in (tr.device, tr.card, tr.ip):
                st.features_for(probe, "transfer")
    assert {k: st.to_bytes() for k, st in states.items()} == before
