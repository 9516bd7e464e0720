"""The overview's "Warnings heeded": transfers cancelled by their sender after an automated
warning, from the lake, split by label (fraud stopped, honest payments abandoned) and by
warning code; cancellations without a prior warn, shadow warns and warned transfers that were
paid anyway do not count."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from console_lake import acct, signed_in
from streamlit.testing.v1 import AppTest

from pipelines.contracts import schemas as s
from pipelines.lake import parquet as lake

OVERVIEW = Path(__file__).resolve().parents[2] / "dashboards" / "pages" / "overview.py"
MIN = 60_000


def write(lake_dir: Path, now: int) -> None:
    # name -> (amount in cents, warn decision: None, "acting" or "shadow", code, cancelled,
    #          labels as (is_fraud, known_at offset in minutes))
    cases = {
        "stopped": (12_000, "acting", "link_shared", True, [(True, 30)]),
        "abandoned": (2_500, "acting", "urgency", True, []),
        "cleared": (4_000, "acting", "urgency", True, [(True, 30), (False, 60)]),
        "unwarned": (9_900, None, None, True, [(True, 30)]),
        "shadow": (7_700, "shadow", "urgency", True, [(True, 30)]),
        "paid": (5_000, "acting", "link_shared", False, [(True, 30)]),
    }
    out: dict[str, list] = {t: [] for t in ("transfer-requests", "decisions", "notifications",
                                            "transfer-status", "labels")}
    t0 = now - 90 * MIN
    for i, (name, (amount, warn, code, cancelled, labels)) in enumerate(cases.items()):
        ts, tid, sender, recipient = t0 + i * MIN, f"tr-{name}", acct(i), acct(10 + i)
        out["transfer-requests"].append(s.TransferRequested(
            id=f"{tid}.r", ts=ts, transfer_id=tid, sender=sender, recipient=recipient,
            amount_cents=amount, payout_due_ts=ts + 30_000))
        statuses = ["pending"]
        if warn:
            decision = s.Decision(id=f"{tid}.d", ts=ts + 100, transfer_id=tid, sender=sender,
                                  recipient=recipient, amount_cents=amount, action="warn",
                                  score=0.3, model_version="m-1", shadow=warn == "shadow")
            out["decisions"].append(decision)
            if warn == "acting":
                out["notifications"].append(s.Notification(
                    id=f"{tid}.w", ts=ts + 100, account=sender, kind="transfer_warning",
                    code=code, transfer_id=tid))
                statuses.append("warned")
        statuses += ["cancelled", "returned"] if cancelled else ["paid_out"]
        out["transfer-status"] += [s.TransferStatus(
            id=f"{tid}.{n}", ts=ts + 200 * n, transfer_id=tid, sender=sender, recipient=recipient,
            amount_cents=amount, status=status) for n, status in enumerate(statuses, 1)]
        out["labels"] += [s.Label(id=f"{tid}.l{n}", ts=ts, kind="analyst_verdict", account=sender,
                                  transfer_id=tid, is_fraud=is_fraud, known_at=ts + after * MIN)
                          for n, (is_fraud, after) in enumerate(labels)]
    for topic, events in out.items():
        lake.write_batch(lake_dir, topic, lake.TopicTable(topic, with_kafka_columns=True), events,
                         "test", partitions=[0] * len(events), offsets=list(range(len(events))))


@pytest.mark.kafka  # the overview reads the worker's consumer lag from the broker too
def test_overview_shows_fraud_stopped_and_honest_payments_abandoned(kafka, tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    write(tmp_path / "lake", int(time.time() * 1000))
    at = signed_in(AppTest.from_file(str(OVERVIEW), default_timeout=60), "alice", "analyst").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = {m.label: (m.value, m.delta) for m in at.metric}
    assert shown["Fraud stopped by warnings"] == ("120.00 €", "1 transfer")
    assert shown["Honest payments abandoned"] == ("2", "65.00 €")  # 25 + 40: a cleared label
    table = at.dataframe[-1].value
    assert table.to_dict("index") == {"link_shared": {"fraud": 1, "honest": 0},
                                      "urgency": {"fraud": 0, "honest": 2}}
