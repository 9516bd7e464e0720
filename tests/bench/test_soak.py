"""The soak benchmark's figure: a least-squares RSS slope in MB/h, taken after the warm-up (the
run itself is a benchmark, `vigie bench --only soak`, never a test)."""
from __future__ import annotations

import pytest

from pipelines.bench.soak import gauges_mb, part_summary, slope_mb_per_h, summarise


def test_slope_of_a_steady_climb_is_its_rate_an_hour():
    # 3 MB every 30 s is 360 MB/h, whatever the offset
    points = [(t, 400 + 3 * t / 30) for t in range(0, 1800, 30)]
    assert slope_mb_per_h(points) == pytest.approx(360)


def test_the_warm_up_is_left_out_of_the_slope():
    # a model loading (steps up over the first 10 min), then flat with noise around 500 MB
    warm = [(t, 100 + 400 * t / 600) for t in range(0, 600, 30)]
    flat = [(t, 500 + (4 if (t // 30) % 2 else -4)) for t in range(600, 3600, 30)]
    points = warm + flat
    assert slope_mb_per_h(points) > 100  # from the start, the warm-up dominates
    assert abs(slope_mb_per_h(points, start_s=600)) < 2


def test_steps_are_a_slope_and_the_end_bounds_the_window():
    # +20 MB every 10 min for the first hour (120 MB/h in steps), then a burst climbing fast
    steady = [(t, 475 + 20 * (t // 600)) for t in range(0, 3600, 30)]
    burst = [(t, 600 + (t - 3600) / 10) for t in range(3600, 4200, 30)]
    assert slope_mb_per_h(steady + burst, 600, 3599) == pytest.approx(120, rel=0.1)
    assert slope_mb_per_h(steady + burst, 3600, 4200) == pytest.approx(360)


def test_too_few_points_give_no_slope():
    assert slope_mb_per_h([(0, 1), (30, 2)]) is None
    assert slope_mb_per_h([(t, t) for t in range(0, 300, 30)], start_s=1000) is None


def test_summary_per_process_by_phase():
    # (seconds, MB, CPU seconds): the worker grows 60 MB/h after a 2-minute warm-up at half a core
    series = {"worker": [(t, 300 + (0 if t < 120 else t / 60), t / 2) for t in range(0, 960, 30)]}
    summary = summarise(series, steady_s=600, warmup_s=120, end_s=930)["worker"]
    assert summary["steady_slope_mb_per_h"] == pytest.approx(60, abs=0.5)
    assert summary["cpu_pct_steady"] == pytest.approx(50)
    assert summary["rss_mb_first"] == 300 and summary["rss_mb_end_steady"] == 310
    assert summary["rss_mb_every_5_min"] == [300, 305, 310, 315]


def test_the_workers_bounded_parts_are_read_from_its_metrics_page():
    page = ('# TYPE vigie_rocksdb_memory_bytes gauge\n'
            'vigie_rocksdb_memory_bytes{kind="memtables"} 1.1554816e+07\n'
            'vigie_rocksdb_memory_bytes{kind="cache"} 1.3373868e+07\n'
            'vigie_state_cache{measure="states"} 2900.0\n'
            'vigie_state_cache{measure="stored_bytes"} 4.5e+06\n')
    assert gauges_mb(page) == pytest.approx({"rocksdb": 13.373868, "state_cache_stored": 4.5})
    assert gauges_mb("process_resident_memory_bytes 4e8\n") == {}  # no table opened yet


def test_each_part_is_summarised_as_the_worker_is():
    # RocksDB fills at 12 MB/h over the hour; the cache, after a step in the warm-up, is flat
    parts = {"rocksdb": [(t, 10 + 12 * t / 3600) for t in range(0, 3600, 30)],
             "state_cache_stored": [(t, 1 if t < 300 else 5) for t in range(0, 3600, 30)]}
    summary = part_summary(parts, steady_s=3600, warmup_s=600)
    assert summary["rocksdb"]["steady_slope_mb_per_h"] == pytest.approx(12)
    assert summary["rocksdb"]["mb_after_warmup"] == 12.0
    assert summary["state_cache_stored"] == {"mb_after_warmup": 5, "mb_end_steady": 5,
                                             "steady_slope_mb_per_h": 0.0}
    assert part_summary({}, 3600, 600) == {}  # the worker's page never answered
