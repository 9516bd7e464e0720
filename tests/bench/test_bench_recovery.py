"""``vigie bench --only recovery`` puts the account-recovery figures (time to contain p50/p95,
money saved vs lost, false locks) in bench/results.json and docs/benchmarks.md. The measure
itself is tested on a hand-built takeover (tests/recovery/test_recovery_cases.py); here the
simulated month is replaced by a canned result of the same shape, and the files go to a
temporary repository root."""
from __future__ import annotations

import json

from click.testing import CliRunner

from pipelines.bench import recovery, report
from pipelines.cli.bench import bench

MEASURED = {"users": 2000, "days": 30, "seed": 7, "takeovers": 11, "contained": 10,
            "time_to_contain_s": {"p50": 14.867, "p95": 116.4, "max": 116.4},
            "fraud_transfers": 29, "saved_eur_per_takeover": 1037.27,
            "lost_eur_per_takeover": 194.55, "saved_share": 0.8421, "false_locks": 264,
            "false_locks_by_reason": {"new_device_and_new_country": 187},
            "legit_device_changes": 2486, "false_lock_rate_per_device_change": 0.1062,
            "accounts": 3419, "false_locks_per_1000_accounts_month": 39.974,
            "latency_ms_added": recovery.BENCH_LATENCY_MS}


def test_vigie_bench_writes_the_recovery_figures(tmp_path, monkeypatch):
    asked = []

    def simulated_month(users, days, seed, latency_ms):
        asked.append((users, days, seed, latency_ms))
        return MEASURED

    monkeypatch.setattr(recovery, "run", simulated_month)
    monkeypatch.setattr(report, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(report, "_commit", lambda: "test")
    result = CliRunner().invoke(bench, ["--only", "recovery"])
    assert result.exit_code == 0, result.output
    assert asked == [(2000, 30, 7, recovery.BENCH_LATENCY_MS)]

    saved = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert saved["recovery_time_to_contain_p50_s"] == 14.867
    assert saved["recovery_time_to_contain_p95_s"] == 116.4
    assert saved["recovery_saved_eur_per_takeover"] == 1037.27
    assert saved["recovery_lost_eur_per_takeover"] == 194.55
    assert saved["recovery_false_lock_rate_per_device_change"] == 0.1062
    page = (tmp_path / "docs" / "benchmarks.md").read_text()
    for row in ("| recovery_time_to_contain_p50_s | 14.867 |",
                "| recovery_time_to_contain_p95_s | 116.400 |",
                "| recovery_saved_eur_per_takeover | 1,037.270 |",
                "| recovery_lost_eur_per_takeover | 194.550 |",
                "| recovery_false_locks_per_1000_accounts_month | 39.974 |"):
        assert row in page, page
