"""The model card: ``MODEL_CARD.md`` and four PNG plots written next to the model in the registry.

Why not MLflow: the registry is already a directory of immutable, content-hashed versions that
the stream loads atomically and that promote/shadow/rollback address through Kafka; MLflow would
add a tracking server (or a second on-disk store with its own layout), a heavy dependency tree
and a second source of truth for "which model is this", for what a data scientist needs here: the
metadata (``meta.json``: feature order, training window, data hash, GX result, metrics,
thresholds, git commit) and a readable card beside the model. Both are plain files that diff,
copy and review like code. Exporting a version to MLflow later is a loop over ``meta.json``.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def _dt(ms) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")


def _plots(out: Path, y: np.ndarray, scores: np.ndarray, report: dict, meta: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.metrics import precision_recall_curve

    files = []
    # PR curve
    _, prec, rec = precision_recall_curve(y, scores)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.step(rec, prec, where="post")
    ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02), xlim=(0, 1.02),
           title=f"Precision-recall (test), AP={report['pr_auc']:.3f}")
    ax.grid(alpha=.3)
    fig.tight_layout(); fig.savefig(out / "pr_curve.png", dpi=90); plt.close(fig)
    files.append("pr_curve.png")
    # score distribution by class
    fig, ax = plt.subplots(figsize=(5, 4))
    bins = np.linspace(0, 1, 41)
    ax.hist(scores[~y], bins=bins, alpha=.6, density=True, label="legitimate", log=True)
    ax.hist(scores[y], bins=bins, alpha=.6, density=True, label="fraud", log=True)
    for name, t in meta["thresholds"].items():
        if t <= 1:
            ax.axvline(t, ls="--", lw=1, color="k")
            ax.text(t, ax.get_ylim()[1], name, rotation=90, va="top", fontsize=7)
    ax.set(xlabel="score", ylabel="density (log)", title="Score distribution by class (test)")
    ax.legend()
    fig.tight_layout(); fig.savefig(out / "score_distribution.png", dpi=90); plt.close(fig)
    files.append("score_distribution.png")
    # recall by scenario at 0.5 %
    by = report["at_budget"].get("0.5%", {}).get("recall_by_scenario", {})
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(by)
    ax.barh(names, [by[n]["recall"] or 0 for n in names])
    for i, n in enumerate(names):
        ax.text((by[n]["recall"] or 0) + .01, i, f"n={by[n]['frauds']}", va="center", fontsize=7)
    ax.set(xlim=(0, 1.1), xlabel="recall at a 0.5 % hold budget", title="Recall by fraud scenario (test)")
    fig.tight_layout(); fig.savefig(out / "recall_by_scenario.png", dpi=90); plt.close(fig)
    files.append("recall_by_scenario.png")
    # feature importance
    imp = sorted(meta["feature_importance_gain"].items(), key=lambda kv: kv[1])[-20:]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.barh([k for k, _ in imp], [v for _, v in imp])
    ax.set(xlabel="total gain", title="Feature importance (top 20, gain)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout(); fig.savefig(out / "feature_importance.png", dpi=90); plt.close(fig)
    files.append("feature_importance.png")
    return files


def write(model_dir: Path, meta: dict, report: dict, y, scores) -> Path:
    """Write MODEL_CARD.md, report.json and the plots into ``model_dir``; returns the card."""
    from models.evaluate import summary

    model_dir = Path(model_dir)
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    files = _plots(model_dir, y, scores, report, meta)
    (model_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    win = meta["training_window"]
    gx = meta.get("validation", {})
    dataset = meta.get("dataset", {})
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    rows = "\n".join(
        f"| {b} | {pct(r['recall'])} | {pct(r['precision'])} | {pct(r['fraud_value_caught'])} | "
        f"{pct(r['legit_flagged_rate'])} |" for b, r in report["at_budget"].items())
    by = report["at_budget"].get("0.5%", {}).get("recall_by_scenario", {})
    scen = "\n".join(f"| {s} | {v['frauds']} | {pct(v['recall'])} |" for s, v in by.items())
    cal = "\n".join(f"| {c['bin']} | {c['n']} | {c['mean_score']:.3f} | {c['fraud_rate']:.3f} |"
                    for c in report["calibration"])
    thr = ", ".join(f"{k} >= {v:.4f}" if v <= 1 else f"{k}: disabled"
                    for k, v in meta["thresholds"].items())
    rc = report.get("review_capacity", {})
    card = f"""# Model card: {meta['version']}

Fraud score for transfers sent in the messenger (LightGBM, binary), trained by `vigie train`.

## Data
- Lake snapshot hash: `{meta['data_hash']}`; git commit `{meta.get('git_commit')}`
- Point in time: cut-off {_dt(dataset['cutoff_ms']) if dataset.get('cutoff_ms') else '-'} UTC,
  maturity {dataset.get('maturity_ms', 0) / 86_400_000:.0f} days
  ({dataset.get('left_out_immature', 0)} too-recent transfers left out)
- Train {_dt(win['train']['from_ts'])} - {_dt(win['train']['to_ts'])}: {win['train']['rows']} transfers, {win['train']['frauds']} frauds
- Validation {_dt(win['validation']['from_ts'])} - {_dt(win['validation']['to_ts'])}: {win['validation']['rows']} transfers, {win['validation']['frauds']} frauds (early stopping, thresholds)
- Test {_dt(win['test']['from_ts'])} - {_dt(win['test']['to_ts'])}: {win['test']['rows']} transfers, {win['test']['frauds']} frauds (held out: every number below)
- Great Expectations suite `{gx.get('suite', '-')}`: {'passed' if gx.get('success') else 'NOT RUN' if not gx else 'FAILED'} ({gx.get('evaluated', 0)} expectations)
- {len(meta['feature_names'])} features, in the order the model reads them (meta.json `feature_names`)

## Model
- Best iteration {meta['best_iteration']} (early stopping on validation PR-AUC), seed {meta['seed']},
  `scale_pos_weight` {meta['params'].get('scale_pos_weight', 1):.1f} (class imbalance)
- Thresholds (from the budget {meta['budget']} on validation): {thr}

## Results on the held-out test slice
PR-AUC **{report['pr_auc']:.3f}**, ROC-AUC **{report['roc_auc']:.3f}**, base rate {pct(report['base_rate'])},
legitimate-block rate {pct(report.get('legit_block_rate'))},
precision at {rc.get('per_day', '-')} reviews a day {pct(rc.get('precision'))}.

| hold budget | recall | precision | fraud value caught | legitimate held |
|---|---|---|---|---|
{rows}

![PR curve](pr_curve.png) ![scores](score_distribution.png)

### Recall by fraud scenario at a 0.5 % hold budget
| scenario | frauds | recall |
|---|---|---|
{scen}

![recall by scenario](recall_by_scenario.png)

### Calibration (scores are ranks: frauds are weighted up in training)
| score bin | transfers | mean score | fraud rate |
|---|---|---|---|
{cal}

## Features
![feature importance](feature_importance.png)

## Limits
- Trained on labels as known at the cut-off: frauds never reported are counted as legitimate.
- Scenario recall on small counts is noisy; read it with the `frauds` column.
"""
    path = model_dir / "MODEL_CARD.md"
    path.write_text(card)
    assert all((model_dir / f).exists() for f in files)
    return path
