"""A benchmark's fresh environment (a broker of its own, a data dir) leaves the processes' logs
behind, to look at, and takes its data with it: runs piled up gigabytes in /tmp."""
from __future__ import annotations

import shutil

from pipelines.bench.harness import fresh_environment


def test_a_fresh_environment_leaves_its_logs_not_its_data():
    with fresh_environment() as (_broker, root):
        data = root / "data"
        (root / "worker-1.log").write_text("a spawned process's output")
        (data / "logs").mkdir(parents=True, exist_ok=True)
        (data / "logs" / "worker.log").write_text("vigie run's logs")
        (data / "lake" / "messages").mkdir(parents=True)
        (data / "lake" / "messages" / "part-0.parquet").write_bytes(b"rows")
        assert (data / "secrets").is_dir()  # the demo's broker passwords, made at its start
        assert (root / "broker").is_dir()
    try:
        assert (root / "worker-1.log").read_text() == "a spawned process's output"
        assert (data / "logs" / "worker.log").exists()
        assert [p.name for p in data.iterdir()] == ["logs"]
        assert not (root / "broker").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
