"""The training recipe: a split by event time, LightGBM, a seeded search, thresholds from a budget.

``fit(table, feature_names)`` trains without storing (model text, metadata, details); ``train``
also registers the model. The table comes labelled (``models.datasets``, ``models.labels``);
validation, the card and the end-to-end ``vigie train`` are ``models.lifecycle``'s. Contract: no
future leaks (validation and test come after training in time), and the same data and seed give
the same model text, thresholds and version hash.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict

import lightgbm as lgb
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from models import registry
from models.baseline import Baseline
from models.drift import feature_bins
from models.evaluate import headline
from models.metrics import average_precision, flagged_stats, roc_auc
from models.thresholds import Budget, derive

SPLIT = (0.70, 0.85)  # train | validation | test, cut at these quantiles of event time
# The recipe. Early stopping on validation PR-AUC stopped an outside history's model after ONE
# tree (issue 10): AP on a few hundred frauds is a step function that often peaks early. So:
# stop on the validation log loss (smooth; weighted like training), with a long patience, and
# never keep fewer than MIN_ROUNDS trees (later trees at a modest learning rate cost little).
MIN_ROUNDS, MAX_ROUNDS, PATIENCE = 100, 2000, 100
# A new best log loss must beat the old one by this much: on easy traffic the loss creeps down
# by 1e-6 a round for thousands of rounds (measured on the default simulation: 0.0023 at 300
# rounds, 0.0015 at 1,000), for nothing a threshold can see.
MIN_DELTA = 1e-4
# Frauds weigh sqrt(legitimate / fraud), at most this: the full ratio (x500 at 0.2 %) made the
# first trees chase single frauds; sqrt keeps the minority visible without that.
MAX_POS_WEIGHT = 10.0
PARAMS = {
    "objective": "binary",
    # the one metric LightGBM computes each round: it stops training (see ``_stopping``); the
    # unweighted validation AP is computed once per trial, on the rounds kept
    "metric": ["binary_logloss"],
    "first_metric_only": True,
    "learning_rate": 0.05,
    "max_bin": 63,  # 4x fewer histogram bins than the default: faster, no loss measured here
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    # reproducibility: same data + seed -> same trees (row-wise histograms, fixed thread count)
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbose": -1,
}
# The search: PARAMS first (always trained, outside the budget), then seeded random draws of
# these, each trained with the same stopping rule, until the budget or SEARCH_TRIALS runs out.
SEARCH_SPACE = {
    "num_leaves": [7, 15, 31, 63, 127],
    "min_data_in_leaf": [20, 50, 100, 200, 500],
    "learning_rate": [0.03, 0.05, 0.1],
    "feature_fraction": [0.5, 0.7, 0.8, 1.0],
    "lambda_l2": [0.0, 1.0, 10.0, 100.0],
}
SEARCH_BUDGET_S = 60.0  # `vigie train`'s default; the library functions search only when asked
SEARCH_TRIALS = 16
CRITERION = ("validation average precision (higher is better; within 1e-4, the lower weighted "
             "validation log loss wins, then the earlier trial)")


def time_split(table: pd.DataFrame, time_col: str = "ts",
               bounds: tuple[float, float] = SPLIT) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train, validation, test: everything in one slice happens before the next one starts."""
    ts = table[time_col].to_numpy()
    t1, t2 = (np.quantile(ts, q, method="lower") for q in bounds)
    return table[ts < t1], table[(ts >= t1) & (ts < t2)], table[ts >= t2]


def data_hash(table: pd.DataFrame, columns: list[str]) -> str:
    rows = pd.util.hash_pandas_object(table[columns], index=False).to_numpy()
    return hashlib.sha256(rows.tobytes() + "\0".join(columns).encode()).hexdigest()[:16]


def _slice_info(part: pd.DataFrame, y: np.ndarray, time_col: str) -> dict:
    return {"from_ts": int(part[time_col].min()), "to_ts": int(part[time_col].max()),
            "rows": int(y.size), "frauds": int(y.sum())}


def _evaluate(y: np.ndarray, scores: np.ndarray, thresholds: dict, part: pd.DataFrame,
              baseline_scores: np.ndarray, time_col: str) -> dict:
    """The stored model's numbers on one slice, and the baseline's headline beside them."""
    sender = part["sender"] if "sender" in part.columns else None
    return {"pr_auc": average_precision(y, scores), "roc_auc": roc_auc(y, scores),
            "base_rate": float(y.mean()),
            **{action: flagged_stats(y, scores, t) for action, t in thresholds.items()},
            "headline": headline(y, scores, part[time_col], sender),
            "baseline": headline(y, baseline_scores, part[time_col], sender)}


def _progress_callback(total: int, every: int = 50, desc: str = "lightgbm"):
    """A LightGBM callback that shows a tqdm bar (rounds done, the stopping metric)."""
    bar = tqdm(total=total, desc=desc, unit="round", leave=False, mininterval=0.5)

    def callback(env) -> None:
        bar.update(1)
        if env.iteration % every == 0 and env.evaluation_result_list:
            _, metric, value, _ = env.evaluation_result_list[0][:4]
            bar.set_postfix({metric: f"{value:.4f}"}, refresh=False)
        if env.iteration + 1 >= env.end_iteration:
            bar.close()

    callback.order = 5  # before stopping, which may raise to end training
    callback.bar = bar
    return callback


def pos_weight(y: np.ndarray) -> float:
    """The weight of a fraud in training and in the validation loss: sqrt(legit / fraud),
    between 1 and MAX_POS_WEIGHT."""
    frauds = int(np.sum(y))
    return float(np.clip(np.sqrt((y.size - frauds) / frauds), 1.0, MAX_POS_WEIGHT))


class OverBudget(Exception):
    """A search trial ran past the search's deadline: it is discarded."""


def _stopping(min_rounds: int, patience: int, deadline: float | None, clock):
    """LightGBM callback: stop when the first validation metric (a loss) has not improved by
    MIN_DELTA in ``patience`` rounds, never before ``min_rounds``; raise OverBudget past
    ``deadline``. ``callback.best`` holds the best round (1-based) and its value."""
    best = {"round": 0, "value": float("inf")}

    def callback(env) -> None:
        if deadline is not None and clock() > deadline:
            raise OverBudget
        value, done = env.evaluation_result_list[0][2], env.iteration + 1
        if value < best["value"] - MIN_DELTA or best["round"] == 0:
            best.update(round=done, value=value, results=env.evaluation_result_list)
        if done >= min_rounds and done - best["round"] >= patience:
            raise lgb.callback.EarlyStopException(best["round"] - 1, best["results"])

    callback.order = 30
    callback.best = best
    return callback


def _boost(params: dict, train_set, valid_set, X_valid, y_valid, deadline=None,
           clock=time.monotonic, progress: bool = False, desc: str = "lightgbm") -> dict:
    """One training run with the recipe's stopping rule: the trial's record and its booster
    (None if it ran past ``deadline``)."""
    started = clock()
    stop = _stopping(MIN_ROUNDS, PATIENCE, deadline, clock)
    callbacks = [stop] + ([_progress_callback(MAX_ROUNDS, desc=desc)] if progress else [])
    try:
        booster = lgb.train(params, train_set, num_boost_round=MAX_ROUNDS, valid_sets=[valid_set],
                            valid_names=["validation"], callbacks=callbacks,
                            keep_training_booster=True)  # else cut to the best round
    except OverBudget:
        return {"status": "over budget", "seconds": round(clock() - started, 3), "booster": None}
    finally:
        if progress:
            callbacks[-1].bar.close()
    trained = booster.current_iteration()
    rounds = min(max(stop.best["round"], MIN_ROUNDS), trained)
    scores = booster.predict(X_valid, num_iteration=rounds, num_threads=params["num_threads"])
    # LightGBM ends a run itself when no leaf can split any more: a short model then, kept
    # only if no trial grew MIN_ROUNDS trees
    status = "done" if rounds >= MIN_ROUNDS else "too few trees (no split left)"
    return {"status": status, "rounds": rounds, "best_round": stop.best["round"],
            "trained_rounds": trained, "valid_logloss": float(stop.best["value"]),
            "valid_ap": average_precision(y_valid, scores), "seconds": round(clock() - started, 3),
            "booster": booster}


def _draws(seed: int, n: int, fixed: dict) -> list[dict]:
    """``n`` distinct seeded draws from SEARCH_SPACE, none equal to the defaults."""
    rng = np.random.default_rng(seed)
    seen = {tuple(PARAMS[k] for k in SEARCH_SPACE)}
    out = []
    for _ in range(50 * n):
        if len(out) == n:
            break
        draw = {k: values[int(rng.integers(len(values)))] for k, values in SEARCH_SPACE.items()}
        key = tuple({**draw, **fixed}.get(k) for k in SEARCH_SPACE)
        if key not in seen:
            seen.add(key)
            out.append(draw)
    return out


def _chosen(trials: list[dict]) -> int:
    done = ([t for t in trials if t["status"] == "done"]
            or [t for t in trials if t.get("rounds")])
    top = max(t["valid_ap"] for t in done)
    close = [t for t in done if t["valid_ap"] >= top - 1e-4]
    return min(close, key=lambda t: (t["valid_logloss"], t["trial"]))["trial"]


def search(params: dict, train_set, valid_set, X_valid, y_valid, seed: int, budget_s: float,
           max_trials: int = SEARCH_TRIALS, clock=time.monotonic, progress: bool = False
           ) -> tuple[lgb.Booster, dict, dict]:
    """The defaults (``params``) first, whatever the budget; then seeded random draws of
    SEARCH_SPACE while ``budget_s`` lasts (a trial still running at the deadline is cut and
    discarded). Returns the chosen booster, its record and the search's record (every trial)."""
    fixed = {k: v for k, v in params.items() if k in SEARCH_SPACE and v != PARAMS[k]}
    plans = [{}] + (_draws(seed, max_trials - 1, fixed) if budget_s > 0 else [])
    trials, boosters, started = [], {}, clock()
    deadline = started + budget_s
    for i, draw in enumerate(plans):
        if i and clock() >= deadline:
            break
        trial_params = {**params, **draw, **fixed}
        rec = _boost(trial_params, train_set, valid_set, X_valid, y_valid,
                     deadline if i else None, clock, progress, desc=f"trial {i}")
        boosters[i] = rec.pop("booster")
        trials.append({"trial": i, **{k: trial_params[k] for k in SEARCH_SPACE}, **rec})
        best = _chosen(trials)
        boosters = {best: boosters[best]}  # only the best so far stays in memory
        if rec["status"] == "over budget":
            break
    record = {"criterion": CRITERION, "budget_s": budget_s, "max_trials": max_trials,
              "elapsed_s": round(clock() - started, 3), "space": SEARCH_SPACE,
              "chosen": best, "trials": trials,
              "ended_by": ("off" if budget_s <= 0 else "budget" if len(trials) < len(plans)
                           or trials[-1]["status"] == "over budget" else "trials")}
    return boosters[best], trials[best], record


def fit(table: pd.DataFrame, feature_names, label_col: str = "label", time_col: str = "ts",
        seed: int = 7, budget: Budget = Budget(), params: dict | None = None,
        progress: bool = False, extra_meta: dict | None = None, search_budget_s: float = 0.0,
        search_trials: int = SEARCH_TRIALS, clock=time.monotonic) -> tuple[str, dict, dict]:
    """Train without storing: (model text, metadata, details). ``details`` holds the three time
    slices and the stored model's validation and test scores, for model cards and reports.

    The recipe: frauds weighted ``pos_weight``; stopping on the weighted validation log loss
    (patience PATIENCE, at least MIN_ROUNDS trees); the search of SEARCH_SPACE within
    ``search_budget_s`` (0: the defaults only); the baseline (``models.baseline``) fitted on the
    same training slice and stored as JSON in the metadata."""
    timings, started = {}, time.perf_counter()
    feature_names = list(feature_names)
    missing = [c for c in [*feature_names, label_col, time_col] if c not in table.columns]
    if missing:
        raise ValueError(f"training table lacks columns {missing}")
    if not table[label_col].isin([0, 1]).all():  # NaN would silently count as fraud
        raise ValueError(f"{label_col!r} must be 0/1 for every row")
    table = table.sort_values(time_col, kind="stable")
    parts = time_split(table, time_col)
    X = [p[feature_names].to_numpy(np.float64) for p in parts]
    y = [p[label_col].to_numpy().astype(bool) for p in parts]
    for name, labels in zip(("train", "validation", "test"), y):
        if labels.all() or not labels.any():
            raise ValueError(f"the {name} slice needs both frauds and legitimate transfers "
                             f"({int(labels.sum())} frauds in {labels.size} rows)")

    # class imbalance: frauds weigh w in training and in the validation loss (scores are then
    # not probabilities; thresholds come from budgets on validation, not from 0.5)
    w = pos_weight(y[0])
    params = {**PARAMS, "seed": seed, **(params or {})}
    timings["prepare_s"] = time.perf_counter() - started
    started = time.perf_counter()
    dataset_params = {"max_bin": params["max_bin"], "feature_pre_filter": False, "verbose": -1}
    train_set = lgb.Dataset(X[0], y[0], weight=np.where(y[0], w, 1.0),
                            feature_name=feature_names, params=dataset_params)
    valid_set = lgb.Dataset(X[1], y[1], weight=np.where(y[1], w, 1.0), reference=train_set,
                            params=dataset_params)
    booster, chosen, search_record = search(params, train_set, valid_set, X[1], y[1], seed,
                                            search_budget_s, search_trials, clock, progress)
    params = {**params, **{k: chosen[k] for k in SEARCH_SPACE}}
    timings["boost_s"] = time.perf_counter() - started
    started = time.perf_counter()
    model_text = booster.model_to_string(num_iteration=chosen["rounds"])
    # thresholds and metrics come from the very text that is stored, not from the live booster
    stored = lgb.Booster(model_str=model_text)
    s_valid, s_test = (stored.predict(x, num_threads=params["num_threads"]) for x in X[1:])
    thresholds = derive(y[1], s_valid, budget)
    baseline = Baseline(seed=seed).fit(parts[0], y[0])
    b_valid, b_test = (baseline.score(p) for p in parts[1:])
    timings["baseline_s"] = time.perf_counter() - started
    importance = stored.feature_importance(importance_type="gain")
    meta = {
        "feature_names": feature_names,
        "thresholds": thresholds,
        "budget": asdict(budget),
        "training_window": {name: _slice_info(p, labels, time_col)
                            for name, p, labels in zip(("train", "validation", "test"), parts, y)},
        "metrics": {"validation": _evaluate(y[1], s_valid, thresholds, parts[1], b_valid, time_col),
                    "test": _evaluate(y[2], s_test, thresholds, parts[2], b_test, time_col)},
        "best_iteration": chosen["rounds"],
        "params": params,
        "recipe": {"stopping": "weighted validation binary log loss", "min_rounds": MIN_ROUNDS,
                   "patience": PATIENCE, "max_rounds": MAX_ROUNDS, "min_delta": MIN_DELTA,
                   "pos_weight": w, "pos_weight_rule": f"sqrt(legit/fraud), 1..{MAX_POS_WEIGHT}",
                   "rounds": chosen["rounds"], "best_round": chosen["best_round"],
                   "trained_rounds": chosen["trained_rounds"]},
        "search": search_record,
        "baseline": baseline.to_dict(),
        "seed": seed,
        "label_col": label_col,
        "time_col": time_col,
        "data_hash": data_hash(table, [*feature_names, label_col, time_col]),
        "git_commit": registry.git_commit(),
        "lightgbm_version": lgb.__version__,
        # the training slice's distribution of every feature: the reference for drift (PSI)
        "feature_bins": feature_bins(parts[0], feature_names),
        "feature_importance_gain": {n: float(v) for n, v in zip(feature_names, importance)},
        **(extra_meta or {}),
    }
    timings["score_metrics_s"] = time.perf_counter() - started
    details = {"parts": parts, "y": y, "scores": {"validation": s_valid, "test": s_test},
               "baseline_scores": {"validation": b_valid, "test": b_test},
               "booster": stored, "timings": timings}
    return model_text, meta, details


def train(table: pd.DataFrame, feature_names, label_col: str = "label", time_col: str = "ts",
          seed: int = 7, budget: Budget = Budget(), params: dict | None = None,
          root=None, progress: bool = False, extra_meta: dict | None = None,
          search_budget_s: float = 0.0) -> str:
    """Train on ``table`` (one row per transfer: features, label, event time); store the model
    in the registry (``root``: its directory, default ``<data_dir>/models``); return its version."""
    model_text, meta, _ = fit(table, feature_names, label_col, time_col, seed, budget, params,
                              progress, extra_meta, search_budget_s)
    return registry.save(model_text, meta, root)
