"""The replay benchmarks.

1. ``measure``: events/s of the feature replay, and the serialised size of the states at the
   end, on a synthetic log of messenger life (``pipelines.simulator.events``) or a lake held in
   memory::

       python -m pipelines.bench.replay [--accounts 1000] [--days 14] [--workers 2]
       python -m pipelines.bench.replay --lake DIR [--workers 2]

2. ``streamed``: ``vigie replay --out`` (the lake streamed by event time, the table written
   chunk by chunk) on a lake of at least 1M transfers, in a process of its own, twice: events/s
   and the peak RSS of that process and its children (a sharded replay's shards), sampled by
   psutil. The same run measures the reference beside it: a small lake replayed the same way
   and held whole in memory (the replay before streaming), so that peak memory can be compared
   across lake sizes and paths::

       python -m pipelines.bench.replay --streamed --lake BIG [--small SMALL] [--write]
       vigie bench --only replay      # simulates the lakes first (VIGIE_BENCH_REPLAY_USERS/DAYS)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from features.replay import replay
from features.routing import event_time, order_key
from features.windows import WEEK
from pipelines.lake.event_log import read_log
from pipelines.simulator.events import synthetic_log

RUNS = 2
SAMPLE_S = 0.1  # how often the peak RSS of the replay's processes is sampled


def measure(events: list, workers: int = 1) -> dict:
    """Replay speed (best of two) and the serialised size of the states at the end."""
    events = sorted(events, key=order_key)
    elapsed = min(_timed(lambda: sum(1 for _ in replay(events, presorted=True, workers=workers)))
                  for _ in range(2))
    states: dict = {}
    transfers = sum(1 for _ in replay(events, states=states, presorted=True))
    last_week = max(e.ts for e in events if event_time(e) == e.ts) - WEEK
    active = sorted(len(st.to_bytes()) for (kind, _), st in states.items()
                    if kind == "account" and st.base + st.last > last_week)
    by_kind: dict = {}
    for (kind, _), st in states.items():
        by_kind.setdefault(kind, []).append(len(st.to_bytes()))
    return {"events": len(events), "transfers": transfers, "workers": workers,
            "seconds": round(elapsed, 3), "events_per_s": round(len(events) / elapsed),
            "active_account_bytes": {"mean": round(statistics.mean(active)),
                                     "median": statistics.median(active),
                                     "p90": active[int(0.9 * len(active))], "max": active[-1]},
            "mean_bytes_by_kind": {k: round(statistics.mean(v)) for k, v in by_kind.items()}}


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


# --- 2. the streamed replay of a big lake, in its own process -------------------------------
def one_run(lake: Path, path: str, workers: int) -> dict:
    """One replay of ``lake`` in a child process (``path``: "streamed", as ``vigie replay
    --out``, or "in_memory", the whole log read first): its stats, wall time, peak RSS."""
    with tempfile.TemporaryDirectory(prefix="vigie-bench-replay-") as tmp:
        stats_file = Path(tmp) / "stats.json"
        started = time.perf_counter()
        proc = psutil.Popen([sys.executable, "-m", "pipelines.bench.replay", "--child", path,
                             "--lake", str(lake), "--workers", str(workers),
                             "--out", str(Path(tmp) / "features.parquet"),
                             "--stats", str(stats_file)])
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc))
            time.sleep(SAMPLE_S)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"the {path} replay of {lake} failed ({proc.returncode})")
        stats = json.loads(stats_file.read_text())
    stats.update(wall_s=wall, peak_rss_mb=max(peak, stats["own_peak_rss_mb"] * 2**20) / 2**20)
    print(f"bench: replay: {path} workers={workers} {stats['transfers']:,} transfers "
          f"{stats['events']:,} events: {wall:.1f} s, {stats['events'] / wall:,.0f} events/s, "
          f"peak RSS {stats['peak_rss_mb']:,.0f} MB", flush=True)
    return stats


def _tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and all its descendants, summed (pages a fork shares count twice: an
    upper bound)."""
    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            total += p.memory_info().rss
    except psutil.NoSuchProcess:
        pass  # ended between the listing and the reading
    return total


def _child(path: str, lake: Path, workers: int, out: Path, stats_file: Path) -> None:
    """The measured process: the replay, then its stats (and its own peak RSS) as JSON."""
    import resource

    if path == "streamed":
        from models.tables import write_features

        stats = write_features(lake, out, workers=workers, progress=True)  # on stderr
    else:
        events = read_log(lake)
        stats = {"events": len(events),
                 "transfers": sum(1 for _ in replay(events, presorted=True, workers=workers))}
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    stats_file.write_text(json.dumps({**stats, "own_peak_rss_mb": own / 1024}))


def streamed(big: Path, small: Path, workers: int = 1, runs: int = RUNS,
             concurrent: bool = False) -> dict:
    """The figures of issue 12 on ``big`` (>= 1M transfers), with the small lake's beside them:
    streamed and held in memory. Medians of ``runs`` runs. ``concurrent``: the big lake's runs
    at the same time (a busy shared machine: their wall time once, not ``runs`` times; each
    run's events/s then bears the other's load, its peak RSS is its own)."""
    rows: dict = {"small": [], "small_in_memory": []}
    for _ in range(runs):
        rows["small"].append(one_run(small, "streamed", workers))
        rows["small_in_memory"].append(one_run(small, "in_memory", workers))
    if concurrent:
        with ThreadPoolExecutor(runs) as pool:  # each run is a child process: threads wait
            rows["big"] = list(pool.map(lambda _: one_run(big, "streamed", workers), range(runs)))
    else:
        rows["big"] = [one_run(big, "streamed", workers) for _ in range(runs)]

    def med(key, what):
        return statistics.median(r[what] if what != "events_per_s" else r["events"] / r["wall_s"]
                                 for r in rows[key])

    big_transfers, small_transfers = rows["big"][0]["transfers"], rows["small"][0]["transfers"]
    # the two figures are named for a lake of >= 1M transfers: a smaller lake's are
    # recorded under other names, as measured (never scaled)
    rate, rss = (("replay_events_per_s_1m_transfers", "replay_peak_rss_mb_per_1m_transfers")
                 if big_transfers >= 1_000_000 else
                 ("replay_events_per_s_lake_under_1m", "replay_peak_rss_mb_lake_under_1m"))
    return {
        rate: round(med("big", "events_per_s")), rss: round(med("big", "peak_rss_mb")),
        "replay_streamed_lake_transfers": big_transfers,
        "replay_streamed_lake_events": rows["big"][0]["events"],
        "replay_streamed_workers": workers, "replay_streamed_runs": runs,
        "replay_streamed_runs_concurrent": concurrent,
        "replay_streamed_s": round(med("big", "wall_s"), 1),
        "replay_streamed_small_lake_transfers": small_transfers,
        "replay_streamed_small_events_per_s": round(med("small", "events_per_s")),
        "replay_streamed_small_peak_rss_mb": round(med("small", "peak_rss_mb")),
        "replay_in_memory_small_events_per_s": round(med("small_in_memory", "events_per_s")),
        "replay_in_memory_small_peak_rss_mb": round(med("small_in_memory", "peak_rss_mb")),
        "replay_peak_rss_ratio_big_to_small_lake": round(
            med("big", "peak_rss_mb") / med("small", "peak_rss_mb"), 2),
        "replay_streamed_all_events_per_s": [round(r["events"] / r["wall_s"])
                                             for r in rows["big"]],
        "replay_streamed_all_peak_rss_mb": [round(r["peak_rss_mb"]) for r in rows["big"]],
    }


def run() -> dict:
    """``vigie bench --only replay``: simulate the lakes (``VIGIE_BENCH_REPLAY_USERS`` x
    ``VIGIE_BENCH_REPLAY_DAYS``, default 100,000 x 15: ~1M transfers; or reuse
    ``VIGIE_BENCH_REPLAY_LAKE``), then ``streamed``."""
    from pipelines.contracts import settings
    from pipelines.simulator.offline import run_offline

    users = settings.environment().offline.bench_replay_users
    days = settings.environment().offline.bench_replay_days
    workers = settings.environment().offline.bench_replay_workers
    with tempfile.TemporaryDirectory(prefix="vigie-bench-replay-") as tmp:
        small = Path(tmp) / "small"
        run_offline(small, seed=5, users=2_000, days=15)
        big = settings.environment().offline.bench_replay_lake
        how = f"lake {big}" if big else \
            f"vigie simulate --offline --seed 5 --users {users} --days {days}"
        if not big:
            big = Path(tmp) / "big"
            print(f"bench: replay: simulating {users} users x {days} days …", flush=True)
            run_offline(big, seed=5, users=users, days=days)
        return {**streamed(Path(big), small, workers),
                "replay_streamed_lake": f"{how}; small lake: --seed 5 --users 2000 --days 15"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--lake", type=Path, help="replay the feature topics of this lake instead")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--streamed", action="store_true", help="2: the streamed replay of --lake")
    ap.add_argument("--small", type=Path, help="2: the small reference lake (default: simulated)")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--concurrent", action="store_true",
                    help="2: the big lake's runs at the same time (see streamed)")
    ap.add_argument("--how", default="", help="2: how the lakes were made, for the record")
    ap.add_argument("--write", action="store_true",
                    help="2: record the figures in bench/results.json and docs/benchmarks.md")
    ap.add_argument("--child", choices=["streamed", "in_memory"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _child(args.child, args.lake, args.workers, args.out, args.stats)
    if args.streamed:
        small = args.small
        if small is None:
            from pipelines.simulator.offline import run_offline

            small = Path(tempfile.mkdtemp(prefix="vigie-bench-replay-small-"))
            run_offline(small, seed=5, users=2_000, days=15)
        results = {**streamed(args.lake, small, args.workers, args.runs, args.concurrent),
                   "replay_streamed_lake": args.how or f"lake {args.lake}; small lake {small}"}
        print(json.dumps(results, indent=2))
        if args.write:
            from pipelines.bench import report

            report.write(results)
        return
    events = read_log(args.lake) if args.lake else synthetic_log(args.accounts, args.days)
    for k, v in measure(events, args.workers).items():
        print(f"{k:>22}: {v}")


if __name__ == "__main__":
    main()
