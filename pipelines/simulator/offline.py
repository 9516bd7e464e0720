"""``vigie simulate --offline --out DIR``: the simulation on a simulated clock, as fast as it
goes, written as a Parquet lake (``pipelines.lake.parquet.connect(DIR)`` reads it).
``run_offline`` is deterministic: the same seed gives byte-identical files.

Its stats and the daily rhythm: docs/simulator.md#offline
"""
from __future__ import annotations

import datetime as dt
import heapq
import math
import random
import time
from pathlib import Path
from typing import Callable, Optional

from pipelines.lake.writer import LakeWriter
from pipelines.simulator import fraud, legit
from pipelines.simulator.offline_services import EventLog
from pipelines.simulator.timing import DAY, HOUR, OFFLINE
from pipelines.simulator.world import (LABEL_COMMANDS, CancelTransfer, Script, WarningFor, World,
                                       onboard)

EPOCH_MS = int(dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
SIGNUP_DAYS = 28  # the population's registrations are spread over the weeks before the epoch
DEFAULT_USERS = 4_000
DEFAULT_DAYS = 28.0  # four weeks: early victims' labels arrive while their scammers still run
# Relative activity by hour of the day, Paris time (UTC+1 in November).
_PARIS_HOURLY = (2, 1, .5, .3, .3, .5, 1.5, 3, 4, 4, 4, 5, 7, 6, 4, 4, 4, 5, 6, 7, 8, 7, 5, 3)
_UTC_HOURLY = _PARIS_HOURLY[1:] + _PARIS_HOURLY[:1]
_UTC_CUMULATIVE = [sum(_UTC_HOURLY[:h + 1]) for h in range(24)]
_HOURS = range(24)


class Scheduler:
    """Runs scripts on a simulated clock: a heap of (due time, sequence, script)."""

    def __init__(self, start_ms: int, end_ms: int):
        self.now_ms = start_ms
        self.end_ms = end_ms
        self._heap: list = []
        self._seq = 0

    def now(self) -> int:
        return self.now_ms

    def spawn(self, script: Script, delay_ms: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now_ms + delay_ms, self._seq, script))

    def run(self, handlers: dict) -> None:
        heap, pop, push, end = self._heap, heapq.heappop, heapq.heappush, self.end_ms
        while heap:
            due, _, script = pop(heap)
            self.now_ms = due
            result = None
            try:
                while True:
                    command = script.send(result)
                    kind = command.__class__
                    if kind is int:
                        break
                    if due >= end and kind not in LABEL_COMMANDS:
                        raise StopIteration  # past the end: only owed labels still arrive
                    result = handlers[kind](command)
            except StopIteration:
                script.close()
                continue
            self._seq += 1
            push(heap, (due + command, self._seq, script))


def _daily_offset(rng: random.Random) -> int:
    """A time of day (ms after midnight UTC) following the daily rhythm."""
    hour = rng.choices(_HOURS, cum_weights=_UTC_CUMULATIVE)[0]
    return hour * HOUR + rng.randrange(HOUR)


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _days(w: World, days: float) -> Script:
    """Each simulated day, schedule every member's episodes for that day."""
    end = w.now() + int(days * DAY)
    for _ in range(math.ceil(days)):
        day_start = w.now()
        for user in w.members:
            for _ in range(_poisson(w.rng, user.activity)):
                offset = _daily_offset(w.rng)
                if day_start + offset < end:
                    w.spawn(legit.episode(w, user), offset)
        yield DAY


def run_offline(out_dir: Path, seed: int = 7, users: int = DEFAULT_USERS, days: float = DEFAULT_DAYS,
                mix: Optional[dict] = None) -> dict:
    """Simulate and write the lake to ``out_dir``; returns counts and the measured speed
    (``simulate``'s stats)."""
    return simulate(out_dir, seed, users, days, mix)[0]


def simulate(out_dir: Path, seed: int = 7, users: int = DEFAULT_USERS, days: float = DEFAULT_DAYS,
             mix: Optional[dict] = None,
             warn: Optional[Callable[[WarningFor], Optional[str]]] = None) -> tuple[dict, World]:
    """Simulate and write the lake to ``out_dir``; returns counts and the measured speed, and
    the world (its ground truth: ``fraud_transfers``, ``deceived``, ``cancelled``).

    - ``seed``: the same seed gives byte-identical files (no wall clock, deterministic ids,
      one ``random.Random`` consumed in a deterministic order).
    - ``users``: the initial population; fraud adds its own accounts.
    - ``days``: simulated days of activity from 2026-11-01T00:00Z. The population signed up in
      the four weeks before (their registrations are in the lake too). Episodes still running
      at the end are cut, except for the labels they owe, which arrive after the end as they
      would (``known_at`` in the future of the activity, ``ts`` inside it).
    - ``mix``: scenario code -> cases per 1,000 users per simulated day (``fraud.DEFAULT_MIX``);
      every scenario with a positive rate gets at least one case, 0 turns it off.
    - ``warn``: a stand-in for the stream's in-chat warnings (tests): the warning code of a
      transfer, or None. Senders react to it (``reactions``) and a cancel is always in time;
      the lake keeps the request (an offline lake has no payment statuses). Default: nothing
      is warned, as nothing decides offline.
    """
    if users < 2 or days <= 0:
        raise ValueError("the simulation needs at least 2 users and a positive number of days")
    mix = fraud.check_mix(mix)
    started = time.perf_counter()
    start_ms = EPOCH_MS - SIGNUP_DAYS * DAY
    scheduler = Scheduler(start_ms, EPOCH_MS + int(days * DAY))
    world = World(seed, users, OFFLINE, scheduler.now, scheduler.spawn)
    writer = LakeWriter(Path(out_dir))
    log = EventLog(writer, scheduler.now, OFFLINE.availability_ms)
    if warn is not None:
        log.handlers[WarningFor] = warn
        log.handlers[CancelTransfer] = lambda command: True

    rng = world.rng
    for user in world.members + world.sleepers:  # registrations, in the weeks before the epoch
        world.spawn(onboard(world, user), rng.randrange(SIGNUP_DAYS) * DAY + _daily_offset(rng))
    activity_start = EPOCH_MS - start_ms
    world.spawn(_days(world, days), activity_start)
    for code, rate in mix.items():
        cases = max(1, round(rate * users / 1000 * days)) if rate > 0 else 0
        for _ in range(cases):
            world.spawn(fraud.start(world, code), activity_start + rng.randrange(int(days * DAY)))

    scheduler.run(log.handlers)
    writer.close()
    seconds = time.perf_counter() - started
    events = sum(writer.counts.values())
    labelled = dict.fromkeys(mix, 0)
    for transfer_id, code in world.fraud_transfers.items():
        labelled[code] += transfer_id in log.labelled_fraud
    by_scenario = {code: {**world.by_scenario.get(code, {}), "labelled_transfers": labelled[code],
                          "labels": log.labels_by_scenario.get(code, 0)} for code in mix}
    frauds = len(world.fraud_transfers)
    transfers = writer.counts["transfer-requests"]
    return {"events": events, "seconds": round(seconds, 3),
            "events_per_s": round(events / seconds) if seconds else None,
            "by_topic": dict(writer.counts), "by_scenario": by_scenario,
            "fraud": {"transfers": frauds, "share": round(frauds / transfers, 5) if transfers else None,
                      "labelled": sum(labelled.values()),
                      "legit_disputes": log.labels_by_scenario.get(legit.LEGIT_DISPUTE, 0) - log.cleared,
                      "cleared_by_analysts": log.cleared},
            "cancelled_after_warning": len(world.cancelled),
            "users": len(world.pop), "files": len(writer.files), "out": str(out_dir)}, world
