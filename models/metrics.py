"""Ranking metrics in plain numpy, tie-aware and equal to scikit-learn's ``average_precision_score``
and ``roc_auc_score`` (a test checks it): numpy here because the precision-recall curve also
feeds thresholds and cards, and the stream's image needs no scikit-learn to read them.

``topk_daily_precision`` is the review team's view: each UTC day, the ``k`` senders with the
highest score that day are reviewed; how many of them did send a fraud that day.

>>> round(average_precision([0, 1, 1, 0], [0.1, 0.9, 0.4, 0.5]), 4)
0.8333
>>> roc_auc([0, 1, 1, 0], [0.1, 0.9, 0.4, 0.5])
0.75
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _as_arrays(y, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y.shape != scores.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {scores.shape} must be 1-D and aligned")
    return y, scores


def precision_recall_curve(y, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, precision, recall) where a transfer is flagged if score >= threshold.
    One point per distinct score, so tied scores are flagged together."""
    y, scores = _as_arrays(y, scores)
    order = np.argsort(-scores, kind="stable")
    s, hits = scores[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(hits)[last_of_tie]
    flagged = last_of_tie + 1
    positives = max(int(y.sum()), 1)
    return s[last_of_tie], tp / flagged, tp / positives


def average_precision(y, scores) -> float:
    """PR-AUC as the step-wise average precision (no interpolation)."""
    y, _ = _as_arrays(y, scores)
    if not y.any():
        return float("nan")
    _, precision, recall = precision_recall_curve(y, scores)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def roc_auc(y, scores) -> float:
    """ROC-AUC as the Mann-Whitney statistic, ties counted half."""
    y, scores = _as_arrays(y, scores)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def flagged_stats(y, scores, threshold: float) -> dict:
    """What flagging every score >= threshold does: share flagged, precision, recall."""
    y, scores = _as_arrays(y, scores)
    flagged = scores >= threshold
    n_flagged, tp = int(flagged.sum()), int((flagged & y).sum())
    return {"rate": n_flagged / max(y.size, 1), "flagged": n_flagged,
            "precision": tp / n_flagged if n_flagged else None,
            "recall": tp / int(y.sum()) if y.any() else None}


DAY_MS = 86_400_000


def topk_daily_precision(ts, sender, y, scores, k: int = 100) -> float:
    """Each UTC day, rank the senders by their highest score that day, take the top ``k`` (all
    of them on a day with fewer), precision = share of them that sent at least one fraudulent
    transfer that day; the mean over the days that have transfers (NaN if none). Ties between
    senders at the cut are broken by sender id, so the number is reproducible."""
    y, scores = _as_arrays(y, scores)
    frame = pd.DataFrame({"day": np.asarray(ts, dtype=np.int64) // DAY_MS,
                          "sender": np.asarray(sender, dtype=object), "y": y, "s": scores})
    if frame.empty:
        return float("nan")
    per = frame.groupby(["day", "sender"], sort=True).agg(s=("s", "max"), y=("y", "max")).reset_index()
    per = per.sort_values(["day", "s", "sender"], ascending=[True, False, True], kind="stable")
    top = per.groupby("day", sort=True).head(k)
    return float(top.groupby("day")["y"].mean().mean())
