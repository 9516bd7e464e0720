"""Detection judged on histories Vigie did not write for it: the stock path against a baseline.

    vigie bench --only detection            # every dataset below, results to bench/results.json
    python -m pipelines.bench.detection --dataset transfers_only [--seed 7] [--days 35]

Each dataset (``DATASETS``: the simulation, its transfers-only export, the first simulator's
export) goes through ``vigie train --cutoff F`` then ``vigie evaluate --from F --to T --json``
on the last ``EVAL_DAYS`` days, as subprocesses: Vigie's model and the baseline, average
precision, ROC AUC and daily top-k precision. The datasets and why: docs/bench.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import duckdb

from pipelines.bench import report
from pipelines.contracts.settings import REPO_ROOT

DAY_MS = 86_400_000
EVAL_DAYS = 7
DAYS = 56  # eight weeks: with labels known about a week later and 14 days of maturity, the
# training slice still spans five weeks; the last week is judged
OLD_SIMULATOR_COMMIT = "d2df13c"  # the first simulator (2026-11-27)
DATASETS = ("simulation", "transfers_only", "old_simulator")
METRICS = ("average_precision", "roc_auc", "topk_daily_precision")


def _vigie(*args: str, env: dict, cwd: Path = REPO_ROOT, pythonpath: str | None = None) -> str:
    env = {**env, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "--log-level", "warning", *args],
                          cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"vigie {' '.join(args)} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return done.stdout


def _last_json(stdout: str) -> dict:
    """The JSON object a command prints last (progress lines may come before it)."""
    start = 0 if stdout.startswith("{") else stdout.rindex("\n{") + 1
    return json.loads(stdout[start:])


def export_history(lake: Path, out: Path) -> tuple[Path, Path]:
    """The lake as a payment provider's export: transfers.csv and labels.csv (one row per labelled
    transfer; an account-takeover window becomes one row per transfer its account sent inside
    it, as ``models.labels.takeover_rows`` reads it). The party is the label's judged account's side of the transfer."""
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{lake}/transfer-requests/*/*.parquet')")
    con.execute(f"CREATE VIEW l AS SELECT * FROM read_parquet('{lake}/labels/*/*.parquet')")
    transfers, labels = out / "transfers.csv", out / "labels.csv"
    con.execute(f"""COPY (SELECT DISTINCT transfer_id, ts, sender, recipient,
                          printf('%.2f', amount_cents / 100.0) AS amount, currency
                   FROM t ORDER BY ts) TO '{transfers}' (HEADER)""")
    kind = ("CASE WHEN l.kind = 'analyst_verdict' THEN CASE WHEN l.is_fraud THEN 'fraud' "
            "ELSE 'legit' END ELSE l.kind END")
    party = ("CASE WHEN l.account = t.sender THEN 'sender' WHEN l.account = t.recipient "
             "THEN 'recipient' ELSE 'unknown' END")
    con.execute(f"""COPY (
        SELECT DISTINCT t.transfer_id, {kind} AS kind, l.known_at, {party} AS party
        FROM l JOIN t ON l.transfer_id = t.transfer_id
        UNION
        SELECT DISTINCT t.transfer_id, 'ato_confirmed', l.known_at, 'sender'
        FROM l JOIN t ON l.account = t.sender
             AND t.ts BETWEEN coalesce(l.compromise_from_ts, l.ts)
                          AND coalesce(l.compromise_to_ts, l.known_at)
        WHERE l.kind = 'ato_confirmed' AND l.is_fraud
              AND (l.transfer_id IS NULL OR l.compromise_from_ts IS NOT NULL)
        ORDER BY known_at) TO '{labels}' (HEADER)""")
    return transfers, labels


def _old_simulator(root: Path) -> Path:
    """The repository's files at OLD_SIMULATOR_COMMIT, unpacked under ``root``."""
    tree = root / f"vigie-{OLD_SIMULATOR_COMMIT}"
    archive = subprocess.run(["git", "archive", OLD_SIMULATOR_COMMIT], cwd=REPO_ROOT,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def build(dataset: str, root: Path, seed: int, days: float, env: dict) -> Path:
    """The lake ``dataset`` is judged on."""
    lake = root / dataset / "lake"
    if dataset == "simulation":
        _vigie("simulate", "--offline", "--seed", str(seed), "--days", str(days),
               "--out", str(lake), env=env)
        return lake
    raw = root / dataset / "raw"
    if dataset == "transfers_only":
        _vigie("simulate", "--offline", "--seed", str(seed), "--days", str(days),
               "--out", str(raw), env=env)
    else:
        old = _old_simulator(root)
        _vigie("simulate", "--offline", "--seed", str(seed), "--days", str(days),
               "--out", str(raw), env=env, cwd=old, pythonpath=str(old))
    transfers, labels = export_history(raw, root / dataset / "export")
    _vigie("import", "--transfers", str(transfers), "--labels", str(labels), "--out", str(lake),
           env=env)
    return lake


def judge(lake: Path, env: dict) -> dict:
    """Train as of the evaluation window's start, evaluate on the window: Vigie vs baseline."""
    end = duckdb.connect().execute(
        f"SELECT max(ts) + 1 FROM read_parquet('{lake}/transfer-requests/*/*.parquet')").fetchone()[0]
    start = end - EVAL_DAYS * DAY_MS
    started = time.perf_counter()
    trained = _last_json(_vigie("train", "--lake", str(lake), "--cutoff", str(start),
                                "--no-progress", "--no-card", env=env))
    train_s = time.perf_counter() - started
    report = _last_json(_vigie("evaluate", "--events", str(lake), "--from", str(start),
                               "--to", str(end), "--model", trained["version"], "--json",
                               env=env))
    out = {"train_s": round(train_s, 1), "rounds": trained.get("best_iteration"),
           "train_rows": trained.get("rows"), "eval_transfers": report.get("transfers"),
           "eval_frauds": report.get("frauds")}
    for metric in METRICS:
        out[f"vigie_{metric}"] = report.get(metric)
        out[f"baseline_{metric}"] = (report.get("baseline") or {}).get(metric)
    return out


def run(datasets=DATASETS, seed: int = 7, days: float = DAYS) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="vigie-detection-") as tmp:
        root = Path(tmp)
        for dataset in datasets:
            env = {**os.environ, "VIGIE_DATA_DIR": str(root / dataset / "data")}
            figures = judge(build(dataset, root, seed, days, env), env)
            print(dataset, json.dumps(figures), flush=True)
            results.update({f"detection_{dataset}_{k}": v for k, v in figures.items()})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, action="append")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=float, default=DAYS)
    parser.add_argument("--write", action="store_true", help="Also write bench/results.json.")
    args = parser.parse_args()
    results = run(args.dataset or DATASETS, args.seed, args.days)
    if args.write:
        report.write(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
