"""Streaming decisions on the real broker: replay parity, kill -9 recovery, 1 vs 2 workers,
live rule and list changes, reason codes per fraud scenario, and the payment service end to end.

A model is trained once per session on an offline simulation. The stream is fed the offline
simulator's events (namespaced per test, see ``stream_support``) in event-time order.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from process_support import Processes, wait_for
from service_support import as_user
from stream_support import (DecisionWatcher, compare_features, hand_transfer, publish, read_labels,
                            replayed_features, simulated_log)

from features.vector import FEATURE_NAMES
from pipelines.contracts import schemas as s, signatures
from pipelines.contracts.privacy import pseudonymize
from pipelines.simulator import fraud
from pipelines.simulator.fraud import DEFAULT_MIX

pytestmark = pytest.mark.kafka
STREAM_USERS, STREAM_DAYS = 150, 1.0
# The model is trained on fifteen times the default mix: at its realistic rate (~0.3 % of
# transfers) three days of 1,500 users leave the validation and test slices without a fraud.
FRAUD_HEAVY = {code: rate * 15 for code, rate in DEFAULT_MIX.items()}
# The streamed day shows three cases of every scenario (cases per 1,000 users a day): scams now
# take their victims days apart, so one case of each left one transfer or none to judge.
FRAUD_CASES = dict.fromkeys(DEFAULT_MIX, 3 * 1000 / STREAM_USERS / STREAM_DAYS)
DECIDE_TIMEOUT = 120
# Live pace: each event acknowledged by the broker, then this pause (~75 events/s). The worker
# on this 2-core machine (broker, worker and pytest on it) keeps up at that pace; much faster,
# it falls behind and works from a backlog (see test_parity_when_the_worker_starts_on_a_backlog).
PACE_S = 0.01


# --- fixtures -------------------------------------------------------------------------------
def promote(version: str) -> None:
    """Promote ``version`` on the record: only a promoted model acts (the next worker to start
    applies it; ``wait_ready(..., model=)`` waits until one does)."""
    publish([s.ModelUpdate(id=f"promote-{time.time_ns()}", ts=int(time.time() * 1000),
                           action="promote", version=version, actor="stream-tests",
                           reason="the stream tests' model")])


@pytest.fixture(scope="session")
def model(kafka, session_dir):
    """A model trained on an offline simulation, in the registry every worker reads, promoted."""
    from models import registry
    from models.lifecycle import train_lake
    from pipelines.simulator.offline import run_offline

    lake = session_dir / "train-lake"
    run_offline(lake, seed=101, users=1500, days=3, mix=FRAUD_HEAVY)
    stats = train_lake(lake, root=registry.models_dir())
    assert registry.latest() == stats["version"]
    promote(stats["version"])
    return stats["version"]


@pytest.fixture(scope="module")
def watcher(kafka):
    with DecisionWatcher(("decisions", "notifications")) as w:
        yield w


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory):
    procs = Processes(tmp_path_factory.mktemp("procs"))
    yield procs
    procs.stop_all()


class Run:
    def __init__(self, events, labels, decisions, seconds):
        self.events, self.labels = events, labels
        self.decisions, self.seconds = decisions, seconds
        self.transfers = {e.transfer_id: e for e in events if type(e) is s.TransferRequested}


def wait_ready(watcher, model: str, before=None, timeout: float = 90) -> None:
    """A worker is up and deciding with ``model`` (its promotion has reached the worker) once a
    fresh probe transfer gets its decision from it. ``before``: the simulated log to come,
    whose (past) times the probe must precede, as live traffic would: a probe stamped now
    would make the whole log late (see pipelines/stream/watermarks.py)."""
    ts = before[0].ts - 60_000 if before else None
    deadline = time.monotonic() + timeout
    while True:
        probe = hand_transfer(f"probe-{time.time_ns()}", "probe-payee", 100, "probe", ts=ts)
        publish([probe])
        decided = watcher.wait_all([probe.transfer_id], max(1.0, deadline - time.monotonic()),
                                   "a probe transfer")[probe.transfer_id][0]
        if decided.model_version == model:
            return
        assert time.monotonic() < deadline, f"the worker decides with {decided.model_version}"
        time.sleep(0.5)


def run_live(events, watcher, label: str) -> tuple[dict, float]:
    """Publish at the live pace to running worker(s); wait for every transfer's decision."""
    transfers = [e.transfer_id for e in events if type(e) is s.TransferRequested]
    sent_at = {}

    def sent(_, event):
        if type(event) is s.TransferRequested:
            sent_at[event.transfer_id] = time.monotonic()

    started = time.monotonic()
    publish(events, live=True, on_each=sent, pace_s=PACE_S)
    published = time.monotonic() - started
    decided = watcher.wait_all(transfers, DECIDE_TIMEOUT, label)
    seconds = time.monotonic() - started
    lags = sorted(watcher.arrivals(t)[0][0] - sent_at[t] for t in transfers)
    print(f"\n{label}: {len(events)} events published in {published:.1f}s, all {len(transfers)} "
          f"transfers decided after {seconds:.1f}s; send->decision median "
          f"{lags[len(lags) // 2] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")
    return decided, seconds


@pytest.fixture(scope="module")
def baseline(kafka, model, watcher, module_procs, session_dir):
    """One worker, fed a whole fraud-heavy offline log at the live pace."""
    lake = session_dir / "baseline-lake"
    with pytest.MonkeyPatch.context() as mp:  # every fraud of the day labelled: judged by labels
        for unlabelled_share in ("P_REPORTED", "P_DISPUTED", "P_CONFIRMED"):
            mp.setattr(fraud, unlabelled_share, 1.0)
        events = simulated_log(lake, seed=202, tag="b1-", users=STREAM_USERS, days=STREAM_DAYS,
                               mix=FRAUD_CASES)
    worker = module_procs.start("baseline-worker", "worker")
    wait_ready(watcher, model, events)
    decided, seconds = run_live(events, watcher, "baseline (1 worker)")
    Processes.stop(worker)
    assert "Traceback" not in module_procs.log_of(worker)
    return Run(events, read_labels(lake, "b1-"), decided, seconds)


def _first(decisions: dict[str, list[s.Decision]]) -> dict[str, s.Decision]:
    return {t: ds[0] for t, ds in decisions.items()}


def parity_report(decided: dict[str, s.Decision], events, label: str) -> list:
    replayed = replayed_features(events)
    assert set(replayed) == set(decided)
    diffs = compare_features(decided, replayed)
    values = len(decided) * len(FEATURE_NAMES)
    by_feature = Counter(d[1] for d in diffs)
    print(f"\n{label} parity: {values - len(diffs)}/{values} values identical "
          f"({100 * (values - len(diffs)) / values:.3f} %), {len({d[0] for d in diffs})}/"
          f"{len(decided)} transfers differ; most often: {by_feature.most_common(8)}")
    dump = os.environ.get("VIGIE_TEST_DUMP")
    if dump:
        import pickle

        with open(f"{dump}.{label.split()[0]}.pkl", "wb") as f:
            pickle.dump({"diffs": diffs, "events": events, "decided": decided}, f)
    return diffs


# --- 1. replay parity -----------------------------------------------------------------------
def _expect_parity(diffs) -> None:
    assert not diffs, f"{len(diffs)} feature values differ, e.g. {diffs[:3]}"


def test_streamed_features_equal_the_replay_value_for_value(baseline, model):
    assert len(baseline.decisions) == len(baseline.transfers) > 100
    decided = _first(baseline.decisions)
    for d in decided.values():  # reproducible and explained
        assert d.model_version == model and not d.shadow
        if d.action != "approve":
            assert d.reasons or d.rule_hits or d.list_hits
    _expect_parity(parity_report(decided, baseline.events, "live"))


def with_a_reported_mule(events: list, tag: str) -> list:
    """``events`` plus a mule whose payers report it while it keeps being paid: labels naming
    their transfers' parties, known between transfers (a one-day simulation has few such), and an
    analyst clearing one of them, so the counterparty-risk features take non-zero values."""
    from stream_support import namespaced

    from features.routing import order_key
    from pipelines.simulator.events import Log

    log, t = Log(), events[0].ts + 3_600_000
    hour = 3_600_000
    paid = [log.transfer(f"victim{k}", "mule", t + 2 * k * hour, 20_000) for k in range(4)]
    for tr in paid:
        log.label("mule", tr.ts, tr.ts + hour, "user_scam_report", party="recipient", on=tr)
    log.transfer("victim0", "friend", t + 9 * hour, 1_000)
    log.label(None, t, t + 10 * hour, "analyst_verdict", is_fraud=False, party="unknown",
              on=paid[0])
    log.transfer("victim9", "mule", t + 11 * hour, 5_000)
    return sorted(events + namespaced(log, f"{tag}rm-"), key=order_key)


def test_parity_when_the_worker_starts_on_a_backlog(kafka, model, watcher, processes, session_dir):
    """The same promise when the worker starts behind: every event already in Kafka (a restart
    after downtime, a catch-up). Event time, not arrival order, must define the features,
    labels included (each reaches both parties of the transfer it names)."""
    events = simulated_log(session_dir / "backlog-lake", seed=404, tag="bk-", users=100, days=1)
    events = with_a_reported_mule(events, "bk-")
    transfers = [e.transfer_id for e in events if type(e) is s.TransferRequested]
    publish(events)
    processes.start("worker", "worker")
    decided = _first(watcher.wait_all(transfers, DECIDE_TIMEOUT, "backlog"))
    _expect_parity(parity_report(decided, events, "backlog"))
    for name in ("recipient_in_fraud_24h", "sender_out_fraud_24h", "recipient_in_fraud_share_7d",
                 "recipient_in_hours_since_fraud"):
        assert any((d.features.get(name) or 0) > 0 for d in decided.values()), name


def _differing(ds: list[s.Decision]) -> list[str]:
    """The fields in which one transfer's decisions differ, when they were made aside."""
    return [f for f in s.Decision.__struct_fields__ if f not in ("ts", "latency_ms")
            and any(getattr(d, f) != getattr(ds[0], f) for d in ds)]


def _recovery_race(ds: list[s.Decision]) -> bool:
    """The decisions differ only as a recovery flag read in processing time makes them differ
    (docs/recovery.md): one made before an account's case flag reached the worker, one after,
    with the same score and features; nothing else may differ."""
    fields = set(_differing(ds))
    hits = [set(d.rule_hits) for d in ds]
    flags = set.union(*hits) - set.intersection(*hits)
    return (bool(flags) and fields <= {"action", "rule_hits", "reasons"}
            and all(h.startswith("recovery:") for h in flags))


# --- 2. kill -9 mid-stream ----------------------------------------------------------------------
def test_kill_9_mid_stream_leaves_one_decision_per_transfer_and_the_same_features(
        kafka, model, watcher, processes, session_dir):
    events = simulated_log(session_dir / "kill-lake", seed=303, tag="k9-", users=100, days=1)
    transfers = [e.transfer_id for e in events if type(e) is s.TransferRequested]
    worker = processes.start("worker", "worker", "--name", "k9")
    wait_ready(watcher, model, events)
    cut = len(events) // 2
    publish(events[:cut], live=True, pace_s=PACE_S)
    before = watcher.decisions(transfers)
    assert before, "nothing decided before the kill"
    os.killpg(worker.pid, signal.SIGKILL)  # no goodbye: unacked parts, uncommitted offsets
    worker.wait()
    # the traffic does not stop while the worker is down
    publish(events[cut:cut + len(events) // 4], live=True, pace_s=PACE_S)
    processes.start("worker2", "worker", "--name", "k9")  # same state directory
    publish(events[cut + len(events) // 4:], live=True, pace_s=PACE_S)
    all_decisions = watcher.wait_all(transfers, DECIDE_TIMEOUT, "after kill -9")
    time.sleep(3)  # let redelivered duplicates, if any, come in
    all_decisions = watcher.decisions(transfers)
    dupes = {t: ds for t, ds in all_decisions.items() if len(ds) > 1}
    # A repeat (a part redelivered after the kill, decided again) must be the same decision,
    # value for value: action, score, model, rule and list hits, reasons, features. Only when
    # it was made may differ.
    conflicting = {t: fields for t, ds in dupes.items() if (fields := _differing(ds))}
    raced = {t: [(d.action, d.rule_hits) for d in dupes[t]] for t in conflicting
             if _recovery_race(dupes[t])}
    print(f"\nkill -9: {len(before)} decided before the kill, {len(dupes)} transfers decided "
          f"more than once, {len(conflicting)} of them differently ({len(raced)} by a recovery "
          f"flag that came between: {raced})")
    assert set(conflicting) == set(raced), conflicting
    _expect_parity(parity_report(_first(all_decisions), events, "kill-9"))


# --- 3. one worker or two ---------------------------------------------------------------------
def test_two_workers_decide_as_one(baseline, model, tmp_path):
    """The baseline log again, on a fresh broker and data dir, with two workers."""
    from models import registry
    from pipelines.bench.harness import fresh_environment

    models = registry.models_dir()
    with fresh_environment() as (broker, root):
        shutil.copytree(models, registry.models_dir())
        promote(model)  # a new broker: a new control table
        procs = Processes(tmp_path)
        try:
            with DecisionWatcher() as w2:
                procs.start("w1", "worker", "--name", "w1")
                wait_ready(w2, model, baseline.events)
                procs.start("w2", "worker", "--name", "w2")
                wait_for(lambda: "Worker ready" in procs.log_of(procs.procs[1])
                         or "Ready" in procs.log_of(procs.procs[1]), timeout=60,
                         what="the second worker to join")
                time.sleep(3)  # the group has rebalanced: each worker holds some partitions
                wait_ready(w2, model, baseline.events)
                decided, _ = run_live(baseline.events, w2, "2 workers")
                stale = control_changes_reach_every_worker(w2)
            logs = [procs.log_of(p) for p in procs.procs]
        finally:
            procs.stop_all()
    assert all("Traceback" not in log for log in logs)
    one, two = _first(baseline.decisions), _first(decided)
    assert set(one) == set(two)
    differ = [(t, one[t].action, two[t].action) for t in one
              if (one[t].action, one[t].score, one[t].rule_hits, one[t].reasons)
              != (two[t].action, two[t].score, two[t].rule_hits, two[t].reasons)]
    raced = [(t, one[t].rule_hits, two[t].rule_hits) for t, *_ in differ
             if _recovery_race([one[t], two[t]])]
    differ = [d for d in differ if d[0] not in {t for t, *_ in raced}]
    feature_diffs = compare_features(two, {t: {k: (float("nan") if v is None else v)
                                               for k, v in d.features.items()}
                                           for t, d in one.items()})
    print(f"\n1 vs 2 workers: {len(differ)} decisions and {len(feature_diffs)} feature values "
          f"differ over {len(one)} transfers; {len(raced)} more by a recovery flag read at a "
          f"different moment: {raced}")
    parity_report(two, baseline.events, "2-workers")
    assert not stale, f"a worker decided with stale rules: {stale}"
    assert all(one[t].action == two[t].action for t, *_ in differ) or not differ, \
        [(t, one[t].action, one[t].rule_hits, two[t].action, two[t].rule_hits)
         for t, *_ in differ[:20]]  # the hits say why (a recovery flag: docs/recovery.md)
    _expect_parity(feature_diffs or [(t, "score") for t, *_ in differ])


def control_changes_reach_every_worker(watcher) -> list:
    """Rule changes read by different workers (analyst-actions has several partitions): after
    "enable" on one partition then "disable" on another, no worker may still apply the rule.
    Returns [(partitions, probes that still hit the rule)] for every pair that failed."""
    from stream_support import publish_at

    n = time.time_ns() % 10**9
    rule, amount = f"t3_rule_{n}", 3_300 + n % 97
    publish_at([("analyst-actions", _action("rule", rule, {
        "op": "upsert", "name": rule, "expression": f"transfer_amount_cents = {amount}",
        "action": "hold"}), 1)])
    stale = []
    for a, b in ((1, 2), (2, 3), (3, 1), (1, 3)):
        time.sleep(0.5)
        publish_at([("analyst-actions", _action("rule", rule, {"op": "enable", "name": rule}), a)])
        time.sleep(0.5)
        publish_at([("analyst-actions", _action("rule", rule, {"op": "disable", "name": rule}), b)])
        time.sleep(LIVE_BUDGET_S)
        probes = [hand_transfer(f"t3-{n}-{a}{b}-{i}", f"t3-payee-{n}", amount, f"t3{n}")
                  for i in range(16)]  # many senders: every decide partition, every worker
        publish(probes)
        decided = watcher.wait_all([p.transfer_id for p in probes], 60, "control probes")
        hits = [t for t, ds in decided.items() if rule in ds[0].rule_hits]
        if hits:
            stale.append(((a, b), len(hits)))
    return stale


# --- 4. rules and lists, live -------------------------------------------------------------------
LIVE_BUDGET_S = 2.0


def _action(kind: str, target: str, params: dict, action: str = "rule_change") -> s.AnalystAction:
    return signatures.sign(s.AnalystAction(
        id=f"t4-{time.time_ns()}", ts=int(time.time() * 1000), actor="alice", role="lead",
        action=action, target_kind=kind, target=target, params=params, reason="stream test"))


def time_to_effect(watcher, change: s.AnalystAction, probe, shows, horizon_s: float = 6.0):
    """Publish ``change``, then a probe transfer every 50 ms; returns (seconds from the change to
    the first probe sent that shows it, seconds from the change to that decision's arrival)."""
    t0 = time.monotonic()
    publish([change])
    sent = []
    while time.monotonic() - t0 < horizon_s:
        tr = probe()
        publish([tr])
        sent.append((time.monotonic(), tr.transfer_id))
        time.sleep(0.05)
    decided = watcher.wait_all([t for _, t in sent], 60, "probes")
    showing = [shows(decided[t][0]) for _, t in sent]
    assert any(showing), f"the change never took effect within {horizon_s}s"
    first = showing.index(True)
    assert all(showing[first:]), f"the change came and went: {showing}"
    effect_s = sent[first][0] - t0
    arrival_s = watcher.arrivals(sent[first][1])[0][0] - t0
    return effect_s, arrival_s


def test_rule_and_list_changes_take_effect_live_within_2s(kafka, model, watcher, processes):
    processes.start("worker", "worker")
    wait_ready(watcher, model)
    n = time.time_ns() % 10**9
    amount = 4_242_00 + n % 97  # only the probes carry it
    rule = f"t4_amount_{n}"
    payer = f"t4-payer-{n}"

    def probe(sender=payer):
        return hand_transfer(sender, f"t4-payee-{n}", amount, f"t4{n}")

    upsert = _action("rule", rule, {"op": "upsert", "name": rule, "priority": "10",
                                    "expression": f"transfer_amount_cents = {amount}",
                                    "action": "block"})
    named = lambda d: rule in d.rule_hits and d.action == "block"  # noqa: E731
    rule_on = time_to_effect(watcher, upsert, probe, named)

    blocked = f"t4-blocked-{n}"
    add = _action("account", pseudonymize("account", blocked), {"list": "block"}, "add_to_list")
    listed = lambda d: d.action == "block" and any(  # noqa: E731
        h.startswith("block:account:") for h in d.list_hits)
    list_on = time_to_effect(watcher, add, lambda: hand_transfer(blocked, f"t4-x-{n}", 1500,
                                                                 f"t4l{n}"), listed)

    disable = _action("rule", rule, {"op": "disable", "name": rule})
    rule_off = time_to_effect(watcher, disable, probe, lambda d: rule not in d.rule_hits)

    figures = {"rule upsert": rule_on, "block-list add": list_on, "rule disable": rule_off}
    print("\nlive changes (change -> first probe sent under it, -> its decision): " + ", ".join(
        f"{k}: {a * 1000:.0f} ms / {b * 1000:.0f} ms" for k, (a, b) in figures.items()))
    # Margin: the probes go out every 50 ms and each takes ~5-30 ms to publish, so the first
    # probe under the change is sent at most ~80 ms after it took effect; the arrival adds the
    # decision's own latency (tens of ms on an idle worker). The budget is 2 s end to end.
    for name, (_, arrival_s) in figures.items():
        assert arrival_s <= LIVE_BUDGET_S, f"{name} took {arrival_s:.2f}s"
    publish([_action("rule", rule, {"op": "delete", "name": rule}),
             _action("account", pseudonymize("account", blocked), {"list": "block"},
                     "remove_from_list")])


# --- 5. reason codes fit the scenario -----------------------------------------------------------
# The signals each scenario's script (pipelines/simulator/fraud.py) leaves, as prefixes of feature
# names, from the point of view of the transfer's sender and recipient.
TAKEOVER_SIGNS = ("hours_since_new_device", "device_first_seen", "hours_since_pass",
                  "hours_since_email", "hours_since_phone", "hours_since_new_country",
                  "failed_logins")
# the attacker, on a new device after credential changes, pays recipients the owner never paid
SENDER_TAKEN_OVER = (*(f"sender_{s}" for s in TAKEOVER_SIGNS), "device_failed_logins",
                     "ip_failed_logins", "sender_new_recipients", "sender_money_requests_out")
# a friend pays the taken-over account after its urgent "friend in need" request
FRIEND_IN_NEED = (*(f"recipient_{s}" for s in TAKEOVER_SIGNS), "sender_pair_money_requests_in",
                  "sender_pair_urgent")
# a fraudster's own account, card and device, registered minutes before paying
NEW_SENDER_ACCOUNT = ("sender_account_age_days", "sender_hours_since_new_device",
                      "sender_hours_since_new_card", "sender_hours_since_new_bank_account",
                      "sender_device_first_seen")
CARD_USE = ("card_", "transfer_has_card")
# a scammer (or a mule's lure) talking a victim into paying: money, urgency, links
LURE_TALK = ("sender_pair_money", "sender_pair_urgent", "sender_pair_link",
             "sender_pair_payee_raised_money_first")
# the payee is a new account the victim never paid, maybe reported
NEW_PAYEE = ("recipient_account_age_days", "recipient_hours_since_new_device",
             "recipient_hours_since_new_bank_account", "sender_no_prior_conversation",
             "sender_first_transfer", "sender_pair_age_hours", "recipient_scam_reports",
             "recipient_fraud_links")
# a mule: many new senders, money forwarded within minutes
FAN_IN = ("recipient_new_senders_share", "recipient_forwarded_share", "recipient_min_forward",
          "recipient_distinct_senders", "sender_minutes_since_last_inbound")
SHARED_KIT = ("device_accounts_7d", "ip_accounts_7d", "card_accounts_7d")
FAMILIES = {
    "ato": SENDER_TAKEN_OVER + FRIEND_IN_NEED,
    "card_testing": CARD_USE + NEW_SENDER_ACCOUNT,
    "stolen_card": CARD_USE + NEW_SENDER_ACCOUNT,
    "mule": FAN_IN + LURE_TALK,
    "fake_account_farm": SHARED_KIT + NEW_SENDER_ACCOUNT + CARD_USE,
    "romance": NEW_PAYEE + LURE_TALK,
    "marketplace": NEW_PAYEE + LURE_TALK,
    "impersonation": NEW_PAYEE + LURE_TALK,
}
TOP_REASONS = 3  # what the console shows first
MIN_FITTING = 0.5  # share of a scenario's caught transfers with a fitting reason in the top 3
MIN_CAUGHT = 0.5  # share of a scenario's transfers not approved


def test_reason_families_are_narrow():
    """A family that took in every feature would fit any explanation: each names a few of the
    model's features, and none the amount or the plain velocities every scenario moves."""
    for scenario, family in FAMILIES.items():
        members = [f for f in FEATURE_NAMES if f.startswith(family)]
        assert 0 < len(members) <= len(FEATURE_NAMES) // 4, (scenario, members)
        assert not any(f.startswith(("transfer_amount", "sender_count", "recipient_sum"))
                       for f in members), (scenario, members)


def fraud_transfers_by_scenario(run: Run) -> dict[str, set]:
    out: dict[str, set] = {}
    for label in run.labels:
        if not label.is_fraud or not label.scenario:
            continue
        ids = out.setdefault(label.scenario, set())
        if label.transfer_id in run.transfers:
            ids.add(label.transfer_id)
        if label.kind == "ato_confirmed":
            lo = label.compromise_from_ts or label.ts
            hi = label.compromise_to_ts or label.known_at
            ids |= {t for t, tr in run.transfers.items()
                    if tr.sender == label.account and lo <= tr.ts <= hi}
    return out


def test_fraud_scenarios_get_decisions_with_fitting_reasons(baseline):
    decided = _first(baseline.decisions)
    by_scenario = fraud_transfers_by_scenario(baseline)
    # legitimate: no fraud label, and not sent by an account reported as a fraudster (a mule's
    # cash-out to its collector is fraud that no one reports or disputes: it has no label)
    reported = {l.account for l in baseline.labels if l.is_fraud and l.kind == "user_scam_report"}
    legit = {t for t in set(decided) - set().union(*by_scenario.values())
             if baseline.transfers[t].sender not in reported}
    approved_legit = sum(decided[t].action == "approve" for t in legit) / len(legit)
    table, failures = [], []
    for scenario, family in FAMILIES.items():
        ids = by_scenario.get(scenario, set())
        if not ids:
            table.append(f"{scenario}: no transfer in this log")
            continue
        caught = [decided[t] for t in ids if decided[t].action != "approve"]
        recall = len(caught) / len(ids)
        top = [[r.feature for r in d.reasons[:TOP_REASONS]] for d in caught]
        fitting = sum(any(f.startswith(family) for f in features) for features in top)
        table.append(f"{scenario}: {len(caught)}/{len(ids)} not approved ({recall:.0%}), "
                     f"{fitting} with a fitting reason, top reasons "
                     f"{Counter(f for features in top for f in features).most_common(4)}")
        if recall < MIN_CAUGHT:
            failures.append(f"{scenario}: recall {recall:.0%} < {MIN_CAUGHT:.0%}")
        elif fitting < MIN_FITTING * len(caught):
            failures.append(f"{scenario}: {fitting} of {len(caught)} caught transfers have a "
                            f"reason from {family} in their top {TOP_REASONS}")
    print(f"\nscenarios (legit approved: {approved_legit:.1%}):\n  " + "\n  ".join(table))
    assert approved_legit > 0.9
    assert not failures, failures


# --- 6. end to end with the payment and messaging services ------------------------------------
def _http(method: str, url: str, body=None, user: str = "nobody"):
    """(status, JSON body) of a call by ``user``'s app."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **as_user(user)})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (urllib.error.URLError, ConnectionError):
        return None, None


def test_payment_service_applies_block_hold_and_warn(kafka, model, watcher, processes):
    from pipelines.kafka.broker import free_port

    pay_port, msg_port = free_port(), free_port()
    env = {"VIGIE_PAYMENT_PORT": str(pay_port), "VIGIE_MESSAGING_PORT": str(msg_port),
           "VIGIE_AVAILABILITY_DELAY_S": "6", "VIGIE_WARN_COOLING_OFF_S": "1"}
    processes.start("worker", "worker")
    processes.start("payment", "serve", "payment", env=env)
    processes.start("messaging", "serve", "messaging", env=env)
    pay, msg = f"http://127.0.0.1:{pay_port}", f"http://127.0.0.1:{msg_port}"
    wait_for(lambda: _http("GET", f"{pay}/v1/transfers/none")[0] == 404, 60, what="payment up")
    wait_for(lambda: _http("GET", f"{msg}/v1/notifications/nobody")[0] == 200, 60,
             what="messaging up")
    wait_ready(watcher, model)

    n = time.time_ns() % 10**9
    # small amounts between fresh accounts: the model approves them, so the rules decide (a
    # rule only adds friction: a model "block" would win over a "hold" rule)
    hold_amount, warn_amount = 1_300 + n % 89, 1_700 + n % 83
    blocked_sender = f"e2e-blocked-{n}"
    publish([
        _action("account", pseudonymize("account", blocked_sender), {"list": "block"},
                "add_to_list"),
        _action("rule", f"e2e_hold_{n}", {"op": "upsert", "name": f"e2e_hold_{n}",
                                          "expression": f"transfer_amount_cents = {hold_amount}",
                                          "action": "hold", "priority": "5"}),
        _action("rule", f"e2e_warn_{n}", {"op": "upsert", "name": f"e2e_warn_{n}",
                                          "expression": f"transfer_amount_cents = {warn_amount}",
                                          "action": "warn", "priority": "5"}),
    ])
    time.sleep(LIVE_BUDGET_S)  # test 4 shows changes apply within this
    warned_sender = f"e2e-warned-{n}"
    cases = {"block": (blocked_sender, 2500), "hold": (f"e2e-held-{n}", hold_amount),
             "warn": (warned_sender, warn_amount)}
    ids = {}
    for action, (sender, amount) in cases.items():
        status, body = _http("POST", f"{pay}/v1/transfers",
                             {"sender": sender, "recipient": f"e2e-payee-{n}",
                              "amount_cents": amount}, user=sender)
        assert status == 201, body
        ids[action] = body["transfer_id"]
        due_ms = body["payout_due_ts"]

    decided = watcher.wait_all(ids.values(), 30, "e2e")
    assert {a: decided[t][0].action for a, t in ids.items()} == {a: a for a in ids}, \
        {a: (decided[t][0].action, decided[t][0].rule_hits, decided[t][0].score) for a, t in ids.items()}

    def status_of(action):
        """None while the service answers 503 (a partition moving between its instances)."""
        status, body = _http("GET", f"{pay}/v1/transfers/{ids[action]}", user=cases[action][0])
        return body["status"] if status == 200 else None

    wait_for(lambda: status_of("block") == "returned", 30, what="the blocked transfer returned")
    history = [h["status"] for h in _http("GET", f"{pay}/v1/transfers/{ids['block']}",
                                          user=blocked_sender)[1]["history"]]
    assert history == ["pending", "blocked", "returned"], history
    wait_for(lambda: status_of("hold") == "held", 30, what="the held transfer")
    wait_for(lambda: status_of("warn") in ("warned", "paid_out"), 30, what="the warned transfer")

    def warning():
        found = _http("GET", f"{msg}/v1/notifications/{warned_sender}",
                      user=warned_sender)[1]["notifications"]
        return [x for x in found if x["transfer_id"] == ids["warn"]]

    notes = wait_for(warning, 30, what="the warning in the sender's notifications")
    assert notes[0]["kind"] == "transfer_warning" and notes[0]["code"]
    # the held one is still held after its payout time: nothing pays out without a decision
    time.sleep(max(0.0, due_ms / 1000 + 1.0 - time.time()))
    assert status_of("hold") == "held"
    assert status_of("warn") == "paid_out"
    assert status_of("block") == "returned"
    publish([_action("rule", f"e2e_hold_{n}", {"op": "delete", "name": f"e2e_hold_{n}"}),
             _action("rule", f"e2e_warn_{n}", {"op": "delete", "name": f"e2e_warn_{n}"})])
