"""The baseline every evaluation reports beside Vigie's model: a logistic regression on a small,
fixed set of generic window features (amount, the sender's outgoing velocity, the recipient's
incoming volume and the frauds already known against it).

It is what a data scientist would hand-make on any history of transfers and delayed labels in an
afternoon. A LightGBM model on a hundred features that does not beat it is not doing its job,
and the card and ``vigie compare`` say so.

Contract (scikit-learn-like): ``Baseline().fit(frame, y)``, ``predict_proba(frame)`` -> (n, 2),
``score(frame)`` -> the fraud column. The fitted model is plain JSON (``to_dict`` /
``from_dict``): imputation medians, which columns are log1p-ed, scaling means and scales,
coefficients and intercept; no pickle. Scoring always goes through those constants, so a model
reloaded from the JSON scores exactly as the one just fitted.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

WINDOWS = ("24h", "7d", "30d")
FEATURES: tuple[str, ...] = (
    "transfer_amount_cents",
    *(f"sender_out_count_{w}" for w in WINDOWS),
    *(f"sender_out_mean_{w}" for w in WINDOWS),
    *(f"recipient_in_count_{w}" for w in WINDOWS),
    *(f"recipient_in_fraud_{w}" for w in WINDOWS),
    *(f"recipient_in_fraud_share_{w}" for w in WINDOWS),
)
KIND = "logistic_regression"


def _log1p_columns(names) -> np.ndarray:
    """Counts and amounts are heavy-tailed: log1p them; shares stay as they are."""
    return np.array(["_share_" not in n for n in names])


def feature_matrix(frame: pd.DataFrame, names=FEATURES) -> np.ndarray:
    """The baseline's columns of ``frame`` as floats; a column the table lacks is all NaN."""
    return np.column_stack([frame[n].to_numpy(np.float64) if n in frame.columns
                            else np.full(len(frame), np.nan) for n in names])


class Baseline:
    """Impute (median) -> log1p of counts and amounts -> standardise -> logistic regression."""

    def __init__(self, C: float = 1.0, seed: int = 0):
        self.C, self.seed = C, seed
        self.params_: dict | None = None

    def fit(self, frame: pd.DataFrame, y) -> "Baseline":
        # why local: scikit-learn takes ~0.6 s to import and only fitting needs it (scoring
        # reads the JSON constants)
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        log_cols = _log1p_columns(FEATURES)
        pipe = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            FunctionTransformer(_log1p_where, kw_args={"mask": log_cols}),
            StandardScaler(),
            LogisticRegression(C=self.C, max_iter=1000, random_state=self.seed))
        pipe.fit(feature_matrix(frame), np.asarray(y, dtype=int))
        imputer, _, scaler, logit = (step for _, step in pipe.steps)
        self.pipeline_ = pipe  # kept for checks; scoring reads only ``params_``
        self.params_ = {
            "kind": KIND, "features": list(FEATURES), "C": self.C,
            "impute_median": imputer.statistics_.tolist(), "log1p": log_cols.tolist(),
            "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "coef": logit.coef_[0].tolist(), "intercept": float(logit.intercept_[0])}
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        p = self.score(frame)
        return np.column_stack([1 - p, p])

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        if self.params_ is None:
            raise ValueError("the baseline is not fitted")
        prm = self.params_
        X = feature_matrix(frame, prm["features"])
        X = np.where(np.isnan(X), np.asarray(prm["impute_median"]), X)
        X = _log1p_where(X, np.asarray(prm["log1p"], dtype=bool))
        X = (X - np.asarray(prm["mean"])) / np.asarray(prm["scale"])
        margin = X @ np.asarray(prm["coef"]) + prm["intercept"]
        return 1.0 / (1.0 + np.exp(-margin))

    def to_dict(self) -> dict:
        if self.params_ is None:
            raise ValueError("the baseline is not fitted")
        return dict(self.params_)

    @classmethod
    def from_dict(cls, params: dict) -> "Baseline":
        if params.get("kind") != KIND:
            raise ValueError(f"not a baseline: {params.get('kind')!r}")
        model = cls(C=params.get("C", 1.0))
        model.params_ = dict(params)
        return model


def _log1p_where(X: np.ndarray, mask: np.ndarray) -> np.ndarray:
    X = np.array(X, dtype=np.float64)
    X[:, mask] = np.log1p(np.clip(X[:, mask], 0, None))
    return X
