"""Decision thresholds derived from a declared budget on the validation slice, never typed by hand.

- hold: the highest band that holds at most ``hold_rate`` of validation transfers (review capacity);
- warn: the widest band that warns at most ``warn_rate`` of the *legitimate* validation transfers
  (a warning is friction for an honest sender; warning a fraud costs nothing, so frauds do not
  eat the budget: a budget on all transfers would, on traffic with more frauds than it, put the
  threshold inside the frauds' own scores);
- block: the lowest score whose band reaches ``block_precision`` on validation, with at least
  ``block_min_frauds`` frauds in it (one lucky fraud is not evidence), never below hold. A
  confident model ties its top scores; when that tie alone exceeds the review budget, hold is
  disabled, and block still stands on its precision (blocked transfers need no reviewer).
A threshold that no score can satisfy is DISABLED (1.01: scores are probabilities).

>>> rate_threshold([0.1, 0.2, 0.3, 0.9], 0.25)  # one transfer in four may be flagged
0.6
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.metrics import precision_recall_curve

DISABLED = 1.01


@dataclass(frozen=True)
class Budget:
    hold_rate: float = 0.005
    warn_rate: float = 0.02
    block_precision: float = 0.90
    block_min_frauds: int = 5


def rate_threshold(scores, rate: float) -> float:
    """The lowest threshold t with share(scores >= t) <= rate, placed midway between the highest
    score left out and the next score above it (tied scores are in or out together)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = int(np.floor(rate * s.size + 1e-9))  # how many may be flagged
    if k >= s.size:
        return float(s[-1])
    above = s[:k][s[:k] > s[k]]
    if above.size == 0:
        return DISABLED
    t = (s[k] + above[-1]) / 2
    return float(t if t > s[k] else above[-1])


def precision_threshold(y, scores, precision: float, min_frauds: int) -> float:
    thresholds, prec, recall = precision_recall_curve(y, scores)
    frauds = recall * max(int(np.asarray(y, dtype=bool).sum()), 1)
    ok = (prec >= precision) & (np.rint(frauds) >= min_frauds)
    return float(thresholds[ok][-1]) if ok.any() else DISABLED


def derive(y_valid, scores_valid, budget: Budget = Budget()) -> dict:
    hold = rate_threshold(scores_valid, budget.hold_rate)
    block = precision_threshold(y_valid, scores_valid, budget.block_precision,
                                budget.block_min_frauds)
    if hold != DISABLED:
        block = max(block, hold)
    legit = np.asarray(scores_valid)[~np.asarray(y_valid, dtype=bool)]
    warn = min(rate_threshold(legit, budget.warn_rate), hold, block)
    return {"warn": warn, "hold": hold, "block": block}
