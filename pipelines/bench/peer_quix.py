"""The peer, measured side by side (``vigie bench --only peer``): the two shapes of Faust's
pass-through bench written with Quix Streams, the Python stream library a user would most likely
pick instead, on the same broker in the same run:

- passthrough: topic -> topic, each record forwarded;
- state: one RocksDB state update per record (Quix's State, a counter per key).

150k records of 300 bytes over 4 partitions (10k keys), two rounds each on a fresh broker;
records/s and CPU µs a record (the Quix process's CPU time from its first record to the end of
its run, over the records), next to Faust's pass-through (``pipelines.bench.passthrough``)
measured in the same round, and Vigie's pipeline figure from bench/results.json as a ratio.

Quix Streams is no dependency of Vigie: 3.x pins confluent-kafka < 2.13, older than Vigie's, so
the bench installs it into its own venv (build/quix-venv) unless the running Python has it, and
runs the shapes there (``peer_quix_app``); without either it skips with the reason."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pipelines.bench.harness import cpu_seconds, fresh_environment, median, stop
from pipelines.bench.stream import _create, _preload, _rate_of_growth
from pipelines.contracts import settings
from pipelines.contracts.settings import REPO_ROOT

RECORDS = 150_000
ROUNDS = 2
QUIX_VENV = REPO_ROOT / "build" / "quix-venv"
QUIX_REQUIREMENT = "quixstreams>=3,<4"  # as the `bench` extra in pyproject.toml
APP = Path(__file__).with_name("peer_quix_app.py")
FAUST_COUNTER_CHANGELOG = "vigie-bench-counter-counts-changelog"  # faust_counter's table


def quix_python(install: bool = False) -> str | None:
    """The Python that runs Quix Streams: this one if it has it, else build/quix-venv's (made
    and filled when ``install``); None when there is none."""
    if importlib.util.find_spec("quixstreams") is not None:
        return sys.executable
    python = QUIX_VENV / "bin" / "python"
    if not python.exists() and install:
        print(f"bench: installing {QUIX_REQUIREMENT} into {QUIX_VENV} …", flush=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)])
        if made.returncode == 0:
            made = subprocess.run([str(python), "-m", "pip", "install", "-q", QUIX_REQUIREMENT])
        if made.returncode != 0:
            return None
    ok = python.exists() and subprocess.run([str(python), "-c", "import quixstreams"],
                                            capture_output=True).returncode == 0
    return str(python) if ok else None


def run_quix(python: str, shape: str, records: int, source: str, sink: str, workdir: Path,
             timeout_s: float = 600) -> dict:
    """One run of a shape as the current Kafka principal, in its own consumer group and state
    dir; the app's own figures plus records/s and CPU µs a record."""
    kafka = settings.load().kafka
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "QUIX_SECURITY_PROTOCOL": kafka.security_protocol.lower(),
           "QUIX_SASL_MECHANISM": kafka.sasl_mechanism or "",
           "QUIX_SASL_USERNAME": kafka.sasl_username or "",
           "QUIX_SASL_PASSWORD": kafka.password() or ""}
    group = f"bench-quix-{shape}-{time.time_ns()}"
    spec = {"shape": shape, "records": records, "source": source, "sink": sink, "group": group,
            "state_dir": str(workdir / group)}
    done = subprocess.run([python, "-P", str(APP), json.dumps(spec)], env=env, cwd=workdir,
                          capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"Quix Streams {shape} failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {**out, "events_per_s": records / out["wall_s"],
            "cpu_us_per_event": out["cpu_s"] / records * 1e6}


def run_faust(root: Path, module: str, grows: str, records: int) -> dict:
    """A Faust shape (``pipelines.bench.<module>``, reading bench-src) on the current broker,
    timed as the stream bench times its pass-through: by the growth of ``grows``."""
    proc = subprocess.Popen([sys.executable, "-m", f"pipelines.bench.{module}", "worker"],
                            cwd=REPO_ROOT, stdout=open(root / f"{module}.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy())
    try:
        time.sleep(2)
        cpu_before = cpu_seconds(proc.pid)
        rate = _rate_of_growth(grows, records)
        cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        stop(proc)
    return {"events_per_s": rate, "cpu_us_per_event": cpu / records * 1e6}


def one_round(python: str, root: Path, records: int) -> dict:
    """On a fresh broker: preload bench-src, then Faust's two shapes and Quix's two, each
    reading all of it."""
    asyncio.run(_create("bench-src", "bench-dst", "bench-dst-quix"))
    asyncio.run(_preload("bench-src", records))
    return {"faust_passthrough": run_faust(root, "passthrough", "bench-dst", records),
            "faust_state_write": run_faust(root, "faust_counter", FAUST_COUNTER_CHANGELOG,
                                           records),
            "quix_passthrough": run_quix(python, "passthrough", records, "bench-src",
                                         "bench-dst-quix", root),
            "quix_state_write": run_quix(python, "state", records, "bench-src", "", root)}


def pipeline_reference(results: dict | None = None) -> dict:
    """Vigie's pipeline figures and when they were measured: from this ``vigie bench`` run when
    it measured them, else as the stream bench last recorded them (bench/results.json, dated
    by the newest docs/benchmarks.md section that holds the figure)."""
    if results and results.get("pipeline_cpu_us_per_event"):
        return {**results, "measured": "this run"}
    path = REPO_ROOT / "bench" / "results.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    doc = REPO_ROOT / "docs" / "benchmarks.md"
    measured, section = "unknown", ""
    for line in doc.read_text().splitlines() if doc.exists() else ():
        if line.startswith("## "):
            section = line[3:]
        elif line.startswith("| pipeline_cpu_us_per_event |"):
            measured = section
    return {**recorded, "measured": measured}


def run(records: int = RECORDS, rounds: int = ROUNDS, pipeline: dict | None = None) -> dict:
    """``pipeline``: this bench run's figures so far (the stream bench's, when it ran)."""
    python = quix_python(install=True)
    if python is None:
        print(f"bench: peer skipped: Quix Streams is not installed here and {QUIX_VENV} could "
              f"not be made (pip install '{QUIX_REQUIREMENT}' into a venv of its own: it pins an "
              "older confluent-kafka than Vigie's)", flush=True)
        return {"peer_quix_skipped": "quixstreams not installed"}
    runs = []
    for i in range(rounds):
        print(f"bench: peer round {i + 1}/{rounds} …", flush=True)
        with fresh_environment(partitions=4) as (_broker, root):
            runs.append(one_round(python, root, records))
        print(runs[-1], flush=True)
    results = {"peer_records": records, "peer_rounds": rounds, "peer_quix_skipped": None}
    for name in ("faust_passthrough", "faust_state_write", "quix_passthrough", "quix_state_write"):
        prefix = f"peer_{name}" if name.startswith("quix") else f"peer_round_{name}"
        for figure in ("events_per_s", "cpu_us_per_event"):
            results[f"{prefix}_{figure}"] = median(r[name][figure] for r in runs)
            results[f"{prefix}_{figure}_runs"] = [round(r[name][figure], 1) for r in runs]
    results["peer_quix_version"] = subprocess.run(
        [python, "-c", "import quixstreams; print(quixstreams.__version__)"],
        capture_output=True, text=True).stdout.strip()
    results.update(_ratios(results, pipeline_reference(pipeline)))
    return results


def _ratios(results: dict, pipeline: dict) -> dict:
    """How far Vigie is from the peer: Faust's shapes and Vigie's pipeline against Quix's, in
    CPU a record (higher: Vigie costs that many times more)."""
    shapes = ("passthrough", "state_write")
    cpu_of = {shape: results[f"peer_quix_{shape}_cpu_us_per_event"] for shape in shapes}
    out = {f"ratio_faust_{shape}_cpu_to_quix_{shape}":
           results[f"peer_round_faust_{shape}_cpu_us_per_event"] / cpu_of[shape]
           for shape in shapes}
    if pipeline.get("pipeline_cpu_us_per_event"):
        cpu = pipeline["pipeline_cpu_us_per_event"]
        out.update(
            peer_pipeline_cpu_us_per_event=cpu,
            peer_pipeline_measured=pipeline["measured"],
            ratio_pipeline_cpu_to_quix_passthrough=cpu / cpu_of["passthrough"],
            ratio_pipeline_cpu_to_quix_state_write=cpu / cpu_of["state_write"],
            ratio_pipeline_events_per_s_to_quix_state_write=(
                pipeline["pipeline_events_per_s"] / results["peer_quix_state_write_events_per_s"]))
    if pipeline.get("ceiling_faust_passthrough_cpu_us_per_event"):
        # When the pipeline was measured in another run (or on another machine), Faust's
        # pass-through, measured in both runs, carries the ratio across: pipeline / Faust there,
        # times Faust / Quix here.
        out["ratio_pipeline_cpu_to_quix_state_write_via_faust"] = (
            pipeline["pipeline_cpu_us_per_event"]
            / pipeline["ceiling_faust_passthrough_cpu_us_per_event"]
            * results["peer_round_faust_passthrough_cpu_us_per_event"] / cpu_of["state_write"])
    return out
