"""Graph features across entities: shared devices, cards and IPs, fan-in, in->out speed, and the
1-hop link to confirmed fraud (the NeighbourFlagged fan-out)."""
from __future__ import annotations

import math

from features.account import AccountState
from features.graph import NeighbourFlagged
from features.replay import replay
from features.routing import routes
from features.windows import DAY, HOUR, MINUTE
from pipelines.simulator.events import T0, Log, hashed


def features(log: Log) -> dict[str, dict[str, float]]:
    return {row.transfer_id: row.features for row in replay(log)}


def test_accounts_per_device_card_and_ip():
    log = Log()
    t = T0 + 10 * DAY
    log.account_event("old", t - 7 * DAY - 1, "login", device="farm", ip="vpn")  # 7 d + 1 ms
    for i in range(4):
        log.account_event(f"acct{i}", t - i * DAY - 1, "login", device="farm", ip="vpn")
        log.account_event(f"acct{i}", t - HOUR, "card_registered", card="stolen")
    log.account_event("acct4", t - 7 * DAY, "login", device="farm")  # exactly 7 d: in
    for k in range(3):
        log.account_event(f"x{k}", t - 10 * MINUTE, "login_failed", device="farm", ip="vpn")
    probe = log.transfer("acct4", "bob", t, 5_000, device="farm", card="stolen", ip="vpn")
    f = features(log)[probe.transfer_id]
    assert f["device_accounts_7d"] == 5
    assert f["card_accounts_7d"] == 4
    assert f["ip_accounts_7d"] == 4
    assert f["device_failed_logins_1h"] == 3 and f["ip_failed_logins_1h"] == 3


def test_fan_in_of_a_mule():
    log = Log()
    t = T0 + 3 * DAY
    log.message("friend", "mule", t - 2 * DAY)
    log.transfer("friend", "mule", t - HOUR, 3_000)
    for i in range(12):  # strangers pay the mule, most in the last 24 h
        log.transfer(f"victim{i}", "mule", t - DAY + i * HOUR, 10_000)
    log.transfer("victim0", "mule", t - 2 * HOUR, 10_000)  # twice: one distinct sender
    probe = log.transfer("victim99", "mule", t, 10_000)
    f = features(log)[probe.transfer_id]
    assert f["recipient_count_24h"] == 14
    assert f["recipient_distinct_senders_24h"] == 13
    assert f["recipient_new_senders_share_24h"] == 12 / 13
    assert f["recipient_sum_24h"] == 133_000 and f["recipient_max_24h"] == 10_000


def test_in_out_speed_of_a_mule():
    log = Log()
    t = T0 + 5 * DAY
    for k, (amount, gap) in enumerate(((1_000, 10 * MINUTE), (3_000, 5 * MINUTE),
                                       (6_000, 2 * HOUR))):
        inbound = t - (k + 1) * 6 * HOUR
        log.transfer(f"v{k}", "mule", inbound, amount)
        log.transfer("mule", "boss", inbound + gap, amount)
    quiet = log.transfer("v9", "saver", t, 500)  # saver never sends: nothing forwarded
    log.transfer("v8", "saver", t - DAY, 500)
    probe = log.transfer("v9", "mule", t, 500)
    onward = log.transfer("mule", "boss", t - 6 * HOUR + 7 * MINUTE + 1, 100)
    f = features(log)
    assert f[probe.transfer_id]["recipient_forwarded_share_30m_7d"] == 4_000 / 10_000
    assert f[probe.transfer_id]["recipient_min_forward_minutes_7d"] == 5
    assert f[quiet.transfer_id]["recipient_forwarded_share_30m_7d"] == 0
    assert math.isnan(f[quiet.transfer_id]["recipient_min_forward_minutes_7d"])
    assert f[onward.transfer_id]["sender_minutes_since_last_inbound"] == 7 + 1 / MINUTE


def test_confirmed_fraud_reaches_the_counterparties_when_it_becomes_known():
    log = Log()
    log.message("bob", "eve", T0)
    log.transfer("bob", "eve", T0 + HOUR, 20_000)
    log.message("eve", "ann", T0 + 2 * HOUR)
    fraud_at, known_at = T0 + HOUR, T0 + 5 * DAY
    log.label("eve", fraud_at, known_at)  # learnt days after the fraud
    before = log.transfer("bob", "cat", known_at - 1, 100)
    after = log.transfer("bob", "cat", known_at + 1, 100)
    to_eve = log.transfer("dan", "eve", known_at + 2, 100)
    ann_pays = log.transfer("ann", "cat", known_at + 3, 100)
    log.message("zoe", "eve", known_at + DAY)  # a new contact, after the label
    zoe_pays = log.transfer("zoe", "cat", known_at + DAY + 1, 100)
    stranger = log.transfer("cat", "ann", known_at + DAY + 2, 100)
    f = features(log)
    assert f[before.transfer_id]["sender_fraud_links_30d"] == 0  # nobody knew yet
    assert f[after.transfer_id]["sender_fraud_links_30d"] == 1
    assert f[ann_pays.transfer_id]["sender_fraud_links_30d"] == 1
    assert f[zoe_pays.transfer_id]["sender_fraud_links_30d"] == 1
    assert f[to_eve.transfer_id]["recipient_confirmed_fraud"] == 1
    assert f[to_eve.transfer_id]["sender_fraud_links_30d"] == 0  # dan had no link before
    assert f[stranger.transfer_id]["recipient_fraud_links_30d"] == 1  # ann is linked
    assert f[stranger.transfer_id]["sender_fraud_links_30d"] == 0
    expired = log.transfer("bob", "cat", known_at + 31 * DAY, 100)
    assert features(log)[expired.transfer_id]["sender_fraud_links_30d"] == 0


def test_the_fan_out_events():
    log = Log()
    eve = AccountState()
    for ev, role in ((log.message("eve", "bob", T0), "msg_out"),
                     (log.transfer("amy", "eve", T0 + 1), "recipient")):
        assert eve.learn_one(ev, role) == []
    label = log.label("eve", T0, T0 + DAY)
    derived = eve.learn_one(label, "label")
    assert {d.account for d in derived} == {hashed("account", "bob"), hashed("account", "amy")}
    assert all(isinstance(d, NeighbourFlagged) and d.neighbour == label.account
               and d.ts == label.known_at for d in derived)
    assert len({d.id for d in derived}) == 2
    assert routes(derived[0]) == [("account", derived[0].account, "neighbour_flagged")]
    assert eve.learn_one(log.label("eve", T0, T0 + DAY + 1), "label") == []  # already known
    new_contact = eve.learn_one(log.message("cy", "eve", T0 + 2 * DAY), "msg_in")
    assert [d.account for d in new_contact] == [hashed("account", "cy")]
    assert eve.learn_one(log.message("cy", "eve", T0 + 2 * DAY + 1), "msg_in") == []


def test_unverified_reports_count_but_do_not_spread_and_a_verdict_can_clear():
    log = Log()
    log.transfer("bob", "eve", T0, 100)
    for k in range(2):
        log.label("eve", T0 + k, T0 + HOUR + k, kind="user_scam_report")
    log.label("eve", T0, T0 + 2 * HOUR, kind="ato_confirmed")
    reported = log.transfer("ann", "eve", T0 + DAY, 100)
    bob_pays = log.transfer("bob", "cat", T0 + DAY, 100)
    log.label("eve", T0, T0 + 2 * DAY, kind="analyst_verdict")
    confirmed = log.transfer("ann", "eve", T0 + 3 * DAY, 100)
    log.label("eve", T0, T0 + 4 * DAY, kind="analyst_verdict", is_fraud=False)
    cleared = log.transfer("ann", "eve", T0 + 5 * DAY, 100)
    f = features(log)
    assert f[reported.transfer_id]["recipient_scam_reports_30d"] == 2
    assert f[reported.transfer_id]["recipient_confirmed_fraud"] == 0
    assert f[bob_pays.transfer_id]["sender_fraud_links_30d"] == 0
    assert f[confirmed.transfer_id]["recipient_confirmed_fraud"] == 1
    assert f[cleared.transfer_id]["recipient_confirmed_fraud"] == 0
