"""Every transfer whose money is held is in the review queue, whatever held it (a decision or
rule, an account lock, the payment service's no-decision fallback, a late decision kept held),
with what held it, until released or blocked; the console says when no model is promoted; the
audit lists model changes from the console and from the command line with actor and reason.

A lake written with the lake's own writer, as the payment service and the stream would have
filled it; the same story end to end on the real broker: tests/stream/test_fallback_holds.py."""
from __future__ import annotations

import base64
import os
import time

import msgspec
import pytest
from console_lake import signed_in
from process_support import ROOT
from streamlit.testing.v1 import AppTest

from pipelines.contracts import schemas as s
from pipelines.contracts.privacy import pseudonymize as h
from pipelines.lake import parquet as lake
from pipelines.services.payment import FALLBACK, RETURNED

PAGES = ROOT / "dashboards" / "pages"
MIN = 60_000
LATE = "late decision:approve model=m-x score=0.020; kept held for an analyst"
# transfer -> its payment statuses in order (all at one ts: the order is the log's), and the
# stream's decision (action, model) if one came
STORIES = {
    "fallback": (["pending", ("held", FALLBACK)], None),
    "late-approve": (["pending", ("held", FALLBACK), ("held", LATE)], ("approve", "m-x")),
    "locked": (["pending", ("approved", "decision:approve model=m-x"), ("held", "account locked")],
               ("approve", "m-x")),
    "rule-hold": (["pending", ("held", "decision:hold model=m-x")], ("hold", "m-x")),
    "not-applied-yet": (["pending"], ("hold", "m-x")),
    # released, blocked or paid: out of the queue
    "released": (["pending", ("held", FALLBACK), ("released", "decision:approve model=analyst:alice"),
                  ("paid_out", "availability delay over")], ("approve", "m-x")),
    "blocked": (["pending", ("held", "account locked"), ("blocked", "decision:block model=analyst:leo"),
                 ("returned", RETURNED)], None),
    "paid": (["pending", ("approved", "decision:approve model=m-x"),
              ("paid_out", "availability delay over")], ("approve", "m-x")),
    # the latest decision: made with no model promoted
    "rules-only": (["pending", ("held", "decision:hold model=rules-only")], ("hold", "rules-only")),
}
IN_QUEUE = {"fallback": FALLBACK, "late-approve": LATE, "locked": "account locked",
            "rule-hold": "decision:hold model=m-x", "rules-only": "decision:hold model=rules-only",
            "not-applied-yet": "decision:hold (payment not applied yet)"}


def write(lake_dir, topic: str, events: list, offset0: int = 0) -> None:
    lake.write_batch(lake_dir, topic, lake.TopicTable(topic, with_kafka_columns=True), events,
                     "test", partitions=[0] * len(events),
                     offsets=list(range(offset0, offset0 + len(events))))


def write_stories(lake_dir, now: int) -> None:
    requests, statuses, decisions = [], [], []
    for i, (tid, (steps, decided)) in enumerate(STORIES.items()):
        sender, recipient = h("account", f"payer-{i}"), h("account", f"payee-{i}")
        ts = now - (30 - i) * MIN
        common = dict(transfer_id=tid, sender=sender, recipient=recipient, amount_cents=1000 * (i + 1))
        requests.append(s.TransferRequested(id=f"{tid}.r", ts=ts, payout_due_ts=ts + MIN, **common))
        for n, step in enumerate(steps, 1):
            status, reason = (step, "") if isinstance(step, str) else step
            statuses.append(s.TransferStatus(id=f"{tid}.{n}", ts=ts + MIN, status=status,
                                             reason=reason, **common))
        if decided:
            action, model = decided
            score = 0.0 if model == "rules-only" else 0.02 + i / 100
            decisions.append(s.Decision(id=f"{tid}.d", ts=ts + 2 * MIN, action=action, score=score,
                                        model_version=model, **common))
    write(lake_dir, "transfer-requests", requests)
    write(lake_dir, "transfer-status", statuses)
    write(lake_dir, "decisions", decisions)


def write_model_changes(lake_dir, now: int) -> None:
    """A promotion from the command line, one from the console (its update and its analyst
    action), and a rollback from the command line that the worker refused."""
    cli = s.ModelUpdate(id="cli-1", ts=now - 5 * MIN, action="promote",
                        version="m-20260101-000000-deadbeef", actor="ops-ann",
                        reason="better recall at the same budget")
    console = s.ModelUpdate(id="cm-1", ts=now - 4 * MIN, action="promote",
                            version="m-20260102-000000-deadbeef", actor="dana",
                            reason="challenger from last week")
    refused = s.ModelUpdate(id="cli-2", ts=now - 3 * MIN, action="rollback", version="previous",
                            actor="ops-bob", reason="night regression")
    action = s.AnalystAction(id="ca-1", ts=now - 4 * MIN, actor="dana", role="data_scientist",
                             action="promote", target_kind="model", target=console.version,
                             reason=console.reason,
                             params={"version": console.version, "update": "cm-1"})
    raw = msgspec.json.encode(refused)
    letter = s.DeadLetter(ts=now - 3 * MIN, topic="model-updates", partition=0, offset=2,
                          reason="rollback previous refused: no previous model to roll back to",
                          original_b64=base64.b64encode(raw).decode(), original_size=len(raw))
    write(lake_dir, "model-updates", [cli, console, refused])
    write(lake_dir, "analyst-actions", [action])
    write(lake_dir, "dead-letters", [letter])


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("held")
    now = int(time.time() * 1000)
    write_stories(data_dir / "lake", now)
    write_model_changes(data_dir / "lake", now)
    previous = os.environ.get("VIGIE_DATA_DIR")
    os.environ["VIGIE_DATA_DIR"] = str(data_dir)
    yield data_dir / "lake"
    if previous is None:
        os.environ.pop("VIGIE_DATA_DIR", None)
    else:
        os.environ["VIGIE_DATA_DIR"] = previous


def page(name: str, username: str, role: str) -> AppTest:
    return signed_in(AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60), username,
                     role).run()


def test_every_held_transfer_is_in_the_queue_with_what_held_it(lake_dir):
    from dashboards import common

    queue = common.held_transfers().set_index("transfer_id")
    assert dict(queue["held_by"]) == IN_QUEUE
    assert queue.loc["late-approve", "decision"] == "approve"  # the late decision, shown
    assert queue["decision"].isna()["fallback"]  # none came
    # no score for what no model scored; such a transfer counts at its whole amount
    assert queue["score"].isna()[["fallback", "rules-only"]].all()
    assert queue.loc["fallback", "risk_amount"] == queue.loc["fallback", "amount_cents"]
    assert queue.loc["rule-hold", "risk_amount"] < queue.loc["rule-hold", "amount_cents"]


def test_the_queue_page_shows_them_and_an_analyst_can_act_on_a_fallback_hold(lake_dir):
    at = page("review_queue", "alice", "analyst")
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = at.dataframe[0].value
    assert set(shown["transfer_id"]) == set(IN_QUEUE)
    assert dict(zip(shown["transfer_id"], shown["held_by"]))["fallback"] == FALLBACK
    at.text_input(key="search").input("fallback").run()
    at.session_state["queue-0"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()  # the row clicked
    assert at.header[0].value == "Transfer fallback"
    assert any(t.value == f"Held by: {FALLBACK}" for t in at.text)
    assert any(t.value.startswith("no decision from the stream") for t in at.text)
    # the latest decision here is rules-only: the page says no model is promoted
    assert any("No model promoted: decisions by rules and lists alone" in w.value for w in at.warning)


def test_no_warning_once_a_promoted_model_decides(lake_dir):
    from dashboards import common

    later = int(time.time() * 1000)
    write(lake_dir, "decisions", [s.Decision(
        id="probe.d", ts=later, transfer_id="probe", sender=h("account", "p"),
        recipient=h("account", "q"), amount_cents=100, action="approve", score=0.01,
        model_version="m-20260101-000000-deadbeef")], offset0=100)
    common._query.clear()
    assert common.acting_model() == "m-20260101-000000-deadbeef"


def test_the_audit_lists_model_changes_with_actor_reason_and_refusal(lake_dir):
    at = page("audit_log", "leo", "lead")
    assert not at.exception and not at.error
    log = at.dataframe[0].value
    models = log[log["target_kind"] == "model"].set_index("actor")
    assert len(models) == 3  # the console's promotion once, not once per event it published
    assert tuple(models.loc["ops-ann", ["role", "action", "reason"]]) == (
        "command line", "promote", "better recall at the same budget")
    assert tuple(models.loc["dana", ["role", "action", "reason"]]) == (
        "data_scientist", "promote", "challenger from last week")
    assert models.loc["ops-bob", "refused"] == \
        "rollback previous refused: no previous model to roll back to"
    assert models["refused"].isna()[["ops-ann", "dana"]].all()
    at.text_input(key="actor").input("ops-ann").run()
    assert list(at.dataframe[0].value["actor"]) == ["ops-ann"]


@pytest.mark.kafka
def test_a_released_transfer_leaves_the_queue_at_once_then_the_lake_confirms_it(lake_dir, kafka):
    from dashboards import common

    at = page("review_queue", "alice", "analyst")
    at.query_params["transfer"] = "rule-hold"
    at.run()
    at.button(key="release").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "rule-hold" not in set(at.dataframe[0].value["transfer_id"])  # at once, lake unchanged
    assert "rule-hold" in set(common.held_transfers()["transfer_id"])
    assert any("out of the queue until the stream confirms" in c.value for c in at.caption)
    assert not at.header  # the decided transfer is closed, no other one opened in its place
    # the sink writes the payment service's release: confirmed, and forgotten by the session
    sender = h("account", "payer-3")
    write(lake_dir, "transfer-status", [s.TransferStatus(
        id="rule-hold.9", ts=int(time.time() * 1000), transfer_id="rule-hold", sender=sender,
        recipient=h("account", "payee-3"), amount_cents=4000, status="released",
        reason="decision:approve model=analyst:alice")], offset0=50)
    common._query.clear()
    at.run()
    assert any("confirmed" in t.value for t in at.toast)
    assert at.session_state["pending_decisions"] == {}
