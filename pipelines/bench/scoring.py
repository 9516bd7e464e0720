"""Costs of the scoring side per batch size: model scores, reason codes, rules.

    .venv/bin/python -m pipelines.bench.scoring            # prints a table and the JSON figures

Trains a throw-away model on a synthetic table (40 features) in a temporary directory, so the
figures do not depend on what is in the registry. ``run()`` returns the figures as a dict.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time

import lightgbm as lgb
import numpy as np

from models import synthetic
from models.rules import RuleSet
from models.scorer import Scorer
from models.train import PARAMS, train

N_FEATURES, N_RULES = 40, 20


def _per_call_ms(fn, budget_s: float = 0.3, repeats: int = 5) -> float:
    """Median over ``repeats`` timing runs of the mean cost of one call, in ms."""
    fn()
    calls = max(1, int(budget_s / max(_once(fn), 1e-6) / repeats))
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(runs)


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _rules(names: list[str], seed: int = 0) -> RuleSet:
    rng = np.random.default_rng(seed)
    rs = RuleSet(names)
    for i in range(N_RULES):
        a, b = rng.choice(names, 2, replace=False)
        rs.apply_change({"op": "upsert", "name": f"rule_{i:02d}", "ts": 1, "action": ("warn", "hold", "block")[i % 3],
                         "expression": f"{a} >= {rng.normal():.2f} AND ({b} < {rng.normal():.2f} OR abs({a}) > 2)"})
    return rs


def _model_costs(scorer: Scorer, X: np.ndarray) -> dict:
    return {
        "trees": scorer.booster.num_trees(),
        "score_us_per_row": {size: _per_call_ms(lambda: scorer.score(X[:size])) * 1e3 / size
                             for size in (1, 10, 100, 1000)},
        "reasons_us_per_row": {size: _per_call_ms(lambda: scorer.reasons(X, np.arange(size))) * 1e3 / size
                               for size in (1, 10, 100)},
    }


def run() -> dict:
    table = synthetic.table(n=50_000, n_features=N_FEATURES, planted_shift=1.5, seed=11)
    names = synthetic.feature_names(N_FEATURES)
    X = table[names].to_numpy()
    with tempfile.TemporaryDirectory() as root:
        trained = Scorer.load(train(table, names, root=root), root=root)
    # early stopping keeps few trees on easy synthetic data; a real model has more, and the
    # cost of reasons grows with trees x depth, so measure a fixed 300-tree model as well
    big = lgb.train({**PARAMS, "seed": 7}, lgb.Dataset(X, table["label"].to_numpy(), feature_name=names),
                    num_boost_round=300)
    big = Scorer(big, {**trained.meta, "version": "bench-300-trees"})
    rules = _rules(names)
    record = table[names].iloc[0].to_dict()
    return {
        "features": N_FEATURES,
        "models": {"early_stopped": _model_costs(trained, X), "300_trees": _model_costs(big, X)},
        "rules": {"count": N_RULES, "ms_per_batch": {size: _per_call_ms(lambda: rules.evaluate(table.iloc[:size]))
                                                     for size in (1, 50, 500)}},
        "row_from_dict_us": _per_call_ms(lambda: trained.row(record)) * 1e3,
    }


def main() -> None:
    figures = run()
    for name, model in figures["models"].items():
        print(f"model {name} ({figures['features']} features, {model['trees']} trees)")
        for key in ("score_us_per_row", "reasons_us_per_row"):
            print(f"  {key:>19}: " + ", ".join(f"batch {k}: {v:,.1f}" for k, v in model[key].items()))
    print(f"rules ({figures['rules']['count']}) ms per batch: "
          + ", ".join(f"batch {k}: {v:.2f}" for k, v in figures["rules"]["ms_per_batch"].items()))
    print(f"feature dict -> row: {figures['row_from_dict_us']:.1f} µs")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
