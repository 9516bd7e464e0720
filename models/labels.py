"""Labels on transfers: which transfers the lake's labels mark as fraud, and by which scenario.

Input: ``transfers`` (columns transfer_id, sender, ts) and ``labels`` (the columns of
``pipelines.contracts.schemas.Label``). A confirmed takeover marks every transfer its account
sent inside the compromise window; a label naming a transfer is a verdict on it and overrides
any window (the last known verdict wins). Point in time: only labels known by a cut-off count.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def takeover_rows(transfers: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The transfers (``row``: position in ``transfers``) that a confirmed account takeover's
    window covers, with the label's ``scenario``: every transfer its account sent within
    [compromise_from_ts, compromise_to_ts] (missing bounds: the label's ts and known_at). A
    takeover label that names a transfer and carries no window (an imported history's
    per-transfer label) covers that transfer alone, as a verdict (``last_verdicts``)."""
    ato = labels[(labels["kind"] == "ato_confirmed") & labels["is_fraud"].astype(bool)
                 & (labels["transfer_id"].isna() | labels["compromise_from_ts"].notna())]
    windows = pd.DataFrame({"sender": ato["account"].to_numpy(),
                            "start": ato["compromise_from_ts"].fillna(ato["ts"]).to_numpy(),
                            "end": ato["compromise_to_ts"].fillna(ato["known_at"]).to_numpy(),
                            "scenario": ato["scenario"].fillna("ato").to_numpy()})
    sent = pd.DataFrame({"sender": transfers["sender"].to_numpy(),
                         "ts": transfers["ts"].to_numpy(), "row": np.arange(len(transfers))})
    pairs = sent.merge(windows, on="sender")
    return pairs[(pairs["ts"] >= pairs["start"]) & (pairs["ts"] <= pairs["end"])]


def last_verdicts(labels: pd.DataFrame) -> pd.DataFrame:
    """The last known label naming each transfer (index: transfer_id): a verdict on it that
    overrides any takeover window, so an analyst's later "not fraud" clears a scam report."""
    named = labels[labels["transfer_id"].notna()]
    return (named.sort_values(["known_at", "ts"], kind="stable")
            .drop_duplicates("transfer_id", keep="last").set_index("transfer_id"))


def label_transfers(transfers: pd.DataFrame, labels: pd.DataFrame, cutoff_ms: int | None = None,
                    maturity_ms: int = 0) -> pd.Series:
    """1 for a fraudulent transfer, else 0, aligned with ``transfers`` (columns transfer_id,
    sender, ts). ``labels`` has the columns of ``pipelines.contracts.schemas.Label``.

    Only labels with ``known_at <= cutoff_ms - maturity_ms`` count (point in time; no cut-off:
    all). Takeover windows mark what they cover (``takeover_rows``); a label naming a transfer
    overrides them (``last_verdicts``).
    """
    known = labels
    if cutoff_ms is not None:
        known = labels[labels["known_at"] <= cutoff_ms - maturity_ms]
    label = np.zeros(len(transfers), dtype=np.int8)
    label[takeover_rows(transfers, known)["row"].to_numpy()] = 1
    verdict = transfers["transfer_id"].map(last_verdicts(known)["is_fraud"]).to_numpy()
    has = pd.notna(verdict)
    label[has] = verdict[has].astype(bool)
    return pd.Series(label, index=transfers.index, name="label")


def scenario_of(transfers: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """The fraud scenario behind each transfer (None: legitimate or unknown), from the labels,
    by the rules of ``label_transfers``."""
    out = pd.Series([None] * len(transfers), index=transfers.index, dtype=object)
    if labels is None or not len(labels):
        return out
    inside = takeover_rows(transfers, labels)
    out.iloc[inside["row"].to_numpy()] = inside["scenario"].to_numpy()
    last = last_verdicts(labels)
    verdict = transfers["transfer_id"].map(last["is_fraud"])
    scen = transfers["transfer_id"].map(last["scenario"].fillna("unknown"))
    has = verdict.notna().to_numpy()
    is_fraud = verdict.fillna(False).astype(bool).to_numpy()
    out[has & is_fraud] = scen[has & is_fraud]
    out[has & ~is_fraud] = None
    return out
