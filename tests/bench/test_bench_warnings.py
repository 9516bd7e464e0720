"""The warnings benchmark counts what a warning can stop: a victim's transfer by the chance it
heeds that warning, a fraudster's never, an honest one by the friction; and it runs end to end
on a small simulated history."""
from __future__ import annotations

import pandas as pd
import pytest

from pipelines.bench import warning_effects as bench
from pipelines.simulator import reactions


def test_measure_weighs_each_warned_sender_by_their_chance():
    table = pd.DataFrame({"transfer_id": ["victim", "fraudster", "honest", "approved", "held"],
                          "amount_cents": [20_000, 50_000, 3_000, 7_000, 9_000]})
    decisions = [("warn", "link_shared"), ("warn", "link_shared"), ("warn", "urgency"),
                 ("approve", None), ("hold", None)]
    fraud = {"victim": "marketplace", "fraudster": "stolen_card", "held": "romance"}
    got = bench.measure(table, decisions, fraud, deceived={"victim", "held"})
    fit = reactions.HEED["marketplace"][0]
    assert got["by_code"]["link_shared"] == {
        "fraud_warned": 2, "fraud_eur_warned": 700.0, "fraud_eur_stopped": round(200 * fit, 2),
        "honest_warned": 0, "honest_abandoned": 0}
    assert got["by_code"]["urgency"]["honest_abandoned"] == reactions.ABANDON
    assert got["fraud_eur_stopped"] == round(200 * fit, 2)
    assert got["fraud_eur"] == 790.0 and got["honest_transfers"] == 2
    assert got["stopped_share_of_fraud_eur"] == round(200 * fit / 790, 4)
    assert got["abandoned_per_10k_honest"] == round(1e4 * reactions.ABANDON / 2, 2)


def test_the_benchmark_runs_on_a_small_history():
    figures = bench.run(users=600, days=21.0, seed=7)
    flat = bench.results(figures)
    assert figures["transfers"] > 1000 and figures["fraud_transfers"] > 0
    assert 0 <= figures["fraud_eur_stopped"] <= figures["fraud_eur_warned"] <= figures["fraud_eur"]
    assert figures["honest_abandoned"] == pytest.approx(
        reactions.ABANDON * figures["honest_warned"], abs=0.05)
    assert figures["honest_warned"] > 0, "the model warns some honest transfers"
    assert flat["warnings_fraud_eur_stopped"] == figures["fraud_eur_stopped"]
    assert set(flat["warnings_by_code"]) == set(figures["by_code"])
