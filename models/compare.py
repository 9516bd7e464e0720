"""Champion vs challenger on the same traffic.

- Online (``compare_decisions``): the lake's ``decisions`` hold, for every transfer, the acting
  model's decision (``shadow=False``) and, while a challenger is shadowed, its would-be decision
  (``shadow=True``). Joined by ``transfer_id`` (only transfers both scored), labelled with the
  lake's labels, each side is evaluated on exactly the same transfers, and the two sets of
  actions are cross-tabulated (where would the challenger have acted differently).
- Offline (``compare_models``): both models score the replayed features of one lake.

Each side is also set against the logistic-regression baseline stored with its model
(``models.baseline``), on the same transfers (online: on the feature values the acting decision
recorded); ``warnings`` says when a model loses to its baseline on average precision or top-k
daily precision, and ``format_comparison`` prints them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from models import registry
from models.evaluate import (baseline_scores, baseline_warnings, evaluate, evaluate_table, headline,
                             labelled_lake)
from models.labels import label_transfers, scenario_of
from models.tables import labels_table
from pipelines.lake import parquet as lake


def _headline(report: dict, baseline: Optional[dict] = None) -> dict:
    budget = report["at_budget"].get("0.5%", {})
    base = baseline or {}
    return {"pr_auc": report["pr_auc"], "roc_auc": report["roc_auc"],
            "recall@0.5%": budget.get("recall"), "precision@0.5%": budget.get("precision"),
            "value_caught@0.5%": budget.get("fraud_value_caught"),
            "legit_block_rate": report.get("legit_block_rate"),
            "topk_daily_precision": report.get("topk_daily_precision"),
            "baseline_pr_auc": base.get("average_precision"),
            "baseline_topk_daily_precision": base.get("topk_daily_precision")}


def compare_models(lake_dir: Path, champion: str, challenger: str, root=None) -> dict:
    table, _ = labelled_lake(lake_dir)
    a, b = (evaluate_table(table, v, root) for v in (champion, challenger))
    return {"traffic": str(lake_dir), "transfers": a["transfers"], "frauds": a["frauds"],
            "champion": {"model": champion, **_headline(a, a["baseline"])},
            "challenger": {"model": challenger, **_headline(b, b["baseline"])},
            "warnings": [w.replace("WARNING: ", f"WARNING ({side}): ")
                         for side, r in (("champion", a), ("challenger", b)) for w in r["warnings"]],
            "reports": {"champion": a, "challenger": b}}


def _recorded_baseline(joined: pd.DataFrame, version: str, root=None) -> Optional[np.ndarray]:
    """The baseline of ``version`` scored on the feature values the decisions recorded (None:
    the model is not in this registry or has no baseline)."""
    try:
        meta = registry.load_meta(version, root)
    except (FileNotFoundError, ValueError):
        return None
    features = pd.DataFrame.from_records(
        [json.loads(f) if f else {} for f in joined["features"]], index=joined.index)
    return baseline_scores(features.astype("float64"), meta)


def compare_decisions(lake_dir: Path, challenger: Optional[str] = None, root=None) -> dict:
    con = lake.connect(lake_dir, topics=["decisions", "labels"])
    where = "" if challenger is None else "AND s.model_version = ?"
    params = [] if challenger is None else [challenger]
    joined = con.execute(f"""
        WITH acting AS (SELECT * FROM decisions WHERE NOT shadow QUALIFY
                        row_number() OVER (PARTITION BY transfer_id ORDER BY ts, id) = 1),
             shadowed AS (SELECT * FROM decisions WHERE shadow QUALIFY
                        row_number() OVER (PARTITION BY transfer_id, model_version ORDER BY ts, id) = 1)
        SELECT a.transfer_id, a.sender, a.ts, a.amount_cents,
               a.features, a.model_version AS champion, a.score AS champion_score, a.action AS champion_action,
               s.model_version AS challenger, s.score AS challenger_score,
               s.action AS challenger_action
        FROM acting a JOIN shadowed s USING (transfer_id) WHERE true {where}
        ORDER BY a.ts, a.transfer_id""", params).df()
    if joined.empty:
        raise ValueError("no transfer has both an acting and a shadow decision in this lake")
    if joined["challenger"].nunique() > 1:
        raise ValueError(f"several challengers in the lake ({sorted(joined['challenger'].unique())}): "
                         "name one")
    labels = labels_table(Path(lake_dir))
    joined["label"] = label_transfers(joined, labels).to_numpy()
    joined["scenario"] = scenario_of(joined, labels).to_numpy()
    out = {"traffic": f"{lake_dir} (decisions, shadow vs acting)", "transfers": len(joined),
           "frauds": int(joined["label"].sum()), "warnings": []}
    for side in ("champion", "challenger"):
        report = evaluate(joined["label"], joined[f"{side}_score"], joined["amount_cents"],
                          joined["ts"], joined["scenario"])
        report.update(headline(joined["label"], joined[f"{side}_score"], joined["ts"],
                               joined["sender"]))
        versions = joined[side].unique()
        b = _recorded_baseline(joined, versions[0], root) if len(versions) == 1 else None
        base = None if b is None else headline(joined["label"], b, joined["ts"], joined["sender"])
        out[side] = {"model": versions[0] if len(versions) == 1 else list(versions),
                     **_headline(report, base)}
        if base:
            out["warnings"] += baseline_warnings(report, base, f"{side} {versions[0]}")
        # what the stream actually did (or would have) with its own thresholds
        acted = joined[f"{side}_action"].isin(["hold", "block"]).to_numpy()
        y = joined["label"].to_numpy().astype(bool)
        out[side]["held_or_blocked"] = int(acted.sum())
        out[side]["recall_of_actions"] = float((acted & y).sum() / y.sum()) if y.any() else None
        out[side]["legit_block_rate"] = float(
            ((joined[f"{side}_action"] == "block").to_numpy() & ~y).sum() / max((~y).sum(), 1))
    out["actions"] = pd.crosstab(joined["champion_action"], joined["challenger_action"]).to_dict()
    out["disagreements"] = int((joined["champion_action"] != joined["challenger_action"]).sum())
    return out


def format_comparison(result: dict) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    keys = [k for k in result["champion"] if k != "model"]
    lines = [f"traffic: {result['traffic']}: {result['transfers']} transfers, {result['frauds']} frauds",
             f"{'':24}{'champion':>16}{'challenger':>16}",
             f"{'model':24}{str(result['champion']['model'])[-16:]:>16}{str(result['challenger']['model'])[-16:]:>16}"]
    for k in keys:
        lines.append(f"{k:24}{fmt(result['champion'][k]):>16}{fmt(result['challenger'].get(k)):>16}")
    if "disagreements" in result:
        lines.append(f"transfers where the actions differ: {result['disagreements']}")
    lines.extend(result.get("warnings", []))
    return "\n".join(lines)


