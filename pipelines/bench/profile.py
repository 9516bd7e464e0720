"""Where the worker's CPU goes: a py-spy profile of ``vigie worker`` grouped by stage.

Record (py-spy samples the running processes from outside: no instrumentation, a few % of
overhead, where cProfile doubles the cost of every Python call)::

    VIGIE_DEMO=1 py-spy record -s -r 200 -f raw -o /tmp/worker.txt -- .venv/bin/python -c \\
        "from pipelines.bench import stream; stream.pipeline(users=3000, days=2, latency_rates=())"
    .venv/bin/python -m pipelines.bench.profile /tmp/worker.txt

The samples of threads waiting (epoll, a thread pool's queue) are counted apart, as idle.
``pip install -e '.[profile]'`` installs py-spy.
"""
from __future__ import annotations

import re
import sys
from collections import Counter

# A sample belongs to the stage of its outermost Vigie frame (a stage's code calls features,
# Faust and aiokafka; the ingest's routing calls the entity stage's bundler) ...
STAGES = (
    ("ingest", "pipelines/stream/ingest.py"),
    ("entity stage", "pipelines/stream/entities.py"),
    ("decide stage", "pipelines/stream/decide.py"),
    ("recovery stage", "pipelines/recovery/"),
)
DETAIL = {"entity stage": (("apply (features)", "EntityStage.apply ("),
                           ("state writes", "EntityStage.write_states ("))}
# ... and one with none to the library it is in: Faust's and aiokafka's own tasks and threads.
LIBRARIES = (
    ("Faust: producer buffer", "faust/transport/producer.py"),
    ("Faust: consumer", "faust/transport/consumer.py"),
    ("Faust: the rest", "faust/"),
    ("aiokafka: producer", "aiokafka/producer"),
    ("aiokafka: consumer", "aiokafka/consumer"),
    ("aiokafka: the rest", "aiokafka/"),
    ("asyncio, sockets", "asyncio/"),
)
STARTUP = ("_find_and_load (", "_call_with_frames_removed (")  # importing a module
IDLE = ("EpollSelector.select (", "_worker (concurrent/futures/thread.py")
_SAMPLE = re.compile(r"(process .*?) (\d+)\n(?=process |\Z)", re.S)


def stage_of(frames: list[str]) -> str:
    if any(f.startswith(STARTUP) for f in frames):
        return "start-up: imports"
    for frame in frames:
        for name, mark in STAGES:
            if mark in frame:
                detail = next((d for d, m in DETAIL.get(name, ()) if any(m in f for f in frames)),
                              "the rest" if name in DETAIL else None)
                return f"{name}: {detail}" if detail else name
    stack = ";".join(frames)
    return next((name for name, mark in LIBRARIES if mark in stack), "other")


def stages(raw: str, process: str = "worker") -> Counter:
    """Samples per stage of the processes whose command line ends with ``process``."""
    counts: Counter = Counter()
    for stack, n in _SAMPLE.findall(raw):
        frames = stack.split(";")
        if not any(f.startswith("process ") and f.rstrip('"').endswith(process)
                   for f in frames):
            continue
        if frames[-1].startswith(IDLE):
            counts["idle"] += int(n)
        else:
            counts[stage_of(frames)] += int(n)
    return counts


def main(path: str) -> None:
    counts = stages(open(path).read())
    busy = sum(n for name, n in counts.items() if name != "idle")
    print(f"{busy} busy samples ({counts['idle']} idle)")
    for name, n in counts.most_common():
        if name != "idle":
            print(f"{n:7d} {n / busy:6.1%}  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
