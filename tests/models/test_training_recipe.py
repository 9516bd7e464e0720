"""The training recipe: minimum rounds, stopping on the validation log loss, modest class
weights, a budgeted seeded search; sources-aware gates on a transfers + labels history."""
from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pytest
from click.testing import CliRunner

from models import registry, synthetic, train as recipe
from models.train import fit, time_split

FEATURES = synthetic.feature_names(8)


# The recipe before issue 10: early stopping on validation AP, the full neg/pos weight.
OLD_RECIPE = {"objective": "binary", "metric": "average_precision", "learning_rate": 0.1,
              "num_leaves": 31, "min_data_in_leaf": 20, "feature_fraction": 0.9,
              "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "seed": 7,
              "verbose": -1, "deterministic": True, "force_row_wise": True, "num_threads": 2}


@pytest.fixture(scope="module")
def easy():
    """One 0/1 flag carries the signal, the rest is noise: the first tree finds the flag and
    every later one fits noise, so validation AP peaks at once."""
    table = synthetic.table(n=6_000, n_features=8, seed=5, planted_shift=0.0, missing_rate=0.0)
    rng = np.random.default_rng(5)
    fraud = table["label"].to_numpy() == 1
    table[FEATURES[0]] = np.where(fraud, rng.random(len(table)) < 0.7,
                                  rng.random(len(table)) < 0.01).astype(float)
    return table


class Ticks:
    """A fake clock: every read advances one second (the search's budget, without timing)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_ap_stopping_would_stop_at_once_but_no_model_has_fewer_than_min_rounds(easy):
    # the old recipe (early stopping on validation AP, full neg/pos weight) keeps a tree or two
    table = easy.sort_values("ts")
    train, valid, _ = time_split(table)
    y0 = train["label"].to_numpy()
    old = lgb.train({**OLD_RECIPE, "scale_pos_weight": (y0.size - y0.sum()) / y0.sum()},
                    lgb.Dataset(train[FEATURES].to_numpy(), y0), num_boost_round=500,
                    valid_sets=[lgb.Dataset(valid[FEATURES].to_numpy(), valid["label"].to_numpy())],
                    callbacks=[lgb.early_stopping(50, verbose=False, min_delta=1e-4)])
    assert old.best_iteration <= 5
    text, meta, details = fit(easy, FEATURES, seed=7)
    assert meta["best_iteration"] >= recipe.MIN_ROUNDS
    assert details["booster"].num_trees() == meta["best_iteration"] >= recipe.MIN_ROUNDS
    rec = meta["recipe"]
    assert rec["stopping"] == "weighted validation binary log loss" and rec["min_rounds"] == 100
    # modest weights: sqrt of the ratio, capped, far below the full ratio (~49 here)
    ratio = (1 - meta["metrics"]["validation"]["base_rate"]) / meta["metrics"]["validation"]["base_rate"]
    assert 1 <= rec["pos_weight"] <= recipe.MAX_POS_WEIGHT < ratio
    assert meta["search"]["ended_by"] == "off" and len(meta["search"]["trials"]) == 1


def test_min_rounds_hold_when_the_validation_loss_is_best_at_once(easy):
    """Validation labels unrelated to the features: the loss is best within a few rounds, the
    model still has MIN_ROUNDS trees."""
    table = easy.sort_values("ts").reset_index(drop=True)
    _, valid, _ = time_split(table)
    rng = np.random.default_rng(0)
    table.loc[valid.index, "label"] = rng.permutation(table.loc[valid.index, "label"].to_numpy())
    _, meta, details = fit(table, FEATURES, seed=7)
    assert meta["recipe"]["best_round"] < 20
    assert meta["best_iteration"] == details["booster"].num_trees() == recipe.MIN_ROUNDS


def test_search_stays_within_its_budget_and_records_its_trials(easy):
    clock = Ticks()
    _, meta, _ = fit(easy, FEATURES, seed=7, search_budget_s=40, clock=clock)
    search = meta["search"]
    assert search["budget_s"] == 40 and search["ended_by"] == "budget"
    # the defaults always train; the first draw is cut at the deadline (it needs >= 100 rounds,
    # one tick each) and discarded
    assert [t["status"] for t in search["trials"]] == ["done", "over budget"]
    assert search["elapsed_s"] <= 40 + 3
    assert search["chosen"] == 0 and meta["best_iteration"] == search["trials"][0]["rounds"]
    assert set(recipe.SEARCH_SPACE) <= set(search["trials"][1])
    assert json.loads(json.dumps(meta["search"])) == meta["search"]  # plain JSON


def test_search_is_seeded_and_chooses_by_its_criterion(easy):
    runs = [fit(easy, FEATURES, seed=7, search_budget_s=1e9, search_trials=4, clock=Ticks())
            for _ in range(2)]
    (text_a, meta_a, _), (text_b, meta_b, _) = runs
    trials = meta_a["search"]["trials"]
    assert meta_a["search"]["ended_by"] == "trials" and len(trials) == 4
    # a draw whose trees run out of splits before MIN_ROUNDS is recorded, never chosen
    assert {t["status"] for t in trials} <= {"done", "too few trees (no split left)"}
    assert all(t["rounds"] >= recipe.MIN_ROUNDS for t in trials if t["status"] == "done")
    assert len({tuple(t[k] for k in recipe.SEARCH_SPACE) for t in trials}) == 4  # distinct draws
    assert text_a == text_b and meta_a["search"]["chosen"] == meta_b["search"]["chosen"]
    done = [t for t in trials if t["status"] == "done"]
    best_ap = max(t["valid_ap"] for t in done)
    chosen = trials[meta_a["search"]["chosen"]]
    assert chosen["status"] == "done" and chosen["valid_ap"] >= best_ap - 1e-4
    assert meta_a["best_iteration"] == chosen["rounds"] >= recipe.MIN_ROUNDS
    assert all(chosen["valid_logloss"] <= t["valid_logloss"]
               for t in done if t["valid_ap"] >= best_ap - 1e-4)
    assert {k: meta_a["params"][k] for k in recipe.SEARCH_SPACE} == {
        k: chosen[k] for k in recipe.SEARCH_SPACE}
    other = fit(easy, FEATURES, seed=8, search_budget_s=1e9, search_trials=4, clock=Ticks())[1]
    assert [t["num_leaves"] for t in other["search"]["trials"]] != [t["num_leaves"] for t in trials]


# --- sources-aware gates ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def transfers_only_lake(tmp_path_factory):
    """A simulated history cut down to what an outside history holds: transfers and labels."""
    from pipelines.lake import parquet as lake_mod
    from pipelines.lake.event_log import read_topic
    from pipelines.simulator.offline import run_offline

    full = tmp_path_factory.mktemp("full") / "lake"
    run_offline(full, seed=3, users=1500, days=7)
    out = tmp_path_factory.mktemp("outside") / "lake"
    for topic in ("transfer-requests", "labels"):
        table = lake_mod.TopicTable(topic, with_kafka_columns=False)
        lake_mod.write_batch(out, topic, table, read_topic(full, topic), "copy")
    return out


def test_transfers_and_labels_history_trains_with_the_stock_command(transfers_only_lake,
                                                                   tmp_path, monkeypatch):
    from features.sources import FEATURE_FAMILY
    from pipelines.cli import main

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path / "data"))
    # the stock command; two trials within the default budget keep the test short and exact
    result = CliRunner().invoke(main, ["train", "--lake", str(transfers_only_lake),
                                       "--no-progress", "--search-trials", "2"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "data" / "models"
    version = registry.latest(root)
    meta = registry.load_meta(version, root)
    absent = {"accounts", "devices", "messages", "assistant"}
    assert {f for f, present in meta["sources"]["families"].items() if not present} == absent
    assert meta["feature_names"] and all(FEATURE_FAMILY[n] in {"transfers", "labels"}
                                         for n in meta["feature_names"])
    gx = meta["validation"]
    assert gx["success"] and gx["absent"] == sorted(absent) and gx["not_applicable"] > 0
    assert gx["failures"] == []
    assert meta["best_iteration"] >= recipe.MIN_ROUNDS
    assert meta["search"]["budget_s"] == recipe.SEARCH_BUDGET_S
    assert meta["search"]["ended_by"] == "trials" and len(meta["search"]["trials"]) == 2
    card = (root / version / "MODEL_CARD.md").read_text()
    assert "FAILED" not in card
    assert "absent families: accounts, assistant, devices, messages" in card
    assert "devices ABSENT" in card


def test_topic_suites_report_an_absent_source_as_absent(transfers_only_lake):
    from models.expectations import format_failures, validate_lake

    results = validate_lake(transfers_only_lake)
    by_topic = {r["topic"]: r for r in results}
    assert all(r["success"] for r in results), format_failures(results)
    assert by_topic["messages"]["absent_topic"] and by_topic["messages"]["evaluated"] == 0
    assert not by_topic["transfer-requests"].get("absent_topic")
    assert by_topic["transfer-requests"]["evaluated"] > 0
    text = format_failures(results)
    assert "messages: absent" in text and "FAILED" not in text


def test_a_check_not_run_is_never_written_failed():
    from models.card import validation_line

    assert validation_line({"skipped": True}) == "not run (skipped)"
    assert validation_line(None) == "not run (skipped)"
    assert "FAILED" not in validation_line({"success": True, "evaluated": 9, "failures": [],
                                            "absent": ["devices"], "not_applicable": 40})
    assert validation_line({"success": False, "evaluated": 9, "failures": [{}]}).startswith("FAILED")


def test_training_suite_skips_absent_families_and_names_features_it_lacks(transfers_only_lake,
                                                                         tmp_path):
    from models.datasets import training_set
    from models.expectations import SUITES_DIR, TRAINING_SUITE, load_suite, validate_training_table
    from pipelines.lake.sources import lake_families

    table, stats = training_set(transfers_only_lake)
    families = lake_families(transfers_only_lake)
    # told nothing about the families, their checks run on columns the history cannot fill
    blind = validate_training_table(table, stats["cutoff_ms"])
    assert not blind.get("absent")
    # a suite older than a feature: the feature is named, unchecked, not failed
    suite = load_suite(TRAINING_SUITE, SUITES_DIR)
    suite["expectations"] = [e for e in suite["expectations"]
                             if e["kwargs"].get("column") != "transfer_amount_cents"]
    (tmp_path / f"{TRAINING_SUITE}.json").write_text(json.dumps(suite))
    result = validate_training_table(table, stats["cutoff_ms"], tmp_path, families)
    assert result["success"] and result["unprofiled"] == ["transfer_amount_cents"]
    assert "devices" in result["absent"]
    assert result["evaluated"] < blind["evaluated"]
