"""Rule backtests over a replayed feature table, through the same engine the stream uses live."""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.rules import Rule, RuleSet


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def backtest(rules: RuleSet | Rule, table: pd.DataFrame, labels, others: RuleSet | None = None,
             ts_col: str = "ts", amount_col: str = "amount_cents") -> dict:
    """What ``rules`` would have done on ``table`` (one row per transfer: features, event time
    ``ts_col``, ``amount_col``), judged by ``labels`` (1/True = fraud; aligned with the rows, or
    the name of a column of ``table``).

    A RuleSet is backtested whole, disabled rules included (a draft is usually disabled). A
    single Rule is backtested beside the enabled rules of ``others`` (replacing its namesake),
    so its overlap says what it adds to what already runs. JSON-serialisable result: per rule,
    hits (total and per UTC day), precision, recall, money affected, overlap with each other
    rule and hits no other rule has; and the same totals for all the rules together."""
    if isinstance(rules, Rule):  # hit_matrix validates the draft's expression
        engine = others if others is not None else RuleSet(table.columns)
        pool = [r for r in engine.rules if r.enabled and r.name != rules.name] + [rules]
    else:
        engine, pool = rules, rules.rules
    pool, hits = engine.hit_matrix(table, rules=pool)

    y = np.asarray(table[labels] if isinstance(labels, str) else labels).astype(bool)
    if y.shape != (len(table),):
        raise ValueError(f"{y.size} labels for {len(table)} rows")
    amount = table[amount_col].to_numpy(dtype=np.int64)
    day = pd.to_datetime(table[ts_col], unit="ms", utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    days, day_code = np.unique(day, return_inverse=True)
    shared = hits.T.astype(np.int64) @ hits.astype(np.int64)  # shared[i, j]: rows both hit
    by_others = hits.sum(axis=1, keepdims=True) - hits  # per row: how many other rules hit

    def summary(hit: np.ndarray) -> dict:
        caught = hit & y
        return {"hits": int(hit.sum()), "hit_rate": _share(int(hit.sum()), len(hit)),
                "frauds_caught": int(caught.sum()), "precision": _share(int(caught.sum()), int(hit.sum())),
                "recall": _share(int(caught.sum()), int(y.sum())),
                "amount_cents": int(amount[hit].sum()), "fraud_amount_cents": int(amount[caught].sum())}

    report = {}
    for j, rule in enumerate(pool):
        hit = hits[:, j]
        alone = hit & (by_others[:, j] == 0)
        report[rule.name] = {
            "action": rule.action, "enabled": rule.enabled, "version": rule.version,
            **summary(hit),
            "hits_per_day": dict(zip(days.tolist(), np.bincount(day_code[hit], minlength=days.size).tolist())),
            "overlap": {other.name: int(shared[j, k]) for k, other in enumerate(pool) if k != j},
            "unique_hits": int(alone.sum()), "unique_frauds": int((alone & y).sum()),
        }
    return {"rows": len(table), "frauds": int(y.sum()), "days": days.tolist(),
            "rules": report, "all_rules": summary(hits.any(axis=1))}
