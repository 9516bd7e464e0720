"""Training: point-in-time labels, a split by event time, LightGBM, thresholds from a budget.

Data validation, model cards, evaluation and drift live beside this (``models.lifecycle``,
``models.expectations``, ``models.card``, ``models.evaluate``, ``models.drift``). What is here
must be right: no future leaks into training (labels known before the cut-off only;
validation and test come after training in time), and the same data and seed give the same model
text, thresholds and version hash.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict

import lightgbm as lgb
import numpy as np
import pandas as pd

from models import registry
from models.metrics import average_precision, flagged_stats, roc_auc
from models.thresholds import Budget, derive

SPLIT = (0.70, 0.85)  # train | validation | test, cut at these quantiles of event time
MAX_ROUNDS, EARLY_STOP = 2000, 50
# Stop when validation PR-AUC has not improved by 1e-4 in EARLY_STOP rounds: on easy traffic the
# curve creeps up by 1e-6 a round for hundreds of rounds (measured: 880 rounds, 15 min at 140k
# transfers on a loaded 2-core machine) for nothing a threshold can see.
MIN_DELTA = 1e-4
PARAMS = {
    "objective": "binary",
    "metric": "average_precision",  # early stopping on PR-AUC: the base rate is far below 1 %
    "learning_rate": 0.1,
    "max_bin": 63,  # 4x fewer histogram bins than the default: faster, no loss measured here
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    # reproducibility: same data + seed -> same trees (row-wise histograms, fixed thread count)
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbose": -1,
}


def label_transfers(transfers: pd.DataFrame, labels: pd.DataFrame, cutoff_ms: int | None = None,
                    maturity_ms: int = 0) -> pd.Series:
    """1 for a fraudulent transfer, else 0, aligned with ``transfers`` (columns transfer_id,
    sender, ts). ``labels`` has the columns of ``pipelines.schemas.Label``.

    Only labels with ``known_at <= cutoff_ms - maturity_ms`` count (point in time; no cut-off:
    all). A confirmed account takeover marks every transfer its account sent within
    [compromise_from_ts, compromise_to_ts] (missing bounds: the label's ts and known_at). A label
    naming a transfer is a verdict on it and overrides the window; of several, the last known wins,
    so an analyst's later "not fraud" clears a scam report.
    """
    known = labels
    if cutoff_ms is not None:
        known = labels[labels["known_at"] <= cutoff_ms - maturity_ms]
    label = np.zeros(len(transfers), dtype=np.int8)

    ato = known[(known["kind"] == "ato_confirmed") & known["is_fraud"].astype(bool)]
    if len(ato):
        windows = pd.DataFrame({"sender": ato["account"].to_numpy(),
                                "start": ato["compromise_from_ts"].fillna(ato["ts"]).to_numpy(),
                                "end": ato["compromise_to_ts"].fillna(ato["known_at"]).to_numpy()})
        sent = pd.DataFrame({"sender": transfers["sender"].to_numpy(),
                             "ts": transfers["ts"].to_numpy(), "row": np.arange(len(transfers))})
        pairs = sent.merge(windows, on="sender")
        inside = pairs[(pairs["ts"] >= pairs["start"]) & (pairs["ts"] <= pairs["end"])]
        label[inside["row"].to_numpy()] = 1

    named = known[known["transfer_id"].notna()]
    if len(named):
        last = (named.sort_values(["known_at", "ts"], kind="stable")
                .drop_duplicates("transfer_id", keep="last").set_index("transfer_id")["is_fraud"])
        verdict = transfers["transfer_id"].map(last).to_numpy()
        has = pd.notna(verdict)
        label[has] = verdict[has].astype(bool)
    return pd.Series(label, index=transfers.index, name="label")


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


def _evaluate(y: np.ndarray, scores: np.ndarray, thresholds: dict) -> dict:
    return {"pr_auc": average_precision(y, scores), "roc_auc": roc_auc(y, scores),
            "base_rate": float(y.mean()),
            **{action: flagged_stats(y, scores, t) for action, t in thresholds.items()}}


def _progress_callback(total: int, every: int = 50):
    """A LightGBM callback that shows a tqdm bar (rounds done, validation PR-AUC)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="lightgbm", unit="round", leave=False, mininterval=0.5)

    def callback(env) -> None:
        bar.update(1)
        if env.iteration % every == 0 and env.evaluation_result_list:
            _, metric, value, _ = env.evaluation_result_list[0][:4]
            bar.set_postfix({metric: f"{value:.4f}"}, refresh=False)
        if env.iteration + 1 >= env.end_iteration:
            bar.close()

    callback.order = 5  # before early stopping, which may raise to end training
    callback.bar = bar
    return callback


def fit(table: pd.DataFrame, feature_names, label_col: str = "label", time_col: str = "ts",
        seed: int = 7, budget: Budget = Budget(), params: dict | None = None,
        progress: bool = False, extra_meta: dict | None = None) -> tuple[str, dict, dict]:
    """Train without storing: (model text, metadata, details). ``details`` holds the three time
    slices and the stored model's validation and test scores, for model cards and reports."""
    from models.drift import feature_bins

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

    frauds = int(y[0].sum())
    # class imbalance: weight the frauds up to the legitimate mass (scores are then not
    # probabilities; thresholds come from budgets on validation, not from 0.5)
    params = {**PARAMS, "seed": seed, "scale_pos_weight": (y[0].size - frauds) / frauds,
              **(params or {})}
    timings["prepare_s"] = time.perf_counter() - started
    started = time.perf_counter()
    train_set = lgb.Dataset(X[0], y[0], feature_name=feature_names)
    valid_set = lgb.Dataset(X[1], y[1], reference=train_set)
    callbacks = [lgb.early_stopping(EARLY_STOP, verbose=False, min_delta=MIN_DELTA)]
    if progress:
        callbacks.append(_progress_callback(MAX_ROUNDS))
    booster = lgb.train(params, train_set, num_boost_round=MAX_ROUNDS, valid_sets=[valid_set],
                        valid_names=["validation"], callbacks=callbacks)
    if progress:
        callbacks[-1].bar.close()
    timings["boost_s"] = time.perf_counter() - started
    started = time.perf_counter()
    model_text = booster.model_to_string(num_iteration=booster.best_iteration)
    # thresholds and metrics come from the very text that is stored, not from the live booster
    stored = lgb.Booster(model_str=model_text)
    s_valid, s_test = (stored.predict(x, num_threads=params["num_threads"]) for x in X[1:])
    thresholds = derive(y[1], s_valid, budget)
    importance = stored.feature_importance(importance_type="gain")
    meta = {
        "feature_names": feature_names,
        "thresholds": thresholds,
        "budget": asdict(budget),
        "training_window": {name: _slice_info(p, labels, time_col)
                            for name, p, labels in zip(("train", "validation", "test"), parts, y)},
        "metrics": {"validation": _evaluate(y[1], s_valid, thresholds),
                    "test": _evaluate(y[2], s_test, thresholds)},
        "best_iteration": booster.best_iteration,
        "params": params,
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
               "booster": stored, "timings": timings}
    return model_text, meta, details


def train(table: pd.DataFrame, feature_names, label_col: str = "label", time_col: str = "ts",
          seed: int = 7, budget: Budget = Budget(), params: dict | None = None,
          root=None, progress: bool = False, extra_meta: dict | None = None) -> str:
    """Train on ``table`` (one row per transfer: features, label, event time); store the model
    in the registry (``root``: its directory, default ``<data_dir>/models``); return its version."""
    model_text, meta, _ = fit(table, feature_names, label_col, time_col, seed, budget, params,
                              progress, extra_meta)
    return registry.save(model_text, meta, root)
