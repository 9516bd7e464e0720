"""Counterparty risk from delayed labels (features/risk.py), label routing by party, the 30-day
day buckets of a Flow, and the spending profile."""
from __future__ import annotations

import math
import random

import pytest

from features import state as state_module
from features.graph import NeighbourFlagged
from features.replay import replay
from features.routing import order_key, routes
from features.velocity import Flow
from features.windows import DAY, HOUR, MINUTE, MONTH, WEEK
from pipelines.simulator.events import T0, Log, hashed


def features(log: Log) -> dict[str, dict[str, float]]:
    return {row.transfer_id: row.features for row in replay(log)}


def nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


# --- routing ------------------------------------------------------------------------------------
def test_a_label_goes_once_to_each_party_and_to_a_judged_account_that_is_neither():
    log = Log()
    a, b, c = (hashed("account", n) for n in ("ann", "bob", "cat"))
    tr = log.transfer("ann", "bob", T0)
    assert routes(log.label("bob", T0, T0, party="recipient", on=tr)) == [
        ("account", a, "label_sent"), ("account", b, "label_received")]
    assert routes(log.label("ann", T0, T0, party="sender", on=tr)) == [
        ("account", a, "label_sent"), ("account", b, "label_received")]
    assert routes(log.label("cat", T0, T0, sender="ann", recipient="bob")) == [
        ("account", a, "label_sent"), ("account", b, "label_received"), ("account", c, "label")]
    assert routes(log.label("ann", T0, T0, sender="ann")) == [("account", a, "label_sent")]
    own = log.transfer("ann", "ann", T0)
    assert routes(log.label(None, T0, T0, party="unknown", on=own)) == [
        ("account", a, "label_sent")]
    assert routes(log.label("ann", T0, T0)) == [("account", a, "label")]  # no parties: as before


# --- a label counts from known_at ---------------------------------------------------------------
def test_a_label_known_after_a_transfer_changes_nothing_for_it_and_counts_for_later_ones():
    log = Log()
    t = T0 + 2 * DAY
    paid = log.transfer("victim", "mule", t, 10_000)
    before = log.transfer("other", "mule", t + 30 * MINUTE, 5_000)  # decided before the report
    log.label("mule", t, known_at=t + HOUR, kind="user_scam_report", party="recipient", on=paid)
    same_ms = log.transfer("third", "mule", t + HOUR, 5_000)  # the label's very millisecond
    after = log.transfer("fourth", "mule", t + 2 * HOUR, 5_000)
    again = log.transfer("victim", "friend", t + 3 * HOUR, 1_000)
    f = features(log)
    for tr in (paid, before, same_ms):
        assert f[tr.transfer_id]["recipient_in_fraud_24h"] == 0
        assert nan(f[tr.transfer_id]["recipient_in_hours_since_fraud"])
    assert nan(f[paid.transfer_id]["recipient_in_fraud_share_24h"])  # no transfer yet: NaN
    assert f[before.transfer_id]["recipient_in_fraud_share_24h"] == 0.0
    g = f[after.transfer_id]
    assert g["recipient_in_count_24h"] == 3 and g["recipient_in_fraud_24h"] == 1
    assert g["recipient_in_fraud_share_24h"] == pytest.approx(1 / 3)
    assert g["recipient_in_hours_since_fraud"] == 2.0
    assert g["recipient_scam_reports_30d"] == 1  # the judged recipient, as before
    v = f[again.transfer_id]  # the victim knows one of its payments was a scam
    assert v["sender_out_fraud_24h"] == 1 and v["sender_out_count_24h"] == 1
    assert v["sender_in_fraud_24h"] == 0 and v["sender_scam_reports_30d"] == 0


def test_events_are_applied_in_known_at_order_whatever_the_input_order():
    log = Log()
    t = T0 + DAY
    paid = log.transfer("victim", "mule", t, 10_000)
    label = log.label("mule", t, known_at=t + HOUR, kind="chargeback", party="recipient", on=paid)
    later = log.transfer("x", "mule", t + 2 * HOUR, 1_000)
    assert sorted([later, label, paid], key=order_key) == [paid, label, later]
    assert features(Log() + [later, label, paid])[later.transfer_id]["recipient_in_fraud_24h"] == 1


# --- party ----------------------------------------------------------------------------------------
def _confirmed(party, judged="bob"):
    log = Log()
    t = T0 + DAY
    log.message("bob", "carl", t - HOUR)  # bob's contact, told if bob is confirmed
    paid = log.transfer("ann", "bob", t, 10_000)
    log.label(judged, t, known_at=t + HOUR, kind="chargeback", party=party, on=paid)
    out = log.transfer("ann", "dan", t + 2 * HOUR)
    inbound = log.transfer("eve", "bob", t + 2 * HOUR)
    to_carl = log.transfer("fay", "carl", t + 3 * HOUR)
    f = features(log)
    return f[out.transfer_id], f[inbound.transfer_id], f[to_carl.transfer_id]


def test_party_unknown_flags_no_account_but_marks_the_transfer():
    out, inbound, carl = _confirmed("unknown", judged="ann")
    assert out["sender_confirmed_fraud"] == 0 and inbound["recipient_confirmed_fraud"] == 0
    assert carl["recipient_fraud_links_30d"] == 0
    assert out["sender_out_fraud_24h"] == 1 and inbound["recipient_in_fraud_24h"] == 1


def test_party_recipient_flags_the_recipient_and_tells_its_contacts():
    out, inbound, carl = _confirmed("recipient", judged="bob")
    assert inbound["recipient_confirmed_fraud"] == 1 and out["sender_confirmed_fraud"] == 0
    assert carl["recipient_fraud_links_30d"] == 1  # the NeighbourFlagged fan-out
    assert out["sender_out_fraud_24h"] == 1 and inbound["recipient_in_fraud_24h"] == 1


def test_party_sender_flags_the_sender_as_a_label_without_party_did():
    out, inbound, _ = _confirmed("sender", judged="ann")
    assert out["sender_confirmed_fraud"] == 1 and inbound["recipient_confirmed_fraud"] == 0
    old, old_in, _ = _confirmed(None, judged="ann")
    assert old["sender_confirmed_fraud"] == 1 and old_in["recipient_confirmed_fraud"] == 0


def test_a_judged_party_learns_the_label_once_and_derives_once():
    log = Log()
    t = T0 + DAY
    log.message("bob", "carl", t - HOUR)
    paid = log.transfer("ann", "bob", t)
    label = log.label("bob", t, known_at=t + HOUR, party="recipient", on=paid)
    states: dict = {}
    list(replay(log, states=states))
    bob = states[("account", label.recipient)]
    derived = bob.learn_one(label, "label_received")  # the same label again: already flagged
    assert derived == [] and len(bob.risk.in_tx) == 1
    ann = states[("account", label.sender)]
    assert ann.fraud.flagged is None and len(ann.risk.out_tx) == 1
    assert not any(isinstance(e, NeighbourFlagged) for e in ann.learn_one(label, "label_sent"))


# --- dedupe, verdicts -------------------------------------------------------------------------
def test_two_labels_on_one_transfer_count_it_once_and_a_legit_verdict_clears_it():
    log = Log()
    t = T0 + DAY
    paid = log.transfer("ann", "bob", t, 10_000)
    log.label("bob", t, t + HOUR, "user_scam_report", party="recipient", on=paid)
    log.label("ann", t, t + 2 * HOUR, "chargeback", party="sender", on=paid)
    twice = log.transfer("x", "bob", t + 3 * HOUR)
    log.label(None, t, t + 4 * HOUR, "analyst_verdict", is_fraud=False, party="unknown", on=paid)
    cleared = log.transfer("y", "bob", t + 5 * HOUR)
    log.label("bob", t, t + 6 * HOUR, "analyst_verdict", party="recipient", on=paid)
    back = log.transfer("z", "bob", t + 7 * HOUR)
    ann_after = log.transfer("ann", "w", t + 8 * HOUR)
    f = features(log)
    assert f[twice.transfer_id]["recipient_in_fraud_24h"] == 1
    assert f[cleared.transfer_id]["recipient_in_fraud_24h"] == 0
    assert nan(f[cleared.transfer_id]["recipient_in_hours_since_fraud"])
    assert f[back.transfer_id]["recipient_in_fraud_24h"] == 1  # the latest known wins
    assert f[ann_after.transfer_id]["sender_out_fraud_30d"] == 1


def test_a_self_transfer_label_marks_both_directions():
    log = Log()
    t = T0 + DAY
    own = log.transfer("ann", "ann", t)
    log.label("ann", t, t + HOUR, "chargeback", party="sender", on=own)
    later = log.transfer("ann", "bob", t + 2 * HOUR)
    f = features(log)[later.transfer_id]
    assert f["sender_out_fraud_24h"] == 1 and f["sender_in_fraud_24h"] == 1
    assert f["sender_confirmed_fraud"] == 1


def test_a_label_without_transfer_id_marks_no_transfer():
    log = Log()
    t = T0 + DAY
    log.transfer("ann", "bob", t)
    log.label("bob", t, t + HOUR, "chargeback", party="recipient", sender="ann", recipient="bob")
    later = log.transfer("x", "bob", t + 2 * HOUR)
    f = features(log)[later.transfer_id]
    assert f["recipient_in_fraud_24h"] == 0 and f["recipient_confirmed_fraud"] == 1


# --- windows ------------------------------------------------------------------------------------
def test_window_edges_24h_7d_30d():
    """A fraudulent transfer exactly W old is inside the W window, 1 ms more and it is out."""
    log = Log()
    t = T0 + DAY
    paid = log.transfer("ann", "mule", t, 10_000)
    log.label("mule", t, t + HOUR, "chargeback", party="recipient", on=paid)
    probes = {age: log.transfer("p", "mule", t + age) for age in
              (DAY, DAY + 1, WEEK, WEEK + 1, MONTH, MONTH + 1)}
    f = features(log)
    fraud = {age: [f[tr.transfer_id][f"recipient_in_fraud_{w}"] for w in ("24h", "7d", "30d")]
             for age, tr in probes.items()}
    assert fraud == {DAY: [1, 1, 1], DAY + 1: [0, 1, 1], WEEK: [0, 1, 1], WEEK + 1: [0, 0, 1],
                     MONTH: [0, 0, 1], MONTH + 1: [0, 0, 0]}
    assert f[probes[DAY].transfer_id]["recipient_in_hours_since_fraud"] == 24.0
    assert f[probes[MONTH].transfer_id]["recipient_in_hours_since_fraud"] == 30 * 24.0
    assert nan(f[probes[MONTH + 1].transfer_id]["recipient_in_hours_since_fraud"])
    first = f[probes[DAY].transfer_id]
    assert first["recipient_in_count_24h"] == 1 and first["recipient_in_fraud_share_24h"] == 1.0
    late = f[probes[MONTH + 1].transfer_id]
    assert late["recipient_in_fraud_30d"] == 0 and late["recipient_in_fraud_share_30d"] == 0.0


def test_a_label_on_a_transfer_older_than_30_days_is_not_kept():
    log = Log()
    t = T0 + DAY
    paid = log.transfer("ann", "mule", t, 10_000)
    log.label("mule", t, t + MONTH + HOUR, "chargeback", party="recipient", on=paid)
    states: dict = {}
    list(replay(log, states=states))
    assert not states[("account", paid.recipient)].risk.in_ts


# --- 30-day buckets -------------------------------------------------------------------------------
def _long_history(seed: int, days: int = 240) -> Log:
    """One account paying and being paid at irregular times for months, with quiet weeks."""
    rnd = random.Random(seed)
    log = Log()
    t = T0
    end = T0 + days * DAY
    while t < end:
        t += rnd.choice((rnd.randint(1, 6 * HOUR), rnd.randint(HOUR, 3 * DAY), rnd.randint(0, 10)))
        if rnd.random() < 0.03:
            t += rnd.randint(5, 12) * DAY  # a quiet spell
        if rnd.random() < 0.6:
            log.transfer("me", f"f{rnd.randrange(30)}", t, rnd.randint(100, 90_000))
        else:
            log.transfer(f"f{rnd.randrange(30)}", "me", t, rnd.randint(100, 90_000))
    return log


def _bucketed(times: list[int], t: int) -> list[int]:
    """The indices of the transfers a 30-day read at t counts, by brute force: greedy day
    buckets over the (sorted) times, then every transfer before t whose bucket opened in the
    last 30 days."""
    starts, start = [], None
    for ts in times:
        if start is None or ts >= start + DAY:
            start = ts
        starts.append(start)
    return [i for i, (ts, s) in enumerate(zip(times, starts)) if ts < t and s >= t - MONTH]


@pytest.mark.parametrize("seed", [1, 2])
def test_30_day_counts_equal_a_brute_force_and_survive_rebases(seed, monkeypatch):
    log = _long_history(seed)
    me = hashed("account", "me")
    sent = [e for e in log if e.sender == me]
    received = [e for e in log if e.recipient == me]
    plain = features(log)
    monkeypatch.setattr(state_module, "SWEEP_EVERY", DAY)  # sweeps and rebases all the time
    monkeypatch.setattr(state_module, "REBASE_AT", state_module.BASE_LAG + 2 * DAY)
    rebased = features(log)
    checked = 0
    for tr in log:
        p = "sender" if tr.sender == me else "recipient"
        f = plain[tr.transfer_id]
        assert all(x == y or (nan(x) and nan(y))
                   for x, y in zip(f.values(), rebased[tr.transfer_id].values()))
        out = [sent[i].amount_cents for i in _bucketed([e.ts for e in sent], tr.ts)]
        into = _bucketed([e.ts for e in received], tr.ts)
        assert f[f"{p}_out_count_30d"] == len(out)
        assert f[f"{p}_in_count_30d"] == len(into)
        exact = sum(1 for e in sent if tr.ts - MONTH <= e.ts < tr.ts)
        assert exact >= len(out) >= sum(1 for e in sent if tr.ts - MONTH + DAY <= e.ts < tr.ts)
        if p == "sender":
            assert f["sender_out_sum_30d"] == sum(out) and f["sender_out_max_30d"] == max(out, default=0)
            assert (nan(f["sender_out_mean_30d"]) if not out
                    else f["sender_out_mean_30d"] == sum(out) / len(out))
        checked += 1
    assert checked > 250


def test_a_late_transfer_joins_the_bucket_whose_span_holds_it():
    flow = Flow()
    for t, amount in ((10 * DAY, 100), (11 * DAY + HOUR, 200), (12 * DAY + 2 * HOUR, 300)):
        flow.add(t, amount, 1, 0, 0, by_day=True)
    flow.add(11 * DAY, 50, 1, 0, 0, by_day=True)  # late: the first bucket's span
    flow.add(9 * DAY, 70, 1, 0, 0, by_day=True)  # older than every bucket: its own, in front
    assert flow.days[0::4] == [9 * DAY, 10 * DAY, 11 * DAY + HOUR, 12 * DAY + 2 * HOUR]
    assert flow.days[1::4] == [1, 2, 1, 1] and flow.days[2::4] == [70, 150, 200, 300]
    assert flow.windows(40 * DAY)[2] == (4, 650, 300)  # buckets opened at 10, 11, 12 d: in
    assert flow.windows(39 * DAY)[2] == (5, 720, 300)  # the bucket opened at 9 d: exactly 30 d old
    assert flow.windows(39 * DAY + 1)[2] == (4, 650, 300)
    assert flow.windows(12 * DAY + 2 * HOUR)[2] == (4, 420, 200)  # exact rows: the read's ms is out


# --- spending and the recipient's amount baseline ----------------------------------------------
def test_spending_profile_and_the_recipients_usual_inbound_amount():
    log = Log()
    t = T0 + 20 * DAY
    for k, amount in enumerate((1_000, 3_000, 2_000)):
        log.transfer("ann", f"f{k}", t - (k * 5 + 1) * DAY - HOUR, amount)  # 1, 6, 11 d ago
    log.transfer("ann", "g", t - HOUR, 4_000)
    for k in range(4):
        log.transfer(f"payer{k}", "bob", t - (k + 1) * DAY, 2_000)
    probe = log.transfer("ann", "bob", t, 20_000)
    f = features(log)[probe.transfer_id]
    assert f["sender_out_mean_24h"] == 4_000
    assert f["sender_out_mean_7d"] == (4_000 + 1_000 + 3_000) / 3
    assert f["sender_out_mean_30d"] == 10_000 / 4
    assert f["sender_out_sum_30d"] == 10_000 and f["sender_out_max_30d"] == 4_000
    assert f["sender_out_count_30d"] == 4 and f["sender_out_count_7d"] == 3
    assert f["recipient_amount_to_median_30d"] == 10.0
    assert f["recipient_amount_history_30d"] == 4
    assert f["recipient_in_count_30d"] == 4
    first = features(Log() + [probe])[probe.transfer_id]
    assert nan(first["sender_out_mean_30d"]) and first["sender_out_sum_30d"] == 0
    assert nan(first["recipient_amount_to_median_30d"])
