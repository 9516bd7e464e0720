"""A synthetic transfer feature table with a planted signal, for tests, benchmarks and notebooks.

Frauds get ``sender_count_1h`` shifted by ``planted_shift`` standard deviations (the planted
signal) and ``recipient_account_age_days`` a little lower (a weak one); the other features are
noise, with some values missing as real features are.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

T0 = 1_790_000_000_000  # event time of the first transfer (ms)
PLANTED = "sender_count_1h"
WEAK = "recipient_account_age_days"


def feature_names(n_features: int = 20) -> list[str]:
    return [PLANTED, WEAK, "amount_vs_sender_median", *(f"noise_{i:02d}" for i in range(n_features - 3))]


def table(n: int = 20_000, n_features: int = 20, fraud_rate: float = 0.02, seed: int = 0,
          planted_shift: float = 2.5, missing_rate: float = 0.05) -> pd.DataFrame:
    """Columns: transfer_id, ts, amount_cents, label, then ``feature_names(n_features)``."""
    rng = np.random.default_rng(seed)
    names = feature_names(n_features)
    label = (rng.random(n) < fraud_rate).astype(np.int8)
    X = rng.normal(size=(n, len(names)))
    X[:, 0] += planted_shift * label
    X[:, 1] -= 0.5 * label
    X[rng.random(X.shape) < missing_rate] = np.nan
    X[:, 0] = np.where(np.isnan(X[:, 0]), 0.0, X[:, 0])  # the planted feature is always known
    frame = pd.DataFrame(X, columns=names)
    frame.insert(0, "label", label)
    frame.insert(0, "amount_cents", rng.integers(100, 50_000, n))
    frame.insert(0, "ts", T0 + np.cumsum(rng.integers(1, 2_000, n)))
    frame.insert(0, "transfer_id", [f"t{i}" for i in range(n)])
    return frame
