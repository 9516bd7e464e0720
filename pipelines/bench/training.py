"""How long ``vigie train`` takes after replay, phase by phase, and what the model is worth.

    python -m pipelines.bench.training --lake LAKE [--features F.parquet] [--runs 3] [--write]
    vigie bench --only train      # the same on a lake simulated here (smaller; see run())

The replay runs once (``vigie replay --out``, timed apart; skipped when ``--features`` exists),
then ``vigie train --features`` ``--runs`` times: medians end to end and per phase (``PHASES``),
with the test PR-AUC and recall at a 0.5 % hold budget beside them. Target and phases:
docs/bench.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import models

models.passive_openmp()  # as `vigie train` does, before lightgbm is imported

import pyarrow.parquet as pq  # noqa: E402

from models.lifecycle import train_lake  # noqa: E402
from models.registry import load_meta  # noqa: E402
from models.tables import feature_table  # noqa: E402
from pipelines.bench import report  # noqa: E402
from pipelines.contracts import settings  # noqa: E402
from pipelines.simulator.offline import run_offline  # noqa: E402

PHASES = ("dataset_s", "load_s", "labels_s", "validate_s", "prepare_s", "boost_s",
          "score_metrics_s", "evaluate_s", "save_s", "card_s")


def replay_to(lake_dir: Path, out: Path) -> dict:
    """``vigie replay --out``: the feature table, once."""
    started = time.perf_counter()
    table, stats = feature_table(lake_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return {**stats, "total_s": time.perf_counter() - started}


def train_after_replay(lake_dir: Path, features: Path, runs: int = 3) -> dict:
    """``vigie train --features`` ``runs`` times into a scratch registry: medians per phase."""
    rows = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="vigie-bench-train-") as root:
            started = time.perf_counter()
            stats = train_lake(lake_dir, root=Path(root), features=features, progress=False)
            stats["total_s"] = time.perf_counter() - started
            report = load_meta(stats["version"], Path(root))["metrics"]["test_report"]
        stats["recall_at_0.5%"] = report["at_budget"]["0.5%"]["recall"]
        rows.append(stats)
        print(f"bench: train: {stats['total_s']:.1f}s "
              + " ".join(f"{p[:-2]}={stats.get(p, 0):.1f}" for p in PHASES), flush=True)
    median = {p: round(statistics.median(r.get(p, 0.0) for r in rows), 2)
              for p in (*PHASES, "total_s")}
    last = rows[-1]
    return {"runs": runs, "median": median, "all_total_s": [round(r["total_s"], 2) for r in rows],
            "rows": last["rows"], "frauds": last["frauds"], "best_iteration": last["best_iteration"],
            "test_pr_auc": last["test_pr_auc"], "test_roc_auc": last["test_roc_auc"],
            "recall_at_0.5%": last["recall_at_0.5%"]}


def figures(transfers: int, events: int | None, replay: dict | None, result: dict,
            how: str) -> dict:
    """The flat figures bench/results.json and docs/benchmarks.md keep."""
    m = result["median"]
    flat = {"train_bench_lake": how, "train_bench_transfers": transfers,
            "train_bench_rows": result["rows"], "train_bench_frauds": result["frauds"],
            "train_after_replay_s": m["total_s"], "train_runs": result["runs"],
            "train_best_iteration": result["best_iteration"],
            "train_test_pr_auc": round(result["test_pr_auc"], 6),
            "train_test_recall_at_0_5pct": round(result["recall_at_0.5%"], 4),
            **{f"train_{p}": m[p] for p in PHASES},
            "train_after_replay_s_per_1m_transfers": round(m["total_s"] * 1e6 / transfers, 1)}
    flat["train_bench_events"] = events  # None when the replay was not measured here
    if replay:
        flat.update(train_replay_s=round(replay["total_s"], 1),
                    replay_s_per_1m_transfers=round(replay["total_s"] * 1e6 / transfers, 1))
    for stale in ("train_fit_s", "train_rounds", "train_s_per_1m_transfers", "train_bench_sim_s",
                  "train_replay_load_s", "train_replay_features_s"):
        flat[stale] = None  # figures of the previous bench layout: replaced by the ones above
    return flat


def run(users: int | None = None, days: float | None = None) -> dict:
    """``vigie bench --only train``: simulate ``VIGIE_BENCH_TRAIN_USERS`` users for
    ``VIGIE_BENCH_TRAIN_DAYS`` days (default 10,000 x 14: ~90k transfers; 100,000 x 15 is the
    1M-transfer lake), replay once, train once."""
    users = users or settings.environment().offline.bench_train_users
    days = days or settings.environment().offline.bench_train_days
    with tempfile.TemporaryDirectory(prefix="vigie-bench-train-") as tmp:
        lake_dir, features = Path(tmp) / "lake", Path(tmp) / "features.parquet"
        print(f"bench: train: simulating {users} users x {days} days …", flush=True)
        run_offline(lake_dir, seed=5, users=users, days=days)
        replay = replay_to(lake_dir, features)
        result = train_after_replay(lake_dir, features, runs=1)
    return figures(replay["transfers"], replay["events"], replay, result,
                   f"vigie simulate --offline --seed 5 --users {users} --days {days}; "
                   "vigie bench --only train (1 run)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--features", type=Path, default=None,
                        help="replayed feature table; made (and timed) if missing")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true",
                        help="record the figures in bench/results.json and docs/benchmarks.md")
    parser.add_argument("--how", default="", help="how the lake was made, for the record")
    parser.add_argument("--replay-stats", type=Path, default=None,
                        help="what `vigie replay --out F` printed when it made --features")
    args = parser.parse_args()
    features = args.features or args.lake.parent / f"{args.lake.name}-features.parquet"
    replay = None if features.exists() else replay_to(args.lake, features)
    if replay is None and args.replay_stats:
        replay = json.loads(args.replay_stats.read_text())
        replay["total_s"] = replay["load_s"] + replay["replay_s"]
    result = train_after_replay(args.lake, features, args.runs)
    print(json.dumps({"replay": replay, **result}, indent=2, default=str))
    if args.write:
        transfers = pq.ParquetFile(features).metadata.num_rows
        report.write(figures(transfers, replay and replay["events"], replay,
                             result, f"{args.how}; python -m pipelines.bench.training --lake LAKE "
                             f"--runs {args.runs} --write (medians)"))
