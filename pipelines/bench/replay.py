"""The replay benchmark: events/s of the feature replay, and the serialised size of the states
at the end, on a synthetic log of messenger life (``pipelines.simulator.events``) or a lake.

    python -m pipelines.bench.replay [--accounts 1000] [--days 14] [--workers 2]
    python -m pipelines.bench.replay --lake DIR [--workers 2]   # a lake written by ``vigie simulate``
"""
from __future__ import annotations

import argparse
import statistics
import time

from features.replay import replay
from features.routing import event_time, order_key
from features.windows import WEEK
from pipelines.lake.event_log import read_log
from pipelines.simulator.events import synthetic_log


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--lake", help="replay the feature topics of this lake instead")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if args.lake:
        events = read_log(args.lake)
    else:
        events = synthetic_log(args.accounts, args.days)
    for k, v in measure(events, args.workers).items():
        print(f"{k:>22}: {v}")


if __name__ == "__main__":
    main()
