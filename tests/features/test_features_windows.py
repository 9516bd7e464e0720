"""Feature windows and families, one entity at a time: exact boundaries, expiry, baselines,
conversation, assistant and security signals."""
from __future__ import annotations

import math

import pytest

from features.account import AccountState
from features.replay import replay
from features.velocity import HISTORY, MAX_ROWS
from features.windows import DAY, HOUR, MINUTE, WEEK, WINDOWS
from pipelines.simulator.events import T0, Log


def features(log: Log) -> dict[str, dict[str, float]]:
    return {row.transfer_id: row.features for row in replay(log)}


@pytest.mark.parametrize("name,width", WINDOWS)
def test_window_boundaries_are_exact(name, width):
    """An event exactly W old is in the W window, one a millisecond older is out, and one at the
    transfer's own millisecond is out; the same for sender, recipient, device and card."""
    log = Log()
    at = T0 + 10 * WEEK
    log.transfer("ann", "bob", at - width - 1, 700, device="ph", card="cc")  # just too old
    log.transfer("ann", "bob", at - width, 500, device="ph", card="cc")  # exactly W old: in
    log.transfer("ann", "cat", at - 1, 300, device="ph", card="cc")
    log.transfer("ann", "bob", at, 100, device="ph", card="cc")  # same ms: out
    probe = log.transfer("ann", "bob", at, 50, device="ph", card="cc")
    f = features(log)[probe.transfer_id]
    for who, cp in (("sender", "recipients"), ("device", "recipients"), ("card", "recipients")):
        assert f[f"{who}_count_{name}"] == 2
        assert f[f"{who}_sum_{name}"] == 800
        assert f[f"{who}_max_{name}"] == 500
        assert f[f"{who}_distinct_{cp}_{name}"] == 2
    assert f[f"recipient_count_{name}"] == 1  # bob received the one exactly W old
    assert f[f"recipient_distinct_senders_{name}"] == 1


def test_windows_nest():
    log = Log()
    for i, age in enumerate((MINUTE, 30 * MINUTE, 5 * HOUR, 3 * DAY, 8 * DAY)):
        log.transfer("ann", f"friend{i}", T0 + 20 * DAY - age, 1_000 * (i + 1))
    probe = log.transfer("ann", "zed", T0 + 20 * DAY, 10)
    f = features(log)[probe.transfer_id]
    assert [f[f"sender_count_{w}"] for w, _ in WINDOWS] == [1, 2, 3, 4]
    assert [f[f"sender_sum_{w}"] for w, _ in WINDOWS] == [1_000, 3_000, 6_000, 10_000]


def test_flow_is_bounded_by_time_and_size():
    """Old rows go as new ones come: a week of rows plus the amount history, never MAX_ROWS+."""
    st = AccountState()
    log = Log()
    for day in range(60):
        for k in range(3):
            st.learn_one(log.transfer("ann", f"p{k}", T0 + day * DAY + k * HOUR, 100), "sender")
    assert len(st.sent.ts) == max(7 * 3 + 1, HISTORY)  # + the row exactly 7 d old
    flood = AccountState()
    for i in range(MAX_ROWS + 500):
        flood.learn_one(log.transfer("ann", "bob", T0 + i, 100), "sender")
    assert len(flood.sent.ts) == MAX_ROWS


def test_amount_against_the_senders_own_history():
    log = Log()
    for i, amount in enumerate((1_000, 2_000, 3_000, 4_000)):
        log.transfer("ann", "bob", T0 + i * DAY, amount)
    first = log.transfer("ann", "bob", T0 - 31 * DAY, 1_000_000)  # older than 30 d: no history
    probe = log.transfer("ann", "bob", T0 + 10 * DAY, 10_000)
    f = features(log)[probe.transfer_id]
    assert f["sender_amount_history_30d"] == 4
    assert f["sender_amount_to_median_30d"] == 10_000 / 2_500
    std = math.sqrt(((1500 ** 2) * 2 + (500 ** 2) * 2) / 4)
    assert f["sender_amount_zscore_30d"] == pytest.approx((10_000 - 2_500) / std)
    f = features(log)[first.transfer_id]  # a first transfer has no history: NaN, not a guess
    assert math.isnan(f["sender_amount_to_median_30d"]) and f["sender_amount_history_30d"] == 0


def test_conversation_signals():
    log = Log()
    t = T0 + 10 * DAY
    log.message("ann", "bob", t - 9 * DAY)  # the pair's first message: outside 7 d, sets the age
    log.message("bob", "ann", t - 2 * DAY, money=True)  # bob raised money first
    log.message("ann", "bob", t - 2 * DAY + MINUTE, money=True)
    log.message("bob", "ann", t - HOUR, request=True, urgent=True)  # exactly 1 h old: in
    log.message("bob", "ann", t - HOUR - 1, link=True)  # 1 ms older: out
    log.message("bob", "ann", t - MINUTE, link=True)
    log.message("bob", "ann", t, urgent=True)  # same ms as the transfer: out
    log.transfer("bob", "ann", t - DAY, 500)  # bob paid ann once
    probe = log.transfer("ann", "bob", t, 2_000)
    f = features(log)[probe.transfer_id]
    assert f["sender_pair_age_hours"] == 9 * 24
    assert f["sender_pair_msgs_out_7d"] == 1  # by UTC day: the 9-day-old one is out
    assert f["sender_pair_msgs_in_7d"] == 5  # the same-day ones count by day, even at t
    assert f["sender_pair_payee_raised_money_first"] == 1
    assert f["sender_pair_money_msgs_1h"] == 1
    assert f["sender_pair_money_requests_in_1h"] == 1
    assert f["sender_pair_urgent_msgs_1h"] == 1
    assert f["sender_pair_link_msgs_1h"] == 1
    assert (f["sender_pair_prior_transfers_out"], f["sender_pair_prior_transfers_in"]) == (0, 1)
    assert f["sender_first_transfer_to_recipient"] == 1
    assert f["sender_no_prior_conversation"] == 0


def test_a_stranger_is_a_new_counterparty_and_a_silent_pair_expires():
    log = Log()
    log.message("ann", "old", T0)
    log.transfer("ann", "old", T0 + HOUR, 100)
    later = log.transfer("ann", "old", T0 + 40 * DAY, 100)  # silent for 40 days: forgotten
    stranger = log.transfer("ann", "new", T0 + 40 * DAY + 1, 100)
    f = features(log)
    for tr in (later, stranger):
        assert f[tr.transfer_id]["sender_no_prior_conversation"] == 1
        assert f[tr.transfer_id]["sender_first_transfer_to_recipient"] == 1
        assert math.isnan(f[tr.transfer_id]["sender_pair_age_hours"])


def test_assistant_suggestion_seen_for_whom_and_edited():
    log = Log()
    t = T0 + DAY
    log.assistant("ann", "bob", t - 10 * MINUTE, "suggested", "sg1")
    log.assistant("ann", "bob", t - 5 * MINUTE, "edited", "sg1", amount_edited=True)
    log.assistant("ann", "cat", t - 10 * MINUTE, "suggested", "sg2")
    real = log.transfer("ann", "bob", t, 1_000, suggestion_id="sg1", amount_edited=True)
    redirected = log.transfer("ann", "eve", t + 1, 1_000, suggestion_id="sg2",
                              recipient_edited=True)
    forged = log.transfer("ann", "bob", t + 2, 1_000, suggestion_id="never-shown")
    stale = log.transfer("ann", "bob", t + 2 * DAY, 1_000, suggestion_id="sg1")
    plain = log.transfer("ann", "bob", t + 3, 1_000)
    f = features(log)
    pick = ("transfer_suggested", "sender_suggestion_seen", "sender_suggestion_for_other_payee",
            "sender_suggestion_edited", "transfer_amount_edited", "transfer_recipient_edited")
    got = {tr: tuple(f[tr.transfer_id][n] for n in pick)
           for tr in (real, redirected, forged, stale, plain)}
    assert got[real] == (1, 1, 0, 1, 1, 0)
    assert got[redirected] == (1, 1, 1, 0, 0, 1)
    assert got[forged] == (1, 0, 0, 0, 0, 0)
    assert got[stale] == (1, 0, 0, 0, 0, 0)  # suggestions are remembered for a day
    assert got[plain] == (0, 0, 0, 0, 0, 0)


def test_account_security_signals():
    log = Log()
    t = T0 + 20 * DAY
    log.account_event("ann", T0, "signup", device="ph1", country="FR")
    log.account_event("ann", t - 10 * HOUR, "login", device="ph2", country="FR")  # new device
    log.account_event("ann", t - 5 * HOUR, "password_reset", device="ph2")
    log.account_event("ann", t - 2 * HOUR, "login", device="ph2", country="BE")  # new country
    log.account_event("ann", t - 3 * HOUR, "card_registered", card="cc")
    log.account_event("ann", t - HOUR, "login_failed", device="ph9")  # exactly 1 h: in
    log.account_event("ann", t - HOUR - 1, "login_failed", device="ph9")  # out
    log.account_event("ann", t - 1, "login_failed", device="ph9")
    on_known = log.transfer("ann", "bob", t, 1_000, device="ph1")
    on_unknown = log.transfer("ann", "bob", t + 1, 1_000, device="ph9")  # failed logins only
    no_device = log.transfer("ann", "bob", t + 2, 1_000)
    f = features(log)
    a = f[on_known.transfer_id]
    assert a["sender_account_age_days"] == 20
    assert a["sender_hours_since_new_device"] == 10
    assert a["sender_hours_since_password_reset"] == 5
    assert a["sender_hours_since_new_country"] == 2
    assert a["sender_hours_since_new_card"] == 3
    assert math.isnan(a["sender_hours_since_email_change"])
    assert a["sender_failed_logins_1h"] == 2
    assert a["sender_device_first_seen"] == 0
    assert f[on_unknown.transfer_id]["sender_device_first_seen"] == 1
    assert math.isnan(f[no_device.transfer_id]["sender_device_first_seen"])
    assert a["recipient_account_age_days"] != a["recipient_account_age_days"]  # bob: no signup


def test_the_signup_device_is_not_new_and_changes_fade_after_30_days():
    log = Log()
    log.account_event("ann", T0, "signup", device="ph1", country="FR")
    early = log.transfer("ann", "bob", T0 + HOUR, 100, device="ph1")
    log.account_event("ann", T0 + DAY, "email_changed")
    late = log.transfer("ann", "bob", T0 + 32 * DAY, 100, device="ph1")
    f = features(log)
    assert math.isnan(f[early.transfer_id]["sender_hours_since_new_device"])
    assert math.isnan(f[early.transfer_id]["sender_hours_since_new_country"])
    assert math.isnan(f[late.transfer_id]["sender_hours_since_email_change"])
    assert f[late.transfer_id]["sender_device_first_seen"] == 1  # unseen for 30 days


def test_ato_signals():
    log = Log()
    t = T0 + 10 * DAY
    st = AccountState()
    events = [log.account_event("ann", T0, "signup", device="ph1"),
              log.account_event("ann", t - 3 * HOUR, "device_added", device="evil"),
              log.account_event("ann", t - 2 * HOUR, "email_changed", device="evil")]
    events += [log.message("ann", f"friend{i}", t - 10 * MINUTE + i, request=True)
               for i in range(4)]
    events += [log.transfer("ann", f"mule{i}", t - MINUTE + i, 50_000) for i in range(2)]
    roles = {"AccountEvent": "security", "MessageSent": "msg_out", "TransferRequested": "sender"}
    for ev in events:
        st.learn_one(ev, roles[type(ev).__name__])
    signals = st.ato_signals(t)
    assert signals == {"new_device_24h": 1.0, "credential_change_24h": 1.0,
                       "new_device_and_credential_change_24h": 1.0, "money_requests_out_1h": 4.0,
                       "new_recipients_24h": 2.0, "failed_logins_1h": 0.0}
    assert st.ato_signals(t + 2 * DAY)["new_device_and_credential_change_24h"] == 0
