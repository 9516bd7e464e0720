"""The detection benchmark's transfers-only export keeps what the history knows: every transfer,
and the same fraudulent transfers (an account takeover's window becomes per-transfer labels)."""
from __future__ import annotations

import csv

import pandas as pd
from click.testing import CliRunner

from models.labels import label_transfers
from models.tables import labels_table
from pipelines.bench.detection import export_history
from pipelines.cli import main
from pipelines.lake.event_log import read_topic
from pipelines.lake.sources import lake_families
from pipelines.simulator.offline import run_offline


def _fraud_ids(lake) -> set[str]:
    transfers = pd.DataFrame([{"transfer_id": t.transfer_id, "sender": t.sender, "ts": t.ts}
                              for t in read_topic(lake, "transfer-requests")])
    label = label_transfers(transfers, labels_table(lake))
    return set(transfers.loc[label.to_numpy() == 1, "transfer_id"])


def test_transfers_only_export_keeps_transfers_and_frauds(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "imported"
    run_offline(raw, seed=5, users=1500, days=10)
    transfers, labels = export_history(raw, tmp_path / "export")
    with open(labels) as fh:
        rows = list(csv.DictReader(fh))
    assert {r["kind"] for r in rows} >= {"chargeback", "ato_confirmed"}
    assert {r["party"] for r in rows} <= {"sender", "recipient", "unknown"}

    result = CliRunner().invoke(main, ["import", "--transfers", str(transfers), "--labels",
                                       str(labels), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    families = lake_families(out)
    assert families["transfers"] and families["labels"]
    assert not (families["devices"] or families["messages"] or families["assistant"])
    assert len(read_topic(out, "transfer-requests")) == len(read_topic(raw, "transfer-requests"))
    frauds = _fraud_ids(raw)
    assert frauds and _fraud_ids(out) == frauds
