"""Training, thresholds, registry and scorer, on a synthetic table with a planted signal."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from models import registry, synthetic, thresholds
from models.labels import label_transfers
from models.metrics import average_precision, roc_auc
from models.scorer import Scorer
from models.train import time_split, train

FEATURES = synthetic.feature_names()


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic.table(n=20_000, seed=1)


@pytest.fixture(scope="module")
def trained(table, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return root, train(table, FEATURES, seed=7, root=root)


@pytest.fixture(scope="module")
def scorer(trained) -> Scorer:
    root, version = trained
    return Scorer.load(version, root=root)


# --- training -------------------------------------------------------------------------------
def test_planted_signal_is_learnt_well_above_base_rate(trained):
    root, version = trained
    test = registry.load_meta(version, root)["metrics"]["test"]
    assert test["pr_auc"] > 10 * test["base_rate"]
    assert test["pr_auc"] > 0.35 and test["roc_auc"] > 0.85


def test_training_is_deterministic(table, trained, tmp_path):
    root, version = trained
    again = train(table, FEATURES, seed=7, root=tmp_path)
    assert (tmp_path / again / "model.txt").read_text() == (root / version / "model.txt").read_text()
    assert registry.load_meta(again, tmp_path)["thresholds"] == registry.load_meta(version, root)["thresholds"]
    assert again.rsplit("-", 1)[1] == version.rsplit("-", 1)[1]  # the content hash
    other_seed = train(table, FEATURES, seed=8, root=tmp_path)
    assert (tmp_path / other_seed / "model.txt").read_text() != (root / version / "model.txt").read_text()


def test_split_is_by_time_without_overlap(table):
    train_part, valid, test = time_split(table.sample(frac=1, random_state=0))
    assert train_part["ts"].max() < valid["ts"].min() <= valid["ts"].max() < test["ts"].min()
    assert len(train_part) + len(valid) + len(test) == len(table)
    assert 0.68 < len(train_part) / len(table) < 0.72


def test_thresholds_respect_the_budget_on_validation(table, trained, scorer):
    root, version = trained
    meta = registry.load_meta(version, root)
    t, budget = meta["thresholds"], meta["budget"]
    _, valid, _ = time_split(table.sort_values("ts"))
    scores = scorer.score(valid[FEATURES].to_numpy())
    y = valid["label"].to_numpy().astype(bool)
    assert 0 < np.mean(scores >= t["hold"]) <= budget["hold_rate"]
    assert np.mean(scores >= t["hold"]) < np.mean(scores >= t["warn"])
    assert np.mean(scores[~y] >= t["warn"]) <= budget["warn_rate"]  # honest senders warned
    assert t["warn"] <= t["hold"] <= t["block"]
    # block, recomputed by brute force with the default budget (not the model's own record)
    assert {k: budget[k] for k in ("block_precision", "block_min_frauds")} == {
        "block_precision": 0.90, "block_min_frauds": 5}
    assert t["block"] == pytest.approx(_block_by_brute_force(y, scores, t["hold"]))
    assert meta["metrics"]["validation"]["hold"]["rate"] == pytest.approx(np.mean(scores >= t["hold"]))


def _block_by_brute_force(y, scores, hold) -> float:
    """The lowest score whose band holds at least 5 frauds at 90 % precision or more, never
    below an enabled hold; DISABLED when no band does."""
    precise = [c for c in np.unique(scores) if y[scores >= c].sum() >= 5 and y[scores >= c].mean() >= 0.90]
    if not precise:
        return thresholds.DISABLED
    return min(precise) if hold == thresholds.DISABLED else max(min(precise), hold)


def test_block_threshold_on_a_signal_strong_enough_to_block(scorer):
    """The trained model's validation slice has no band precise enough to block (its block is
    DISABLED); a stronger planted signal has one, and derive finds exactly it."""
    strong = synthetic.table(n=5_000, seed=3, planted_shift=6.0)
    scores = scorer.score(strong[FEATURES].to_numpy())
    y = strong["label"].to_numpy().astype(bool)
    t = thresholds.derive(y, scores)
    assert t["block"] <= 1.0 and y[scores >= t["block"]].mean() >= 0.90
    assert t["block"] == pytest.approx(_block_by_brute_force(y, scores, t["hold"]))


def test_rate_threshold_is_tight_and_keeps_ties_together():
    scores = np.arange(1000) / 1000
    t = thresholds.rate_threshold(scores, 0.005)
    assert np.sum(scores >= t) == 5 and scores[-6] < t
    tied = np.r_[np.zeros(990), np.full(10, 0.9)]  # ten tied at the top: all or none
    assert np.sum(tied >= thresholds.rate_threshold(tied, 0.005)) == 0
    assert np.sum(tied >= thresholds.rate_threshold(tied, 0.01)) == 10


def test_block_needs_precision_and_enough_frauds():
    y = np.r_[np.ones(20), np.zeros(980)].astype(bool)
    scores = np.r_[np.linspace(0.9, 1.0, 20), np.linspace(0, 0.5, 980)]
    # the widest band at >= 90 %: the 20 frauds and the 2 highest legitimate ones (20/22)
    assert thresholds.precision_threshold(y, scores, 0.9, 5) == np.linspace(0, 0.5, 980)[-2]
    assert thresholds.precision_threshold(y, scores, 1.0, 5) == pytest.approx(0.9)
    assert thresholds.precision_threshold(y, scores, 0.9, 25) == thresholds.DISABLED
    noisy = np.r_[np.zeros(50)].astype(bool)
    assert thresholds.precision_threshold(noisy, np.linspace(0, 1, 50), 0.9, 1) == thresholds.DISABLED


def test_block_stands_when_the_top_tie_overflows_the_review_budget():
    """Twenty frauds tied at the top are more than a 0.5 % review budget can hold: hold is
    disabled, and they are blocked on their precision rather than let through."""
    y = np.r_[np.ones(20), np.zeros(980)].astype(bool)
    scores = np.r_[np.full(20, 0.99), np.linspace(0, 0.5, 980)]
    t = thresholds.derive(y, scores, thresholds.Budget(hold_rate=0.005, block_precision=1.0))
    assert t["hold"] == thresholds.DISABLED
    assert t["block"] == pytest.approx(0.99) and t["warn"] <= t["block"]
    assert np.sum(scores >= t["block"]) == 20
    # with room to review them, the tie is held, and block is never below hold
    roomy = thresholds.derive(y, scores, thresholds.Budget(hold_rate=0.05, block_precision=1.0))
    assert roomy["hold"] <= 0.99 and roomy["block"] >= roomy["hold"]


def test_metrics_match_brute_force():
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.2
    s = np.round(rng.random(300) + y * 0.3, 2)  # ties on purpose
    pos, neg = s[y], s[~y]
    brute_auc = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(y, s) == pytest.approx(brute_auc)
    ap = sum(np.mean(y[s >= t]) * (np.sum(y & (s == t))) for t in np.unique(s)) / y.sum()
    assert average_precision(y, s) == pytest.approx(ap)


def test_training_refuses_a_slice_without_frauds(table, tmp_path):
    no_fraud = table.assign(label=0)
    with pytest.raises(ValueError, match="needs both frauds"):
        train(no_fraud, FEATURES, root=tmp_path)
    with pytest.raises(ValueError, match="must be 0/1"):
        train(table.assign(label=table["label"].where(table.index % 50 > 0)), FEATURES, root=tmp_path)
    with pytest.raises(ValueError, match="lacks columns"):
        train(table, [*FEATURES, "nope"], root=tmp_path)


# --- labels ------------------------------------------------------------------------------------
def _label(kind, account, known_at, transfer_id=None, is_fraud=True, ts=None, start=None, end=None):
    return {"id": f"l{known_at}{kind}", "ts": ts or known_at - 10, "kind": kind, "account": account,
            "transfer_id": transfer_id, "is_fraud": is_fraud, "known_at": known_at,
            "scenario": None, "compromise_from_ts": start, "compromise_to_ts": end}


def test_labels_are_point_in_time():
    transfers = pd.DataFrame({"transfer_id": ["t1", "t2", "t3", "t4", "t5", "t6"],
                              "sender": ["a_x", "a_x", "a_ato", "a_ato", "a_ato", "a_y"],
                              "ts": [100, 110, 200, 300, 250, 120]},
                             index=[10, 11, 12, 13, 14, 15])
    labels = pd.DataFrame([
        _label("chargeback", "a_x", 1_000, "t1"),
        _label("user_scam_report", "a_x", 1_000, "t2"),
        _label("analyst_verdict", "a_x", 1_500, "t2", is_fraud=False),  # clears the report
        _label("ato_confirmed", "a_ato", 2_000, start=190, end=260),  # t3 and t5, not t4
        _label("analyst_verdict", "a_ato", 2_100, "t5", is_fraud=False),  # the owner's own
        _label("chargeback", "a_y", 9_000, "t6"),  # known late
    ])
    full = label_transfers(transfers, labels)
    assert full.to_dict() == {10: 1, 11: 0, 12: 1, 13: 0, 14: 0, 15: 1}
    at_5000 = label_transfers(transfers, labels, cutoff_ms=5_000)
    assert at_5000.tolist() == [1, 0, 1, 0, 0, 0]
    matured = label_transfers(transfers, labels, cutoff_ms=5_000, maturity_ms=3_200)  # <= 1800
    assert matured.tolist() == [1, 0, 0, 0, 0, 0]
    before_verdict = label_transfers(transfers, labels, cutoff_ms=1_200)
    assert before_verdict.tolist() == [1, 1, 0, 0, 0, 0]


# --- registry -----------------------------------------------------------------------------------
def test_registry_round_trip(trained, tmp_path):
    root, version = trained
    booster, meta = registry.load(version, root)
    text = booster.model_to_string()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    saved = registry.save(text, {"feature_names": FEATURES, "thresholds": meta["thresholds"],
                                 "seed": 7}, root=tmp_path, now=when)
    assert registry.VERSION.match(saved) and saved.startswith("m-20260102-030405-")
    assert registry.save(text, {"feature_names": FEATURES, "thresholds": meta["thresholds"],
                                "seed": 7}, root=tmp_path, now=when) == saved
    loaded, loaded_meta = registry.load(saved, tmp_path)
    assert loaded.model_to_string() == text
    assert loaded_meta["version"] == saved and loaded_meta["feature_names"] == FEATURES
    later = registry.save(text, {"feature_names": FEATURES, "thresholds": meta["thresholds"],
                                 "seed": 8}, root=tmp_path, now=when.replace(hour=4))
    assert registry.list_versions(tmp_path) == [saved, later] and registry.latest(tmp_path) == later
    assert not list(tmp_path.glob(".m-*"))  # no leftovers from the atomic write


def test_registry_meta_records_provenance(trained):
    root, version = trained
    meta = registry.load_meta(version, root)
    assert meta["feature_names"] == FEATURES and meta["seed"] == 7
    assert set(meta["training_window"]) == {"train", "validation", "test"}
    assert meta["training_window"]["train"]["to_ts"] < meta["training_window"]["validation"]["from_ts"]
    assert len(meta["data_hash"]) == 16 and "created_at" in meta and "git_commit" in meta


@pytest.mark.parametrize("bad", ["../etc", "m-1", "latest", "m-20260101-000000-zzzzzzzz"])
def test_registry_refuses_names_that_are_not_versions(bad, tmp_path):
    with pytest.raises(ValueError):
        registry.load(bad, tmp_path)


def test_scorer_without_models_says_so(tmp_path):
    with pytest.raises(FileNotFoundError):
        Scorer.load(root=tmp_path)


# --- scorer ---------------------------------------------------------------------------------------
def test_scorer_loads_latest_and_batches_equal_single_rows(trained, table, scorer):
    root, version = trained
    assert Scorer.load(root=root).version == version == scorer.version
    X = table[FEATURES].to_numpy()[:300]
    batch = scorer.score(X)
    single = np.array([scorer.score(X[i])[0] for i in range(len(X))])
    np.testing.assert_array_equal(batch, single)
    assert batch.shape == (300,) and ((0 <= batch) & (batch <= 1)).all()


def test_feature_dicts_follow_the_model_order(scorer, table):
    record = table[FEATURES].iloc[7].to_dict()
    shuffled = dict(reversed(list(record.items())))
    shuffled["not_a_model_feature"] = 42.0
    del shuffled[FEATURES[-1]]
    shuffled[FEATURES[-2]] = None
    row = scorer.row(shuffled)
    assert list(row[:-2]) == pytest.approx([record[f] for f in FEATURES[:-2]], nan_ok=True)
    assert np.isnan(row[-2:]).all()
    assert scorer.matrix([shuffled, record]).shape == (2, len(FEATURES))
    with pytest.raises(ValueError, match="expected 20 features"):
        scorer.score(np.zeros((1, 3)))


def test_reasons_add_up_and_name_the_planted_feature(scorer, table):
    X = table[FEATURES].to_numpy()
    rows = np.flatnonzero((table["label"] == 1).to_numpy() & (X[:, 0] > 3))[:20]
    contributions = scorer.contributions(X, rows)
    np.testing.assert_allclose(contributions.sum(axis=1), scorer.margin(X[rows]), rtol=1e-9, atol=1e-9)
    reasons = scorer.reasons(X, rows, top=5)
    assert len(reasons) == len(rows)
    for i, row_reasons in zip(rows, reasons):
        assert 1 <= len(row_reasons) <= 5
        assert row_reasons[0].feature == synthetic.PLANTED
        assert row_reasons[0].value == X[i, 0]
        contribs = [r.contribution for r in row_reasons]
        assert contribs == sorted(contribs, reverse=True) and min(contribs) > 0
    swapped = scorer.reasons(X, [rows[1], rows[0]])[0]  # the order of rows_idx is kept
    assert [(r.feature, r.contribution) for r in swapped] == [(r.feature, r.contribution) for r in reasons[1]]
    assert scorer.reasons(X, []) == []
    every = scorer.reasons(X, rows, top=len(FEATURES))  # never a feature that lowered the score
    assert [len(r) for r in every] == [int((c[:-1] > 0).sum()) for c in contributions]


def test_actions_follow_thresholds(scorer):
    t = scorer.thresholds
    probes = [0.0, t["warn"], t["hold"] - 1e-9, t["hold"], t["block"]]
    assert scorer.actions(probes) == [scorer.action_for(p) for p in probes]
    assert [scorer.action_for(p) for p in probes[:3]] == ["approve", "warn", "warn"]
    assert scorer.action_for(t["block"]) == "block"  # enabled: see the budget test

    def acting(warn, hold, block):
        return Scorer(scorer.booster, {**scorer.meta, "thresholds": {"warn": warn, "hold": hold, "block": block}})

    scores = [0.1, 0.2, 0.5, 0.89, 0.9, 1.0]
    assert acting(0.2, 0.5, 0.9).actions(scores) == ["approve", "warn", "hold", "hold", "block", "block"]
    # block meets hold: the whole hold band is precise enough to block
    assert acting(0.2, 0.5, 0.5).actions(scores) == ["approve", "warn", "block", "block", "block", "block"]
    # block disabled: even a score of 1 is only held
    assert acting(0.2, 0.5, thresholds.DISABLED).actions(scores) == [
        "approve", "warn", "hold", "hold", "hold", "hold"]
    # hold disabled (a tie bigger than the review budget): block still stands on its precision
    assert acting(0.2, thresholds.DISABLED, 0.9).actions(scores) == [
        "approve", "warn", "warn", "warn", "block", "block"]
