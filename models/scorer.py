"""The scorer the stream uses: a registered model, its feature order and its thresholds.

Rows are float64 matrices in the model's own feature order (``meta.json``), built from feature
dicts with ``row``/``matrix`` (a feature the model does not know is ignored, one it needs but
the dict lacks, or holds as None, is NaN, which LightGBM treats as missing, as in training). Prediction uses one
thread: a micro-batch is small, and thread start-up would cost more than it saves.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import lightgbm as lgb
import numpy as np

from models import registry
from pipelines.contracts.schemas import ReasonCode

ACTIONS = ("approve", "warn", "hold", "block")


class Scorer:
    def __init__(self, booster: lgb.Booster, meta: dict):
        self.booster = booster
        self.meta = meta
        self.version: str = meta["version"]
        self.feature_names: tuple[str, ...] = tuple(meta["feature_names"])
        self.thresholds: dict = dict(meta["thresholds"])
        if booster.num_feature() != len(self.feature_names):
            raise ValueError(f"model {self.version} has {booster.num_feature()} features, "
                             f"its meta names {len(self.feature_names)}")

    @classmethod
    def load(cls, version: str | None = None, root=None) -> "Scorer":
        """A stored model; ``version=None``: the latest one."""
        version = version or registry.latest(root)
        if version is None:
            raise FileNotFoundError(f"no model in {registry.models_dir(root)}")
        return cls(*registry.load(version, root))

    # --- inputs -----------------------------------------------------------------------
    def row(self, features: Mapping[str, float]) -> np.ndarray:
        """One row in the model's order; an absent or None feature is NaN (missing)."""
        get = features.get
        return np.fromiter((np.nan if (v := get(n)) is None else v for n in self.feature_names),
                           np.float64, count=len(self.feature_names))

    def matrix(self, rows: Iterable[Mapping[str, float]]) -> np.ndarray:
        rows = list(rows)
        out = np.empty((len(rows), len(self.feature_names)))
        for i, features in enumerate(rows):
            out[i] = self.row(features)
        return out

    def _check(self, matrix) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} features in the order of model "
                             f"{self.version}, got {matrix.shape[1]}")
        return matrix

    # --- outputs ----------------------------------------------------------------------
    def score(self, matrix) -> np.ndarray:
        """Fraud probability per row."""
        return self.booster.predict(self._check(matrix), num_threads=1)

    def margin(self, matrix) -> np.ndarray:
        """Raw score (log-odds), which the contributions add up to."""
        return self.booster.predict(self._check(matrix), raw_score=True, num_threads=1)

    def contributions(self, matrix, rows_idx: Sequence[int] | None = None) -> np.ndarray:
        """SHAP values in log-odds for the rows asked: one column per feature, then the bias."""
        matrix = self._check(matrix)
        if rows_idx is not None:
            matrix = matrix[np.asarray(rows_idx, dtype=np.intp)]
        if not len(matrix):
            return np.empty((0, len(self.feature_names) + 1))
        return self.booster.predict(matrix, pred_contrib=True, num_threads=1)

    def reasons(self, matrix, rows_idx: Sequence[int] | None = None,
                top: int = 5) -> list[list[ReasonCode]]:
        """The features that pushed each asked row's score up the most, strongest first (at
        most ``top``, only those with a positive contribution). Costs about a prediction per
        tree per row: ask only for the rows that are not approved, all in one call."""
        matrix = self._check(matrix)
        idx = np.arange(len(matrix)) if rows_idx is None else np.asarray(rows_idx, dtype=np.intp)
        contrib = self.contributions(matrix, idx)[:, :-1]
        out = []
        for values, c in zip(matrix[idx], contrib):
            order = np.argsort(-c, kind="stable")[:top]
            out.append([ReasonCode(self.feature_names[j], float(values[j]), float(c[j]))
                        for j in order if c[j] > 0])
        return out

    def action_for(self, score: float) -> str:
        t = self.thresholds
        if score >= t["block"]:
            return "block"
        if score >= t["hold"]:
            return "hold"
        if score >= t["warn"]:
            return "warn"
        return "approve"

    def actions(self, scores) -> list[str]:
        """``action_for`` over a batch."""
        s, t = np.asarray(scores), self.thresholds
        level = np.where(s >= t["block"], 3, np.where(s >= t["hold"], 2, np.where(s >= t["warn"], 1, 0)))
        return [ACTIONS[i] for i in level]
