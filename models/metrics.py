"""Ranking metrics in plain numpy (no scikit-learn in the image), tie-aware like scikit-learn's."""
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
