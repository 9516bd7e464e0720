"""The model card: ``MODEL_CARD.md``, ``report.json`` and four PNG plots written next to the
model in the registry (``write``). Plain files beside the version rather than MLflow: why in
docs/models.md, "The model card: why not MLflow".
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.evaluate import baseline_warnings, versus_line
from models.metrics import precision_recall_curve


def _dt(ms) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")


def _plots(out: Path, y: np.ndarray, scores: np.ndarray, report: dict, meta: dict) -> list[str]:
    # why local: matplotlib is slow to import and only the card's plots need it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def validation_line(gx: dict | None) -> str:
    """The Great Expectations result in one line: a check that was not run is never FAILED."""
    if not gx or gx.get("skipped"):
        return "not run (skipped)"
    absent = gx.get("absent") or []
    tail = (f"; absent families: {', '.join(absent)} ({gx.get('not_applicable', 0)} expectations "
            "not applicable)" if absent else "")
    if gx.get("unprofiled"):
        tail += f"; {len(gx['unprofiled'])} features newer than the suite (unchecked)"
    if gx.get("success"):
        return f"passed ({gx.get('evaluated', 0)} expectations){tail}"
    return f"FAILED ({len(gx.get('failures', []))} of {gx.get('evaluated', 0)} expectations){tail}"


def _search_table(search: dict | None) -> str:
    if not search:
        return "- No parameter search recorded."
    keys = list(search.get("space", {}))

    def cell(t, k):
        v = t.get(k)
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) and k.startswith("valid") else str(v)

    head = ["trial", *keys, "best_round", "rounds", "valid_ap", "valid_logloss", "seconds",
            "status"]
    rows = [f"| {' | '.join(head)} |", f"|{'---|' * len(head)}"]
    for t in search["trials"]:
        mark = " **chosen**" if t["trial"] == search["chosen"] else ""
        rows.append("| " + " | ".join(cell(t, k) for k in head) + mark + " |")
    return (f"- Search: {len(search['trials'])} trial(s) in {search['elapsed_s']:.1f} s "
            f"(budget {search['budget_s']:.0f} s, at most {search['max_trials']} trials, ended "
            f"by {search['ended_by']}); criterion: {search['criterion']}\n\n" + "\n".join(rows))


def _warnings(report: dict) -> list[str]:
    return baseline_warnings(report, report["baseline"]) if report.get("baseline") else []


def _versus(report: dict) -> str:
    base = report.get("baseline")
    if not base:
        return "No baseline was fitted with this model."
    return versus_line(report, base) + " (test slice)."


def write(model_dir: Path, meta: dict, report: dict, y, scores) -> Path:
    """Write MODEL_CARD.md, report.json and the plots into ``model_dir``; returns the card."""
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
    fam = (meta.get("sources") or {}).get("families")
    families = "all (not declared)" if not fam else ", ".join(
        f"{f} {'present' if v else 'ABSENT (its features left out)'}" for f, v in fam.items())
    rec = meta.get("recipe", {})
    recipe = (f"stopping on the {rec['stopping']} (patience {rec['patience']}, at least "
              f"{rec['min_rounds']} trees; best round {rec['best_round']}), frauds weighted "
              f"{rec['pos_weight']:.1f} ({rec['pos_weight_rule']})" if rec else
              "early stopping on validation PR-AUC")
    warnings = "".join(f"**{w}**\n\n" for w in _warnings(report))
    card = f"""# Model card: {meta['version']}

Fraud score for transfers sent in the messenger (LightGBM, binary), trained by `vigie train`.

{warnings}
## Data
- Lake snapshot hash: `{meta['data_hash']}`; git commit `{meta.get('git_commit')}`
- Point in time: cut-off {_dt(dataset['cutoff_ms']) if dataset.get('cutoff_ms') else '-'} UTC,
  maturity {dataset.get('maturity_ms', 0) / 86_400_000:.0f} days
  ({dataset.get('left_out_immature', 0)} too-recent transfers left out)
- Train {_dt(win['train']['from_ts'])} - {_dt(win['train']['to_ts'])}: {win['train']['rows']} transfers, {win['train']['frauds']} frauds
- Validation {_dt(win['validation']['from_ts'])} - {_dt(win['validation']['to_ts'])}: {win['validation']['rows']} transfers, {win['validation']['frauds']} frauds (stopping, search, thresholds)
- Test {_dt(win['test']['from_ts'])} - {_dt(win['test']['to_ts'])}: {win['test']['rows']} transfers, {win['test']['frauds']} frauds (held out: every number below)
- Great Expectations suite `{gx.get('suite', '-')}`: {validation_line(gx)}
- Source families: {families}
- {len(meta['feature_names'])} features, in the order the model reads them (meta.json `feature_names`)

## Model
- {meta['best_iteration']} trees, seed {meta['seed']}; {recipe}
- Thresholds (from the budget {meta['budget']} on validation): {thr}
{_search_table(meta.get('search'))}

## Against the baseline
{warnings}{_versus(report)}
The baseline is a logistic regression on a few generic window features (models/baseline.py),
fitted on the same training slice; a model that loses to it is not ready to act.

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
