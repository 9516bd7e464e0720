"""What the in-chat warnings stop and what they cost, on a simulated history (no Kafka):

    vigie bench --only warnings                 # figures to bench/results.json, docs/benchmarks.md
    python -m pipelines.bench.warning_effects [--users 4000] [--days 35] [--seed 7]

A model is trained (``models.lifecycle.train_lake``, no search) on the history before the
last ``EVAL_DAYS`` days, then decides each transfer of those days as the stream's decide stage
does with its model alone (the model's thresholds; a warned transfer's warning is
``decide.warning_code`` of its reasons). Each warned sender reacts as
``pipelines.simulator.reactions`` says, with the simulation's ground truth: a scam victim of
which scenario (heeds more when the warning fits), an honest sender (abandons now and then),
a fraudster (never heeds). Figures are expectations (each warned transfer counts its sender's
chance), so they do not hang on one draw. Definitions: docs/bench.md#warnings-warning_effectspy.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import models
from pipelines.bench import report

models.passive_openmp()  # before lightgbm is imported (by the registry and the scorer)
from models.lifecycle import train_lake  # noqa: E402
from models.scorer import Scorer  # noqa: E402
from models.tables import feature_table  # noqa: E402
from pipelines.simulator import reactions  # noqa: E402
from pipelines.simulator.offline import DEFAULT_USERS, simulate  # noqa: E402
from pipelines.stream.decide import warning_code  # noqa: E402

DAY_MS = 86_400_000
EVAL_DAYS = 7  # the last week is decided
MATURITY_DAYS = 7  # trained on transfers at least a week old at the cut-off (most labels in)
DAYS = 35.0  # five weeks: three to train on, one to mature, one decided


def decide(scorer: Scorer, table) -> list[tuple[str, str | None]]:
    """(action, warning code or None) per row, as the decide stage with the model alone."""
    matrix = table[list(scorer.feature_names)].to_numpy(dtype=np.float64)
    actions = scorer.actions(scorer.score(matrix))
    warned = [i for i, a in enumerate(actions) if a == "warn"]
    codes = dict(zip(warned, map(warning_code, scorer.reasons(matrix, warned))))
    return [(a, codes.get(i)) for i, a in enumerate(actions)]


def measure(table, decisions, fraud: dict[str, str], deceived: set[str]) -> dict:
    """The figures of warned transfers, in total and per warning code."""
    by_code: dict[str, dict] = {}
    honest_transfers = 0
    for tid, amount, (action, code) in zip(table["transfer_id"], table["amount_cents"], decisions):
        honest = tid not in fraud
        honest_transfers += honest
        if action != "warn":
            continue
        f = by_code.setdefault(code, dict.fromkeys(
            ("fraud_warned", "fraud_eur_warned", "fraud_eur_stopped", "honest_warned",
             "honest_abandoned"), 0.0))
        if honest:
            f["honest_warned"] += 1
            f["honest_abandoned"] += reactions.p_heed(None, code)
        else:
            f["fraud_warned"] += 1
            f["fraud_eur_warned"] += amount / 100
            if tid in deceived:  # a fraudster sending with a stolen card never calls it off
                f["fraud_eur_stopped"] += reactions.p_heed(fraud[tid], code) * amount / 100
    totals = {k: sum(f[k] for f in by_code.values()) for k in
              ("fraud_warned", "fraud_eur_warned", "fraud_eur_stopped", "honest_warned",
               "honest_abandoned")}
    fraud_eur = sum(a for t, a in zip(table["transfer_id"], table["amount_cents"]) if t in fraud) / 100
    return {**{k: round(v, 2) for k, v in totals.items()},
            "transfers": len(table), "honest_transfers": honest_transfers,
            "fraud_transfers": len(table) - honest_transfers, "fraud_eur": round(fraud_eur, 2),
            "stopped_share_of_fraud_eur": round(totals["fraud_eur_stopped"] / fraud_eur, 4)
            if fraud_eur else None,
            "abandoned_per_10k_honest": round(1e4 * totals["honest_abandoned"] / honest_transfers, 2)
            if honest_transfers else None,
            "by_code": {code: {k: round(v, 2) for k, v in f.items()}
                        for code, f in sorted(by_code.items())}}


def run(users: int = DEFAULT_USERS, days: float = DAYS, seed: int = 7) -> dict:
    with tempfile.TemporaryDirectory(prefix="vigie-warnings-") as tmp:
        root = Path(tmp)
        _, world = simulate(root / "lake", seed=seed, users=users, days=days)
        table, _ = feature_table(root / "lake")
        table.to_parquet(root / "features.parquet")  # one replay: training reads it back
        cutoff = int(table["ts"].max()) - EVAL_DAYS * DAY_MS
        trained = train_lake(root / "lake", seed=seed, root=root / "models", cutoff_ms=cutoff,
                             maturity_days=MATURITY_DAYS, card=False, validate=False,
                             features=root / "features.parquet")
        scorer = Scorer.load(trained["version"], root / "models")
        judged = table[table["ts"] > cutoff].reset_index(drop=True)
        figures = measure(judged, decide(scorer, judged), world.fraud_transfers, world.deceived)
    figures.update(users=users, days=days, seed=seed, eval_days=EVAL_DAYS,
                   thresholds=scorer.thresholds)
    return figures


def results(figures: dict) -> dict:
    """Flat ``warnings_*`` figures for bench/results.json and docs/benchmarks.md (the table per
    code in results.json only)."""
    flat = {f"warnings_{k}": v for k, v in figures.items() if k not in ("by_code", "thresholds")}
    for code, f in figures["by_code"].items():
        flat[f"warnings_{code}_fraud_eur_stopped"] = f["fraud_eur_stopped"]
        flat[f"warnings_{code}_honest_abandoned"] = f["honest_abandoned"]
    flat["warnings_by_code"] = figures["by_code"]
    return flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=DEFAULT_USERS)
    parser.add_argument("--days", type=float, default=DAYS)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="Also write bench/results.json.")
    args = parser.parse_args()
    figures = run(args.users, args.days, args.seed)
    if args.write:
        report.write(results(figures))
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
