"""Actions the worker refused (a conflicting claim, a second decision on a transfer) show as
refused on the audit page, with the worker's reason, and never count in the review queue."""
from __future__ import annotations

import base64
import os

import msgspec
import pytest
from console_lake import signed_in, write_lake
from process_support import ROOT
from streamlit.testing.v1 import AppTest

from pipelines.contracts import schemas
from pipelines.lake import parquet as lake

PAGE = ROOT / "dashboards" / "pages" / "audit_log.py"


@pytest.fixture(scope="module")
def refused_lake(tmp_path_factory):
    """The console lake plus bob's claim of the transfer alice claimed, and its refusal."""
    data_dir = tmp_path_factory.mktemp("refusals")
    info = write_lake(data_dir / "lake")
    held = info["held"][-1]  # the lake's aa-1: alice claims the first held transfer (lowest id)
    claim = schemas.AnalystAction(id="aa-bob", ts=info["now"] - 60_000, actor="bob",
                                  role="analyst", action="claim", target_kind="transfer",
                                  target=held, reason="mine too")
    raw = msgspec.json.encode(claim)
    reason = f"claim refused: transfer {held} is claimed by alice (action aa-1)"
    refusal = schemas.DeadLetter(ts=info["now"] - 59_000, topic="analyst-actions", partition=0,
                                 offset=9, reason=reason, original_b64=base64.b64encode(raw).decode(),
                                 original_size=len(raw))
    for topic, event in (("analyst-actions", claim), ("dead-letters", refusal)):
        lake.write_batch(data_dir / "lake", topic, lake.TopicTable(topic, with_kafka_columns=True),
                         [event], "refusal", partitions=[0], offsets=[9])
    previous = os.environ.get("VIGIE_DATA_DIR")
    os.environ["VIGIE_DATA_DIR"] = str(data_dir)
    yield {"held": held, "reason": reason}
    if previous is None:
        os.environ.pop("VIGIE_DATA_DIR", None)
    else:
        os.environ["VIGIE_DATA_DIR"] = previous


def test_the_audit_shows_the_refused_action_with_the_workers_reason(refused_lake):
    at = signed_in(AppTest.from_file(str(PAGE), default_timeout=60), "leo", "lead").run()
    assert not at.exception and not at.error
    log = at.dataframe[0].value.set_index("actor")
    assert log.loc["bob", "refused"] == refused_lake["reason"]
    assert log.loc["alice", "refused"] is None or log["refused"].isna()["alice"]
    assert "1 refused by the worker" in at.caption[0].value


def test_a_refused_claim_does_not_own_the_transfer(refused_lake):
    from dashboards import common

    queue = common.held_transfers().set_index("transfer_id")
    assert queue.loc[refused_lake["held"], "owner"] == "alice"
