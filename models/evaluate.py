"""Evaluation the fraud-team way: what a team holding the top x % of transfers gets.

``evaluate(y, scores, ...)``: recall, precision and fraud value caught at hold budgets (a tie
across the cut counts pro rata), the legitimate-block rate, precision at daily review capacity,
recall per fraud scenario and a reliability table. ``headline`` (average precision, ROC-AUC,
top-k daily precision) is what the model and its stored baseline are compared on;
``evaluate_lake`` replays a lake's window, labels it with every label it holds and reports both.
Why these numbers: docs/models.md, "Evaluation".

>>> headline([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8])["average_precision"]
1.0
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from models import registry
from models.baseline import Baseline
from models.labels import label_transfers, scenario_of
from models.metrics import average_precision, roc_auc, topk_daily_precision
from models.tables import feature_table, labels_table

BUDGETS = (0.001, 0.005, 0.01)
DAY_MS = 86_400_000
DEFAULT_REVIEW_PER_DAY = 100  # k: what the review team can look at in a day
HEADLINE = ("average_precision", "roc_auc", "topk_daily_precision")


def headline(y, scores, ts=None, sender=None, k: int = DEFAULT_REVIEW_PER_DAY) -> dict:
    """The three numbers the model and the baseline are compared on (None when undefined:
    no fraud, no legitimate transfer, or no sender/time to rank senders by day)."""
    y = np.asarray(y, dtype=bool)
    both = bool(y.any() and (~y).any())
    topk = (topk_daily_precision(ts, sender, y, scores, k)
            if ts is not None and sender is not None and y.size else None)
    return {"average_precision": average_precision(y, scores) if y.any() else None,
            "roc_auc": roc_auc(y, scores) if both else None,
            "topk_daily_precision": topk, "k": k}


def baseline_warnings(model: dict, baseline: dict, who: str = "the model") -> list[str]:
    """One line for each headline number where ``model`` is below ``baseline``."""
    out = []
    for key, name in (("average_precision", "average precision"),
                      ("topk_daily_precision", f"top-{model.get('k', '')} daily precision")):
        a, b = model.get(key), baseline.get(key)
        if a is not None and b is not None and a < b:
            out.append(f"WARNING: {who} loses to the logistic-regression baseline on {name}: "
                       f"{a:.3f} < {b:.3f}")
    return out


def _top_weights(scores: np.ndarray, budget: float) -> np.ndarray:
    """How much each transfer counts as held when the team holds exactly the top
    ``floor(budget * n)`` transfers: 1 above the cut, 0 below it, and for the group of equal
    scores the cut falls into, the share of it that fits (the expected value of breaking the
    tie at random). Saturated scores tie often at the top; dropping the whole group would
    report a budget as holding nothing."""
    n = scores.size
    k = int(np.floor(budget * n + 1e-9))
    w = np.zeros(n)
    if k == 0:
        return w
    order = np.sort(scores)[::-1]
    edge = order[k - 1]
    above = scores > edge
    tied = scores == edge
    w[above] = 1.0
    w[tied] = (k - above.sum()) / tied.sum()
    return w


def _ratio(a, b) -> Optional[float]:
    return float(a) / float(b) if b else None


def reliability(y: np.ndarray, scores: np.ndarray, bins: int = 10) -> list[dict]:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append({"bin": f"[{edges[b]:.1f}, {edges[b + 1]:.1f})", "n": int(m.sum()),
                         "mean_score": float(scores[m].mean()), "fraud_rate": float(y[m].mean())})
    return rows


def evaluate(y, scores, amount_cents=None, ts=None, scenario=None, thresholds: dict | None = None,
             budgets=BUDGETS, review_per_day: int = DEFAULT_REVIEW_PER_DAY) -> dict:
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n, frauds = int(y.size), int(y.sum())
    amount = np.ones(n) if amount_cents is None else np.asarray(amount_cents, dtype=np.float64)
    fraud_value = float(amount[y].sum())
    legit = n - frauds
    report = {"transfers": n, "frauds": frauds, "base_rate": _ratio(frauds, n),
              "fraud_value_cents": fraud_value,
              "pr_auc": average_precision(y, scores) if frauds else None,
              "roc_auc": roc_auc(y, scores) if frauds and legit else None, "at_budget": {}}
    scen = None if scenario is None else pd.Series(scenario, dtype=object).to_numpy()
    for budget in budgets:
        w = _top_weights(scores, budget)
        tp = float((w * y).sum())
        row = {"flagged": int(round(w.sum())), "frauds_caught": round(tp, 2),
               "recall": _ratio(tp, frauds), "precision": _ratio(tp, w.sum()),
               "fraud_value_caught": _ratio((w * amount * y).sum(), fraud_value),
               "legit_flagged_rate": _ratio((w * ~y).sum(), legit),
               "tied_at_cut": int((scores == scores[w > 0].min()).sum()) if w.any() else 0}
        if scen is not None:
            row["recall_by_scenario"] = {
                str(s): {"frauds": int((y & (scen == s)).sum()),
                         "recall": _ratio((w * (y & (scen == s))).sum(), (y & (scen == s)).sum())}
                for s in sorted({v for v in scen[y] if v is not None}, key=str)}
        report["at_budget"][f"{budget:.1%}"] = row
    if thresholds:
        report["at_thresholds"] = {}
        for action, t in thresholds.items():
            flagged = scores >= t
            report["at_thresholds"][action] = {
                "threshold": t, "rate": _ratio(flagged.sum(), n),
                "recall": _ratio((flagged & y).sum(), frauds),
                "precision": _ratio((flagged & y).sum(), flagged.sum()),
                "legit_rate": _ratio((flagged & ~y).sum(), legit)}
        block = scores >= thresholds.get("block", math.inf)
        report["legit_block_rate"] = _ratio((block & ~y).sum(), legit)
    if ts is not None:
        days = np.asarray(ts, dtype=np.int64) // DAY_MS
        seen = hits = 0
        for day in np.unique(days):
            m = np.flatnonzero(days == day)
            top = m[np.argsort(-scores[m], kind="stable")[:review_per_day]]
            seen, hits = seen + top.size, hits + int(y[top].sum())
        report["review_capacity"] = {"per_day": review_per_day, "days": int(np.unique(days).size),
                                     "reviewed": seen, "precision": _ratio(hits, seen),
                                     "recall": _ratio(hits, frauds)}
    report["calibration"] = reliability(y, scores)
    return report


def score_table(table: pd.DataFrame, booster, feature_names) -> np.ndarray:
    return booster.predict(table[list(feature_names)].to_numpy(np.float64), num_threads=2)


def labelled_lake(lake_dir: Path, from_ms: Optional[int] = None, to_ms: Optional[int] = None,
                  workers: int = 1) -> tuple[pd.DataFrame, dict]:
    """A lake's replayed features (every event before ``to_ms``; the transfers with ts in
    [from_ms, to_ms) kept) with every label it holds, and each transfer's scenario."""
    table, stats = feature_table(Path(lake_dir), until_ts=to_ms, workers=workers)
    if from_ms is not None:
        table = table[table["ts"] >= from_ms].reset_index(drop=True)
    labels = labels_table(Path(lake_dir))
    table["label"] = label_transfers(table, labels).to_numpy()
    table["scenario"] = scenario_of(table, labels).to_numpy()
    stats.update(window={"from_ms": from_ms, "to_ms": to_ms}, scored=len(table))
    return table, stats


def baseline_scores(table: pd.DataFrame, meta: dict) -> Optional[np.ndarray]:
    """The scores of the baseline stored with a model (None: a model from before baselines)."""
    return Baseline.from_dict(meta["baseline"]).score(table) if meta.get("baseline") else None


def full_report(table: pd.DataFrame, scores, base_scores=None, thresholds: dict | None = None,
                review_per_day: int = DEFAULT_REVIEW_PER_DAY, who: str = "the model",
                **kwargs) -> dict:
    """``evaluate`` on a labelled table (label, ts, amount_cents; scenario and sender if any),
    with the headline at the top level, the baseline's (``base_scores``) under ``baseline`` and
    ``warnings`` when the model loses to it."""
    y = table["label"].to_numpy()
    sender = table["sender"] if "sender" in table.columns else None
    report = evaluate(y, scores, table["amount_cents"], table["ts"],
                      table["scenario"] if "scenario" in table.columns else None, thresholds,
                      review_per_day=review_per_day, **kwargs)
    report.update(headline(y, scores, table["ts"], sender, review_per_day))
    base = (None if base_scores is None
            else headline(y, base_scores, table["ts"], sender, review_per_day))
    report["baseline"] = base
    report["warnings"] = [] if base is None else baseline_warnings(report, base, who)
    return report


def evaluate_table(table: pd.DataFrame, version: str, root=None, **kwargs) -> dict:
    """The full report of ``version`` and of its baseline on a labelled table."""
    booster, meta = registry.load(version, root)
    scores = score_table(table, booster, meta["feature_names"])
    return {"model": version, **full_report(table, scores, baseline_scores(table, meta),
                                            meta["thresholds"], who=f"model {version}", **kwargs)}


def evaluate_lake(lake_dir: Path, version: Optional[str] = None, root=None,
                  from_ms: Optional[int] = None, to_ms: Optional[int] = None, workers: int = 1,
                  **kwargs) -> dict:
    version = version or registry.latest(root)
    if version is None:
        raise ValueError("no model in the registry")
    table, stats = labelled_lake(lake_dir, from_ms, to_ms, workers)
    if table.empty:
        raise ValueError(f"no transfer in the window [{from_ms}, {to_ms}) of {lake_dir}")
    return {"lake": str(lake_dir), "replay": stats, "window": stats["window"],
            **evaluate_table(table, version, root, **kwargs)}


def summary(report: dict) -> str:
    """A few lines a fraud lead reads."""
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = [f"model {report.get('model', '?')}: {report['transfers']} transfers, "
             f"{report['frauds']} frauds ({pct(report['base_rate'])})",
             f"PR-AUC {report['pr_auc'] or float('nan'):.3f}  ROC-AUC {report['roc_auc'] or float('nan'):.3f}"]
    for budget, row in report["at_budget"].items():
        lines.append(f"hold {budget:>5}: recall {pct(row['recall'])}, precision {pct(row['precision'])}, "
                     f"fraud value caught {pct(row['fraud_value_caught'])}, "
                     f"legit held {pct(row['legit_flagged_rate'])}")
    if "legit_block_rate" in report:
        lines.append(f"legitimate-block rate at the block threshold: {pct(report['legit_block_rate'])}")
    if "review_capacity" in report:
        rc = report["review_capacity"]
        lines.append(f"review {rc['per_day']}/day: precision {pct(rc['precision'])}, recall {pct(rc['recall'])}")
    by = report["at_budget"].get("0.5%", {}).get("recall_by_scenario")
    if by:
        lines.append("recall by scenario at 0.5 %: " + ", ".join(
            f"{s} {pct(v['recall'])} of {v['frauds']}" for s, v in by.items()))
    if report.get("baseline"):
        lines.append(versus_line(report, report["baseline"]))
    lines.extend(report.get("warnings", []))
    return "\n".join(lines)


def versus_line(model: dict, baseline: dict) -> str:
    def num(v):
        return "-" if v is None else f"{v:.3f}"

    return (f"model vs baseline: AP {num(model.get('average_precision'))} vs "
            f"{num(baseline.get('average_precision'))}, ROC-AUC {num(model.get('roc_auc'))} vs "
            f"{num(baseline.get('roc_auc'))}, top-{model.get('k', '')} daily precision "
            f"{num(model.get('topk_daily_precision'))} vs {num(baseline.get('topk_daily_precision'))}")
