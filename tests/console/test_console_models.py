"""Models page charts: a model card's plots, drift (PSI per feature and hour against the training
bins) and the shadow model against the acting one, on demand, from a lake written here."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from console_lake import signed_in
from process_support import ROOT
from streamlit.testing.v1 import AppTest

from pipelines.contracts import schemas
from pipelines.contracts.privacy import pseudonymize as h
from pipelines.lake import parquet as lake

PAGE = ROOT / "dashboards" / "pages" / "models_quality.py"
HOUR = 3_600_000


@pytest.fixture
def models_lake(tmp_path, monkeypatch):
    """A model trained on feature f0 ~ U(0, 1); live traffic: the first hour like training, the
    second shifted to U(2, 3). Every transfer also decided by a shadow model, which disagrees
    on the second hour's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from features.vector import FEATURE_NAMES
    from models import drift, registry

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    name = FEATURE_NAMES[0]
    rng = np.random.default_rng(7)
    train = pd.DataFrame({name: rng.uniform(0, 1, 2000)})
    version = registry.save("tree\n", {"feature_names": [name], "thresholds": {"hold": 0.5},
                                       "feature_bins": drift.feature_bins(train, [name])})
    fig = plt.figure(figsize=(2, 2))
    fig.savefig(registry.models_dir() / version / "pr_curve.png")
    plt.close(fig)
    now = int(time.time() * 1000)
    decisions = []
    for i in range(80):
        second = i >= 40
        ts = now - (2 * HOUR if not second else HOUR // 2) + i
        common = dict(transfer_id=f"t{i}", sender=h("account", f"s{i}"), recipient=h("account", "r"),
                      amount_cents=100, features={name: float(rng.uniform(2, 3) if second
                                                              else rng.uniform(0, 1))})
        decisions.append(schemas.Decision(id=f"t{i}.d", ts=ts, action="approve", score=0.1,
                                          model_version=version, **common))
        decisions.append(schemas.Decision(id=f"t{i}.s", ts=ts, action="hold" if second else "approve",
                                          score=0.9 if second else 0.1, model_version="m-shadow",
                                          shadow=True, **common))
    lake.write_batch(tmp_path / "lake", "decisions",
                     lake.TopicTable("decisions", with_kafka_columns=True), decisions, "test",
                     partitions=[0] * len(decisions), offsets=list(range(len(decisions))))
    return {"version": version, "feature": name}


def test_card_plots_drift_and_shadow_charts(models_lake):
    at = signed_in(AppTest.from_file(str(PAGE), default_timeout=60), "dana", "data_scientist").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not any("acting_action" in d.value.columns for d in at.dataframe)  # not until asked
    at.button(key="analyses").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    psi = next(d.value for d in at.dataframe if list(d.value.columns)[:1] == ["feature"])
    psi = psi.set_index("feature")
    first, second = psi.loc[models_lake["feature"]].tolist()  # two hours, oldest first
    assert first < 0.25 < 2.5 < second  # no alert (0.25, models.drift.ALERT_PSI), then shifted
    crossed = next(d.value for d in at.dataframe if "acting_action" in d.value.columns)
    assert dict(zip(zip(crossed["acting_action"], crossed["shadow_action"]),
                    crossed["transfers"])) == {("approve", "approve"): 40, ("approve", "hold"): 40}
    assert any("80 transfers decided by both" in c.value for c in at.caption)
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # the charts are drawn
