"""The metrics' documentation and the example Grafana dashboard name only metrics Vigie
exports, and every metric it exports is in docs/operations.md's table."""
from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from pipelines.contracts import metrics

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bvigie_[a-z_]+")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def families() -> set[str]:
    """The names of Vigie's metrics (a counter's without its ``_total``)."""
    return {family.name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)
            for family in m.describe()}


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_the_dashboard_queries_only_exported_metrics():
    dashboard = json.loads((ROOT / "docs/grafana/vigie.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in NAME.findall(expr)}
    assert used and {base(n) for n in used} <= families(), {base(n) for n in used} - families()


def test_every_metric_is_in_the_operations_table():
    page = (ROOT / "docs/operations.md").read_text()
    assert len(families()) >= 9
    for family in families():
        counter_name = f"`{family}_total`"
        assert f"`{family}`" in page or counter_name in page, family
