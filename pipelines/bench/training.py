"""``vigie bench --only train``: how long ``vigie train`` takes, replay and training apart.

Simulates a lake offline (``VIGIE_BENCH_TRAIN_USERS`` users for ``VIGIE_BENCH_TRAIN_DAYS`` days;
default 10,000 for 14 days, ~90k transfers and ~1.4M events with their messages and account
events), then times separately:

- ``replay``: reading the log and replaying it through the feature code (point-in-time set);
- ``validate``: the training table's Great Expectations suite;
- ``fit``: LightGBM with early stopping (the target: <= 60 s for 1M transfers after replay);
- ``card``: evaluation report and plots.

The per-1M figures are linear extrapolations (replay is linear in events; LightGBM's histogram
training is linear in rows for a fixed number of rounds), reported with the measured size.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def run(users: int | None = None, days: float | None = None) -> dict:
    from models.datasets import training_set
    from models.lifecycle import train_validated
    from pipelines.simulator.offline import run_offline

    users = users or int(os.environ.get("VIGIE_BENCH_TRAIN_USERS", 10_000))
    days = days or float(os.environ.get("VIGIE_BENCH_TRAIN_DAYS", 14))
    with tempfile.TemporaryDirectory(prefix="vigie-bench-train-") as tmp:
        lake_dir, root = Path(tmp) / "lake", Path(tmp) / "models"
        print(f"bench: train: simulating {users} users x {days} days …", flush=True)
        sim = run_offline(lake_dir, seed=5, users=users, days=days)
        started = time.perf_counter()
        table, stats = training_set(lake_dir)
        replay_s = time.perf_counter() - started
        print(f"bench: train: {len(table)} transfers from {stats['events']} events, "
              f"replayed in {replay_s:.1f}s; training …", flush=True)
        started = time.perf_counter()
        result = train_validated(table, stats, root=root, progress=False)
        total_s = time.perf_counter() - started
    n = len(table)
    per_1m = 1_000_000 / n
    train_s = result["train_s"]
    return {
        "train_bench_transfers": n,
        "train_bench_events": stats["events"],
        "train_bench_frauds": result["frauds"],
        "train_bench_sim_s": sim["seconds"],
        "train_replay_s": replay_s,
        "train_replay_load_s": stats["load_s"],
        "train_replay_features_s": stats["replay_s"],
        "train_validate_s": result.get("validate_s", 0.0),
        "train_fit_s": train_s,
        "train_card_s": result.get("card_s", 0.0),
        "train_after_replay_s": total_s,
        "train_best_iteration": result["best_iteration"],
        "train_rounds": result["best_iteration"] + 50,
        "train_test_pr_auc": result["test_pr_auc"],
        "replay_s_per_1m_transfers": replay_s * per_1m,
        "train_s_per_1m_transfers": train_s * per_1m,
        "train_after_replay_s_per_1m_transfers": total_s * per_1m,
    }


if __name__ == "__main__":
    import json
    import sys

    args = [float(a) for a in sys.argv[1:3]]
    print(json.dumps(run(int(args[0]) if args else None, args[1] if len(args) > 1 else None),
                     indent=2))
