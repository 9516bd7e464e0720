"""Write benchmark results: bench/results.json (machine-readable) and a table appended to
docs/benchmarks.md (human-readable history)."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess

from pipelines.contracts.settings import REPO_ROOT


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores {cpu}, {mem_gib:.0f} GiB, {platform.system()} {platform.release()}"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def write(results: dict) -> dict:
    results = {**results, "machine": machine(),
               "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "commit": _commit()}
    out = REPO_ROOT / "bench" / "results.json"
    out.parent.mkdir(exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    merged = {**previous, **results}  # a partial run (--only) keeps the other figures
    out.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    doc = REPO_ROOT / "docs" / "benchmarks.md"
    doc.parent.mkdir(exist_ok=True)
    if not doc.exists():
        doc.write_text("# Benchmarks\n\nAppended by `make bench` (`vigie bench`); newest last. "
                       "Medians of repeated runs on a shared 2-core machine: compare ratios, not "
                       "absolute numbers.\n")
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in sorted(results.items())
                     if not isinstance(v, (list, dict)) and v is not None)  # None: retired
    with doc.open("a") as fh:
        fh.write(f"\n## {results['date']} (commit {results['commit']})\n\n| figure | value |\n"
                 f"|---|---|\n{rows}\n")
    return merged


def _fmt(value) -> str:
    return f"{value:,.3f}" if isinstance(value, float) else str(value)
