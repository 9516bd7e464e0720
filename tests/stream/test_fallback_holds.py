"""Holds never go missing, on the real broker: transfers the payment service's no-decision
fallback held (no worker running) are in the review queue with that reason; once a worker runs,
its late decision is shown there too (kept held for an analyst); an analyst's release and block
from the queue page release and block them, and they leave the queue.

The worker runs on a data dir without a model: it decides with rules and lists alone and says
so (model "rules-only"), whatever the session's other tests promoted."""
from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request

import pytest
from console_lake import signed_in
from process_support import ROOT, wait_for
from service_support import as_internal, as_user
from streamlit.testing.v1 import AppTest

from pipelines.contracts import topics
from pipelines.kafka.broker import free_port
from pipelines.kafka.clients import consumer
from pipelines.lake import parquet as lake
from pipelines.services.payment import FALLBACK

pytestmark = pytest.mark.kafka


def _http(url: str, user: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json", **as_user(user)})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except OSError:
        return None


def fallback_metric(port: int) -> float:
    """The payment service's count of its fallback holds, as Prometheus scrapes it."""
    scrape = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=as_internal())
    with urllib.request.urlopen(scrape, timeout=10) as r:
        found = re.search(r'^vigie_fallback_holds_total\{fallback="hold"\} (\S+)$',
                          r.read().decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def fallback_holds_since(since_ms: int) -> list[str]:
    """The transfers held by the fallback, one per ``transfer-status`` record written since
    ``since_ms`` (the test's one payment service wrote them all)."""
    async def read() -> list:
        c = consumer("transfer-status", enable_auto_commit=False)
        await c.start()
        try:
            parts = list(c.assignment())
            ends = await c.end_offsets(parts)
            for tp, found in (await c.offsets_for_times({tp: since_ms for tp in parts})).items():
                c.seek(tp, found.offset if found else ends[tp])
            out = []
            while any([await c.position(tp) < ends[tp] for tp in parts]):
                for records in (await c.getmany(timeout_ms=500)).values():
                    out += [topics.decode("transfer-status", r.value) for r in records]
            return out
        finally:
            await c.stop()
    return [st.transfer_id for st in asyncio.run(read())
            if st.status == "held" and st.reason == FALLBACK]


def queue(lake_dir) -> dict:
    """The review queue as the console reads it: transfer -> (held by, latest decision)."""
    from dashboards.common import HELD_SQL

    if not (lake_dir / "transfer-status").exists():
        return {}
    result = lake.connect(lake_dir).execute(HELD_SQL)
    names = [column[0] for column in result.description]
    rows = [dict(zip(names, row)) for row in result.fetchall()]
    return {r["transfer_id"]: (r["held_by"], r["decision"], r["model_version"]) for r in rows}


def act_on(transfer_id: str, button: str, reason: str = "") -> None:
    """An analyst opens the transfer in the queue page (its link) and clicks ``button``."""
    at = signed_in(AppTest.from_file(str(ROOT / "dashboards" / "pages" / "review_queue.py"),
                                     default_timeout=60), "alice", "analyst")
    at.query_params["transfer"] = transfer_id  # its deep link, as pasted from a ticket
    at.run()
    assert any(transfer_id in h.value for h in at.header), [h.value for h in at.header]
    at.text_input(key="reason").input(reason)
    at.button(key=button).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["sent_events"]


def test_fallback_holds_are_in_the_queue_and_analysts_release_or_block_them(
        kafka, processes, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    port = free_port()
    env = {"VIGIE_DATA_DIR": str(data_dir), "VIGIE_PAYMENT_PORT": str(port),
           "VIGIE_AVAILABILITY_DELAY_S": "2", "VIGIE_SINK_FLUSH_S": "0.5"}
    monkeypatch.setenv("VIGIE_DATA_DIR", str(data_dir))  # the console pages read this lake
    lake_dir = data_dir / "lake"
    started_ms = int(time.time() * 1000)
    processes.start("payment", "serve", "payment", env=env)
    processes.start("sink", "sink", env=env)
    pay = f"http://127.0.0.1:{port}/v1/transfers"
    n = time.time_ns() % 10**9
    ids, senders = {}, {}
    for case in ("release", "block"):
        sender = f"fb-{case}-{n}"
        made = wait_for(lambda: _http(pay, sender, {"sender": sender, "recipient": f"fb-payee-{n}",
                                                    "amount_cents": 1_500}),
                        60, what="the payment service")
        ids[case], senders[made["transfer_id"]] = made["transfer_id"], sender

    # No worker: no decision by the payout deadline, the fallback holds them...
    for tid in ids.values():
        wait_for(lambda: (_http(f"{pay}/{tid}", senders[tid]) or {}).get("status") == "held", 30,
                 what="the fallback hold")
        assert _http(f"{pay}/{tid}", senders[tid])["history"][-1]["reason"] == FALLBACK
    # the operators see them: the payment service's metrics count each fallback hold it wrote
    # once; it may also have restored open transfers that earlier tests left on the shared
    # broker and held them: the log says how many holds it wrote
    def counted() -> bool:
        written = fallback_holds_since(started_ms)
        assert set(ids.values()) <= set(written), written
        return fallback_metric(port) == len(written)
    wait_for(counted, 10, what="the fallback-holds metric to count the log's fallback holds")
    # ...and the queue lists them, with that reason and no decision
    wait_for(lambda: all(queue(lake_dir).get(t, (None,))[0] == FALLBACK for t in ids.values()),
             60, what="the fallback holds in the queue")
    assert {queue(lake_dir)[t][1] for t in ids.values()} == {None}

    # A worker comes back: its decision is late; the queue shows it, the money stays held.
    # No model in this data dir: rules and lists alone, nothing decides them, so: hold.
    worker = processes.start("worker", "worker", env=env)
    late = "late decision:hold model=rules-only"
    wait_for(lambda: all(queue(lake_dir).get(t, ("",))[0].startswith(late) for t in ids.values()),
             120, what="the late decisions in the queue")
    assert {queue(lake_dir)[t][1:] for t in ids.values()} == {("hold", "rules-only")}
    assert all(_http(f"{pay}/{t}", senders[t])["status"] == "held" for t in ids.values())

    # Analysts act from the queue page; the payment service applies their decisions.
    act_on(ids["release"], "release")
    act_on(ids["block"], "block", "no answer from the sender")
    def seen_by_sender(case: str) -> dict:
        return _http(f"{pay}/{ids[case]}", senders[ids[case]])

    wait_for(lambda: seen_by_sender("release")["status"] == "paid_out", 60,
             what="the released transfer paid out")
    wait_for(lambda: seen_by_sender("block")["status"] == "returned", 60,
             what="the blocked transfer returned")
    history = [h["status"] for h in seen_by_sender("release")["history"]]
    assert history == ["pending", "held", "held", "released", "paid_out"], history
    # released and blocked: out of the queue
    wait_for(lambda: not set(ids.values()) & set(queue(lake_dir)), 60,
             what="the transfers to leave the queue")
    assert "Traceback" not in processes.log_of(worker)
