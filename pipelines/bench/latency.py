"""Decision latency against offered load (``vigie bench --only latency``): one worker, the
simulator's traffic at 100 to 1,000 transfers/s with their messages and account events,
event times re-stamped to the wall clock; p50/p95/p99 from a transfer's event time to its
decision, each rate measured ``ROUNDS`` times on a fresh broker (medians, and every run), and
where it goes hop by hop (``hops``).
Target: p99 <= 250 ms at 500 transfers/s on one worker; ``latency_target_met_up_to_tps`` is
the highest rate of the sweep up to which every rate met it (a worker's capacity at that latency,
what sizes a deployment). ``SCALE_OUT`` is the same at 500
transfers/s on two workers (adding a worker is the scale-out story; here both share the machine
with the broker and the load generator). The measurement itself is the stream bench's
(``stream._latency_at``); this module sweeps the rates."""
from __future__ import annotations

from pipelines.bench import hops
from pipelines.bench.harness import median
from pipelines.bench.stream import TOPIC_OF, _latency_at, _simulated_log

RATES = (100.0, 200.0, 300.0, 500.0, 1000.0)
TARGET_P99_MS = 250.0
ROUNDS = 2
SCALE_OUT = {"rates": (500.0,), "workers": 2}
FIGURES = ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "latency_decided_share",
           "latency_offered_events_per_s",
           # the CPU an input event of the worker, and of what shares its two cores here
           *(f"latency_{who}_cpu_us_per_event" for who in ("worker", "broker", "generator")),
           "latency_machine_demand",  # their CPU at the offered rate, a share of the cores
           *(f"latency_hop_{hop}_ms_{q}" for hop in hops.HOPS for q in ("p50", "p99")),
           *(f"latency_point_{point}_ms_{q}" for point in hops.POINTS for q in ("p50", "p99")))


def run(rates=RATES, rounds: int = ROUNDS, users: int = 8000, days: float = 4.0,
        workers: int = 1) -> dict:
    events = [e for e in _simulated_log(users, days) if type(e) in TOPIC_OF]
    results: dict = {"latency_rounds": rounds}
    for rate in rates:
        tag = f"{int(rate)}_tps" + (f"_{workers}_workers" if workers > 1 else "")
        runs = []
        for i in range(rounds):
            print(f"bench: latency at {tag}, round {i + 1}/{rounds} …", flush=True)
            runs.append(_latency_at(events, rate, workers=workers))
            print(runs[-1], flush=True)
        measured = [r for r in runs if f"latency_ms_p50_at_{tag}" in r]
        if not measured:
            results[f"latency_at_{tag}_error"] = "no decisions"
            continue
        for figure in FIGURES:
            key = f"{figure}_at_{tag}"
            if not all(key in r for r in measured):  # a hop no transfer crossed in a run
                continue
            results[key] = median(r[key] for r in measured)
            results[f"{key}_runs"] = [round(r[key], 3) for r in measured]
    if "latency_ms_p99_at_500_tps" in results:
        results["latency_p99_target_met_at_500_tps"] = \
            results["latency_ms_p99_at_500_tps"] <= TARGET_P99_MS
    if workers == 1:
        results["latency_target_met_up_to_tps"] = met_up_to(
            {rate: results.get(f"latency_ms_p99_at_{int(rate)}_tps") for rate in rates})
    return results


def met_up_to(p99_by_rate: dict[float, float | None], target_ms: float = TARGET_P99_MS) -> float:
    """The highest rate up to which every swept rate's p99 met ``target_ms`` (0: not the lowest;
    a rate without a figure ends the run of rates met).

    >>> met_up_to({100.0: 210, 200.0: 224, 300.0: 248, 500.0: 596, 1000.0: 23_485})
    300.0
    >>> met_up_to({100.0: 270, 500.0: 240})
    0.0
    """
    met = 0.0
    for rate in sorted(p99_by_rate):
        p99 = p99_by_rate[rate]
        if p99 is None or p99 > target_ms:
            break
        met = rate
    return met
