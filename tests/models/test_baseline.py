"""The logistic-regression baseline: fitted on the training slice, stored as JSON in the model's
metadata, the same scores after a reload; the metrics against scikit-learn; the warnings."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from models import registry, synthetic
from models.baseline import FEATURES as BASE_FEATURES, Baseline
from models.metrics import average_precision, roc_auc
from models.train import fit, time_split, train

NOISE = [f"noise_{i:02d}" for i in range(6)]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Noise for the LightGBM features; the signal only in a baseline window feature (known
    frauds against the recipient) and the amount; two baseline features absent (NaN)."""
    frame = synthetic.table(n=12_000, n_features=9, seed=2, planted_shift=0.0)
    rng = np.random.default_rng(2)
    fraud = frame["label"].to_numpy() == 1
    frame["recipient_in_fraud_30d"] = rng.poisson(np.where(fraud, 3.0, 0.05)).astype(float)
    frame["transfer_amount_cents"] = frame["amount_cents"].astype(float)
    frame["sender_out_count_24h"] = rng.poisson(2, len(frame)).astype(float)
    frame.loc[rng.random(len(frame)) < 0.1, "sender_out_count_24h"] = np.nan
    frame["recipient_in_fraud_share_7d"] = rng.random(len(frame))
    return frame


def test_baseline_scores_match_scikit_learn_and_survive_json(table):
    y = table["label"].to_numpy()
    model = Baseline().fit(table, y)
    X = np.column_stack([table[c].to_numpy(np.float64) if c in table else np.full(len(table), np.nan)
                         for c in BASE_FEATURES])
    np.testing.assert_allclose(model.score(table), model.pipeline_.predict_proba(X)[:, 1],
                               rtol=1e-10, atol=1e-12)
    assert model.predict_proba(table).shape == (len(table), 2)
    stored = json.loads(json.dumps(model.to_dict()))  # plain JSON, no pickle
    assert stored["features"] == list(BASE_FEATURES) and len(stored["coef"]) == len(BASE_FEATURES)
    reloaded = Baseline.from_dict(stored)
    np.testing.assert_array_equal(reloaded.score(table), model.score(table))
    # a table without some of the features: NaN, imputed with the training medians
    partial = table.drop(columns=["sender_out_count_24h"])
    assert np.isfinite(reloaded.score(partial)).all()
    assert roc_auc(y, model.score(table)) > 0.9  # the signal it can see
    with pytest.raises(ValueError):
        Baseline().score(table)


def test_training_stores_the_baseline_and_reports_both(table, tmp_path):
    version = train(table, NOISE, seed=7, root=tmp_path)
    meta = registry.load_meta(version, tmp_path)
    base = Baseline.from_dict(meta["baseline"])
    _, _, test = time_split(table.sort_values("ts", kind="stable"))
    y = test["label"].to_numpy()
    reloaded = base.score(test)
    assert meta["metrics"]["test"]["baseline"]["average_precision"] == pytest.approx(
        average_precision(y, reloaded))
    for part in ("validation", "test"):
        assert set(meta["metrics"][part]["baseline"]) == set(meta["metrics"][part]["headline"])
    # the model sees only noise here: the baseline wins, as the numbers say
    assert (meta["metrics"]["test"]["baseline"]["average_precision"]
            > meta["metrics"]["test"]["headline"]["average_precision"])


def test_card_and_compare_warn_when_the_model_loses_to_the_baseline(table, tmp_path, monkeypatch):
    from models import card, compare as compare_mod
    from models.evaluate import full_report

    text, meta, details = fit(table.assign(sender=table["transfer_id"].str[-2:]), NOISE, seed=7)
    version = registry.save(text, meta, tmp_path)
    meta = registry.load_meta(version, tmp_path)
    test = details["parts"][2]
    report = full_report(test, details["scores"]["test"], details["baseline_scores"]["test"],
                         meta["thresholds"])
    assert report["warnings"] and "average precision" in report["warnings"][0]
    assert report["baseline"]["topk_daily_precision"] is not None
    path = card.write(tmp_path / version, meta, report, test["label"], details["scores"]["test"])
    text = path.read_text()
    assert "WARNING: the model loses to the logistic-regression baseline on average precision" in text
    # vigie compare: both sides set against their baselines, the warning printed
    labelled = table.assign(scenario=None)
    monkeypatch.setattr(compare_mod, "labelled_lake", lambda lake: (labelled, {}))
    result = compare_mod.compare_models("lake", version, version, tmp_path)
    assert result["champion"]["baseline_pr_auc"] > result["champion"]["pr_auc"]
    assert any(w.startswith("WARNING (challenger)") for w in result["warnings"])
    assert "WARNING (champion)" in compare_mod.format_comparison(result)


def test_a_model_that_wins_has_no_warning():
    from models.evaluate import baseline_warnings

    win = {"average_precision": 0.6, "topk_daily_precision": 0.5, "k": 100}
    assert baseline_warnings(win, {"average_precision": 0.5, "topk_daily_precision": 0.5}) == []
    lose_topk = baseline_warnings(win, {"average_precision": 0.5, "topk_daily_precision": 0.7})
    assert len(lose_topk) == 1 and "top-100 daily precision" in lose_topk[0]


def test_ranking_metrics_equal_scikit_learn():
    rng = np.random.default_rng(3)
    for n, rate in ((300, 0.2), (5_000, 0.01)):
        y = rng.random(n) < rate
        s = np.round(rng.random(n) + y * 0.3, 2)  # ties on purpose
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
