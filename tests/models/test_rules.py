"""Rules (one DuckDB engine live and in backtests), lists with expiry, and decision precedence."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import synthetic
from models.backtest import backtest
from models.lists import ListError, ListStore
from models.policy import decide
from models.rules import Rule, RuleError, RuleSet
from pipelines.contracts.privacy import pseudonymize

COLUMNS = synthetic.feature_names()


def upsert(name, expression, action="hold", ts=1, **extra):
    return {"op": "upsert", "name": name, "expression": expression, "action": action, "ts": ts,
            "author": "alice", **extra}


@pytest.fixture
def rules() -> RuleSet:
    rs = RuleSet(COLUMNS)
    rs.apply_change(upsert("burst_new_payee", "sender_count_1h >= 2 AND recipient_account_age_days < 0"))
    rs.apply_change(upsert("burst", "sender_count_1h >= 2.5", "warn", priority=5))
    rs.apply_change(upsert("young_payee", "recipient_account_age_days < -1.5", "warn"))
    rs.apply_change(upsert("odd_amount", "abs(amount_vs_sender_median) > 2 OR noise_00 IS NULL", "block"))
    rs.apply_change(upsert("nan_guarded", "CASE WHEN noise_01 IS NULL THEN false ELSE noise_01 BETWEEN 1 AND 2 END",
                           "hold", priority=-1))
    return rs


# --- versioned changes ---------------------------------------------------------------------------
def test_upsert_disable_delete_bump_versions():
    rs = RuleSet(COLUMNS)
    first = rs.apply_change(upsert("burst", "sender_count_1h >= 5", ts=10))
    assert (first.version, first.created_ts, first.enabled) == (1, 10, True)
    second = rs.apply_change({"op": "upsert", "name": "burst", "expression": "sender_count_1h >= 6",
                              "ts": "20", "author": "bob", "priority": "3"})  # console params are strings
    assert (second.version, second.expression, second.action, second.priority, second.author,
            second.created_ts, second.updated_ts) == (2, "sender_count_1h >= 6", "hold", 3, "bob", 10, 20)
    assert rs.apply_change({"op": "disable", "name": "burst", "ts": 30}).version == 3
    assert not rs.get("burst").enabled
    assert rs.evaluate(pd.DataFrame({"sender_count_1h": [9.0]})) == [[]]
    assert rs.apply_change({"op": "enable", "name": "burst", "ts": 40}).version == 4
    assert rs.evaluate(pd.DataFrame({"sender_count_1h": [9.0]})) == [["burst"]]
    rs.apply_change({"op": "delete", "name": "burst", "ts": 50})
    assert rs.get("burst") is None and rs.rules == []
    again = rs.apply_change(upsert("burst", "sender_count_1h >= 7", "block", ts=60))
    assert (again.version, again.created_ts) == (6, 10)  # name@version never names two expressions


def test_changes_are_idempotent_under_replay():
    rs = RuleSet(COLUMNS)
    changes = [upsert("burst", "sender_count_1h >= 5", ts=10),
               {"op": "disable", "name": "burst", "ts": 20},
               upsert("burst", "sender_count_1h >= 6", ts=30)]
    for change in changes:
        rs.apply_change(change)
    state = rs.to_json()
    for change in changes:  # at-least-once: the whole log again
        rs.apply_change(change)
    assert rs.to_json() == state
    same = upsert("burst", "sender_count_1h >= 6", ts=40)  # a newer change that changes nothing
    assert rs.apply_change(same).version == 3 and rs.to_json() == state
    assert RuleSet.from_json(COLUMNS, state).to_json() == state


def test_a_stored_rule_that_no_longer_validates_is_set_aside(rules):
    state = rules.to_json()
    renamed = RuleSet.from_json([c for c in COLUMNS if c != "noise_00"], state)  # a feature went away
    assert set(renamed.broken) == {"odd_amount"} and "noise_00" in renamed.broken["odd_amount"]
    assert "odd_amount" not in [r.name for r in renamed.rules] and len(renamed.rules) == 4
    assert renamed.to_json() == state  # kept, not lost
    renamed.apply_change({"op": "disable", "name": "odd_amount", "ts": 50})
    renamed.apply_change({"op": "enable", "name": "odd_amount", "ts": 55})
    assert "odd_amount" in renamed.broken  # enabling does not repair it
    with pytest.raises(RuleError, match="unknown feature"):  # nor an upsert keeping the expression
        renamed.apply_change({"op": "upsert", "name": "odd_amount", "priority": 2, "ts": 56})
    renamed.apply_change(upsert("odd_amount", "abs(amount_vs_sender_median) > 2", "block", ts=60))
    assert not renamed.broken and len(renamed.rules) == 5


@pytest.mark.parametrize("change, message", [
    ({"op": "upsert", "name": "Bad Name", "expression": "sender_count_1h > 1", "action": "hold", "ts": 1}, "rule name"),
    ({"op": "upsert", "name": "r", "expression": "sender_count_1h > 1", "action": "approve", "ts": 1}, "action"),
    ({"op": "upsert", "name": "r", "expression": "sender_count_1h > 1", "action": "hold"}, "ts"),
    ({"op": "upsert", "name": "r", "action": "hold", "ts": 1}, "needs an expression"),
    ({"op": "rename", "name": "r", "ts": 1}, "unknown rule change"),
    ({"op": "disable", "name": "ghost", "ts": 1}, "no rule named"),
    ({"op": "upsert", "name": "r", "expression": "sender_count_1h > 1", "action": "hold", "ts": 1,
      "enabled": "maybe"}, "boolean"),
])
def test_invalid_changes_are_refused_and_change_nothing(rules, change, message):
    before = rules.to_json()
    with pytest.raises(RuleError, match=message):
        rules.apply_change(change)
    assert rules.to_json() == before


@pytest.mark.parametrize("expression, message", [
    ("sender_count_1h >= 5; DROP TABLE batch", "';'"),
    ("sender_count_1h >= 5 -- AND false", "'--'"),
    ("sender_count_1h >= 5 /* */", "'/\\*'"),
    ("sender_count_1h IN (SELECT 1)", "SELECT"),
    ("EXISTS (select 1 from batch)", "select"),
    ("sender_count_1h > 1) FROM batch UNION ALL SELECT (true", "FROM"),
    ("read_csv('/etc/passwd') IS NULL", "read_csv"),
    ("getenv('HOME') = 'x'", "getenv"),
    ("current_setting('threads') = 1", "current_setting"),
    ("sender_count_1h > 1), (true", "single expression"),
    ("sender_count_1h > ?", "parameter"),
    ("sum(sender_count_1h) > 1", "sum"),
    ("abs(sender_count_1h) OVER () > 1", "window"),
    ("random() < 0.5", "random"),
    ("sender_count_1h > 'a'", "string"),
    ("CAST(sender_count_1h AS VARCHAR) = 1", "VARCHAR"),
    ("[1, 2][1] = 1", "ARRAY_EXTRACT"),
    ("COLUMNS(*) > 1", "star"),
    ("sender_count > 1", "did you mean sender_count_1h"),
    ("batch.sender_count_1h > 1", "unknown feature"),
    ("sender_count_1h + 1", "condition"),
    ("sender_count_1h >", "not a valid expression"),
    ("", "needs an expression"),
])
def test_bad_expressions_are_refused(rules, expression, message):
    before = rules.to_json()
    with pytest.raises(RuleError, match=message):
        rules.apply_change(upsert("candidate", expression, ts=99))
    assert rules.to_json() == before


def test_a_value_that_breaks_a_rule_does_not_break_the_batch():
    rs = RuleSet(COLUMNS, [Rule("div", "sender_count_1h // recipient_account_age_days > 1", "warn"),
                           Rule("plain", "sender_count_1h > 1", "warn")])
    batch = pd.DataFrame({"sender_count_1h": [4.0, 4.0], "recipient_account_age_days": [0.0, 1.0]})
    assert rs.evaluate(batch) == [["plain"], ["div", "plain"]]


# --- one engine, live and backtest ------------------------------------------------------------
def test_live_micro_batches_equal_the_backtest(rules):
    table = synthetic.table(n=3_000, seed=5)
    whole = rules.evaluate(table)
    rng = np.random.default_rng(0)
    live, start = [], 0
    while start < len(table):  # the stream: feature dicts, missing features absent, odd batch sizes
        size = int(rng.integers(1, 60))
        dicts = [{k: v for k, v in row.items() if not pd.isna(v)}
                 for row in table.iloc[start:start + size][COLUMNS].to_dict("records")]
        live += rules.evaluate(pd.DataFrame.from_records(dicts))
        start += size
    assert live == whole
    assert sum(map(len, whole)) > 100  # the rules do hit
    report = backtest(rules, table, "label")
    for rule in rules.rules:
        assert report["rules"][rule.name]["hits"] == sum(rule.name in hits for hits in live)


def test_missing_features_make_rules_unknown_not_true(rules):
    batch = pd.DataFrame({"sender_count_1h": [np.nan, 3.0], "recipient_account_age_days": [-5.0, np.nan],
                          "noise_00": [0.0, 0.0], "amount_vs_sender_median": [0.0, 0.0]})
    assert rules.evaluate(batch) == [["young_payee"], ["burst"]]
    assert rules.evaluate(pd.DataFrame({"unrelated": [1.0]})) == [["odd_amount"]]  # noise_00 IS NULL
    assert rules.evaluate(pd.DataFrame(columns=COLUMNS)) == []


def test_backtest_counts_on_a_known_table():
    day = 86_400_000
    table = pd.DataFrame({"ts": [0, 1, day, day + 1, 2 * day],
                          "amount_cents": [100, 200, 300, 400, 500],
                          "sender_count_1h": [9.0, 9.0, 9.0, 0.0, 9.0],
                          "recipient_account_age_days": [0.0, 5.0, 0.0, 0.0, np.nan]})
    labels = [1, 0, 1, 1, 0]
    rs = RuleSet(["sender_count_1h", "recipient_account_age_days"])
    rs.apply_change(upsert("burst", "sender_count_1h > 5", ts=1))
    rs.apply_change(upsert("new_payee", "recipient_account_age_days < 1", "warn", ts=1))
    rs.apply_change({"op": "disable", "name": "new_payee", "ts": 2})  # a draft is still backtested
    report = backtest(rs, table, labels)
    burst, payee = report["rules"]["burst"], report["rules"]["new_payee"]
    assert burst["hits_per_day"] == {"1970-01-01": 2, "1970-01-02": 1, "1970-01-03": 1}
    assert (burst["hits"], burst["frauds_caught"], burst["precision"], burst["recall"]) == (4, 2, 0.5, 2 / 3)
    assert (burst["amount_cents"], burst["fraud_amount_cents"]) == (1100, 400)
    assert burst["overlap"] == {"new_payee": 2} and payee["overlap"] == {"burst": 2}
    assert (burst["unique_hits"], burst["unique_frauds"]) == (2, 0)
    assert (payee["unique_hits"], payee["unique_frauds"], payee["enabled"]) == (1, 1, False)
    assert report["all_rules"]["hits"] == 5 and report["all_rules"]["recall"] == 1.0
    draft = backtest(Rule("all_new", "recipient_account_age_days < 100", "warn"), table, labels, others=rs)
    assert set(draft["rules"]) == {"burst", "all_new"}  # beside the enabled rules only
    assert draft["rules"]["all_new"]["unique_hits"] == 1
    with pytest.raises(RuleError):
        backtest(Rule("bad", "sender_count_1h; DROP", "warn"), table, labels)


# --- lists ------------------------------------------------------------------------------------------
ALICE, MULE = pseudonymize("account", "alice"), pseudonymize("account", "mule")
PHONE, CARD = pseudonymize("device", "phone-1"), pseudonymize("card", "4970-1")


def test_list_entries_hold_by_event_time():
    lists = ListStore()
    lists.apply_change({"op": "add", "list": "block", "kind": "account", "value": MULE, "ts": 1_000,
                        "expires_ts": 5_000, "author": "bob", "reason": "mule"})
    lists.apply_change({"op": "add", "list": "allow", "kind": "device", "value": PHONE, "ts": 1_000})
    assert lists.hits(ALICE, MULE, PHONE, None, 999) == []  # before it was listed
    assert lists.hits(ALICE, MULE, PHONE, None, 1_000) == [f"block:account:{MULE}", f"allow:device:{PHONE}"]
    assert lists.hits(MULE, ALICE, None, CARD, 4_999) == [f"block:account:{MULE}"]  # either party
    assert lists.hits(ALICE, MULE, None, None, 5_000) == []  # expired, by event time
    lists.apply_change({"op": "add", "list": "block", "kind": "account", "value": MULE, "ts": 6_000,
                        "expires_ts": 9_000})  # listed again, new expiry
    assert lists.hits(ALICE, MULE, None, None, 8_000) == [f"block:account:{MULE}"]
    state = lists.to_json()
    assert ListStore.from_json(state).to_json() == state
    lists.apply_change({"op": "remove", "list": "block", "kind": "account", "value": MULE, "ts": 5_500})
    assert len(lists) == 2  # a remove older than the entry is a late duplicate
    lists.apply_change({"op": "remove", "list": "block", "kind": "account", "value": MULE, "ts": 7_000})
    assert lists.hits(ALICE, MULE, None, None, 8_000) == []
    lists.apply_change({"op": "add", "list": "block", "kind": "card", "value": CARD, "ts": 1, "expires_ts": 2})
    assert lists.purge(10_000) == 1 and len(lists) == 1


@pytest.mark.parametrize("change", [
    {"op": "add", "list": "block", "kind": "account", "value": "alice", "ts": 1},  # raw identifier
    {"op": "add", "list": "block", "kind": "card", "value": ALICE, "ts": 1},  # wrong kind of hash
    {"op": "add", "list": "grey", "kind": "account", "value": ALICE, "ts": 1},
    {"op": "add", "list": "block", "kind": "account", "value": ALICE, "ts": 5, "expires_ts": 5},
    {"op": "add", "list": "block", "kind": "account", "value": ALICE},
    {"op": "wipe", "list": "block", "kind": "account", "value": ALICE, "ts": 1},
])
def test_invalid_list_changes_are_refused(change):
    lists = ListStore()
    with pytest.raises(ListError):
        lists.apply_change(change)
    assert len(lists) == 0


# --- policy ------------------------------------------------------------------------------------------
BLOCK_HIT, ALLOW_HIT = f"block:card:{CARD}", f"allow:account:{ALICE}"


@pytest.mark.parametrize("model, rule_hits, list_hits, expected", [
    ("approve", [], [], ("approve", "model:approve")),
    ("hold", [], [], ("hold", "model:hold")),
    ("approve", [("r_warn", "warn")], [], ("warn", "rule:r_warn")),
    ("approve", [("r_warn", "warn"), ("r_block", "block"), ("r_hold", "hold")], [], ("block", "rule:r_block")),
    ("approve", [("first", "hold"), ("second", "hold")], [], ("hold", "rule:first")),
    ("block", [("r_warn", "warn")], [], ("block", "model:block")),  # a rule never softens the model
    ("hold", [("r_hold", "hold")], [], ("hold", "rule:r_hold")),
    ("block", [("r_block", "block")], [ALLOW_HIT], ("approve", f"list:{ALLOW_HIT}")),
    ("approve", [], [ALLOW_HIT, BLOCK_HIT], ("block", f"list:{BLOCK_HIT}")),
    ("approve", [], [BLOCK_HIT], ("block", f"list:{BLOCK_HIT}")),
])
def test_decision_precedence(model, rule_hits, list_hits, expected):
    action, why = decide(0.5, model, rule_hits, list_hits)
    assert (action, why.split(" ")[0]) == expected


def test_rules_feed_the_policy(rules):
    hits = rules.evaluate(pd.DataFrame({"sender_count_1h": [3.0], "recipient_account_age_days": [-2.0],
                                        "amount_vs_sender_median": [0.0], "noise_00": [0.0]}))[0]
    assert hits == ["burst", "burst_new_payee", "young_payee"]  # priority, then name
    assert decide(0.01, "approve", rules.with_actions(hits), []) == ("hold", "rule:burst_new_payee")
