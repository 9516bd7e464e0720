"""Producers whose clocks are wrong, on a real broker: the messaging host runs 5 minutes
behind, the payment host 5 minutes ahead (and a second payment host 5 minutes behind). The
worker orders their events by the times they carry, decides every transfer, and refuses an
event stamped beyond the far-future bound (``pipelines/stream/ingest.py``, docs/stream.md#clocks).

A broker of its own (as the two-worker test): the session's broker holds other tests' records,
whose times would make these events late, and the point here is exactly where they go."""
from __future__ import annotations

import asyncio
import base64
import re
import time

import msgspec
import pytest
from msgspec.structs import replace
from process_support import Processes
from service_support import as_user, publisher, rid, serving
from stream_support import DecisionWatcher, compare_features, publish

from features.replay import replay
from features.routing import order_key
from pipelines.contracts import schemas as s
from pipelines.services import common, payment
from pipelines.simulator.events import Log

pytestmark = pytest.mark.kafka
MINUTE = 60_000
AHEAD, BEHIND = 5 * MINUTE, -5 * MINUTE  # the payment host's clock, the messaging host's
FILLER = 3000  # messages of others: more than one ingest micro-batch (1,000 records)


def skewed_history(tag: str, now: int) -> tuple[list, list, list]:
    """The last half hour of three friends, as the hosts stamped it: (the payment host's
    transfers, the messaging host's events, the refused ones). The messaging host's clock is
    10 minutes behind the payment host's, so each transfer comes, in event time, after the
    messages of the 10 minutes that followed it."""
    log = Log()
    a, b, c = (f"{tag}{name}" for name in ("alice", "bob", "carol"))
    start = now - 30 * MINUTE
    log.account_event(a, start + BEHIND, "login", device=f"{tag}phone", ip=f"{tag}ip", country="FR")
    for k in range(30):  # a message a minute, real time start + k minutes
        sender, recipient = [(a, b), (b, a), (c, a)][k % 3]
        log.message(sender, recipient, start + k * MINUTE + BEHIND, money=k % 4 == 0,
                    request=k % 7 == 0)
    for k in range(FILLER):  # other people chatting: the backlog takes many micro-batches
        pair = k % 40
        log.message(f"{tag}x{pair}", f"{tag}y{pair}", start + k * 30 * MINUTE // FILLER + BEHIND)
    for k in range(0, 31, 5):  # a transfer every 5 minutes, the last one now (stamped now + 5)
        t = start + k * MINUTE + AHEAD
        sender, recipient = [(a, b), (a, c), (c, a)][k // 5 % 3]
        log.transfer(sender, recipient, t, amount=1_000 + 100 * k, device=f"{tag}phone")
    # beyond the bound: a host whose clock is 40 days off (or a time in the wrong unit)...
    far = log.message(a, b, now + 40 * 24 * 60 * MINUTE, money=True)
    # ...and a label learnt "20 minutes from now" (the console's host ahead)
    future_label = log.label(a, now - 20 * MINUTE, now + 20 * MINUTE, "user_scam_report")
    refused = [far, future_label]
    due = 30_000  # the payment host's availability delay, on its own clock
    transfers = [replace(e, payout_due_ts=e.ts + due) for e in log
                 if type(e) is s.TransferRequested]
    others = sorted((e for e in log if type(e) is not s.TransferRequested and e not in refused),
                    key=order_key)  # as the messaging host sent them
    return transfers, others, refused


def replayed(events, presorted: bool = False) -> dict[str, dict]:
    """Each transfer's features by the offline replay: in event time, or in the order given."""
    return {row.transfer_id: row.features for row in replay(events, presorted=presorted)}


def dead_letters() -> list[s.DeadLetter]:
    from pipelines.kafka.clients import consumer

    async def read():
        reader = consumer("dead-letters", enable_auto_commit=False)
        await reader.start()
        try:
            out = []
            for records in (await reader.getmany(timeout_ms=2000)).values():
                out += [msgspec.json.decode(r.value, type=s.DeadLetter) for r in records]
            return out
        finally:
            await reader.stop()

    return asyncio.run(read())


def test_skewed_producers_are_ordered_by_event_time_and_far_future_events_refused(tmp_path):
    from pipelines.bench.harness import fresh_environment

    with fresh_environment() as _, DecisionWatcher() as watcher:
        # made in the fresh environment: hashed with its key, as the late transfer below is
        now = int(time.time() * 1000)
        transfers, others, refused = skewed_history("clk-", now)
        # A backlog, as when the messaging host's batch lands after the payment host's: the
        # transfers are read first, and each must still see only what came before it in event
        # time; the far-future message sits among alice's messages.
        middle = len(others) // 2
        publish(transfers + others[:middle] + [refused[0]] + others[middle:] + [refused[1]])
        procs = Processes(tmp_path)
        try:
            worker = procs.start("worker", "worker", env={"VIGIE_MAX_CLOCK_AHEAD_S": ""})  # 600
            ids = [t.transfer_id for t in transfers]
            decided = {t: ds[0] for t, ds in watcher.wait_all(ids, 60, "the backlog").items()}

            # every transfer, the one stamped 5 minutes ahead of the worker's clock too, with
            # the features the offline replay gives it in event time, the refused events left out
            valid = sorted(transfers + others, key=order_key)
            diffs = compare_features(decided, replayed(valid))
            assert not diffs, f"{len(diffs)} feature values differ from the replay: {diffs[:3]}"
            assert any(v for d in decided.values() for k, v in d.features.items()
                       if k.startswith("sender_pair_msgs")), "the messages reached no transfer"

            # accepted, and said in the worker's log: the payment host runs minutes ahead
            said = re.search(r"transfer-requests up to (\d+) s", procs.log_of(worker))
            assert said and 240 <= int(said.group(1)) <= 300, procs.log_of(worker)[-3000:]

            # the two far-future events, and only they, dead-lettered with the skew named
            letters = dead_letters()
            by_bytes = {base64.b64decode(letter.original_b64): letter for letter in letters}
            assert len(letters) == 2 and set(by_bytes) == {s.encode(e) for e in refused}, \
                [letter.reason for letter in letters]
            for event, field in zip(refused, ("ts", "known_at")):
                reason = by_bytes[s.encode(event)].reason
                assert reason.startswith(f"clock skew: {field} ") and \
                    "ahead of the worker's clock (at most 600 s" in reason, reason

            # Live: a second payment host, 5 minutes behind, sends a transfer. Stamped before
            # what the stream has seen (the first host's transfer of now, stamped now + 5), it
            # is late: decided at once, ordered where it arrived (its counters see the first
            # host's later-stamped transfer), its windows read at its own time.
            late = Log().transfer("clk-alice", "clk-bob", int(time.time() * 1000) + BEHIND,
                                  amount=4_200, device="clk-phone")
            late = replace(late, transfer_id="clk-late", id="clk-late.r",
                           payout_due_ts=late.ts + 30_000)
            sent = time.monotonic()
            publish([late], live=True)
            got = watcher.wait_all(["clk-late"], 30, "the late transfer")["clk-late"][0]
            print(f"\nlate transfer, stamped 10 min before the stream time: decided "
                  f"{time.monotonic() - sent:.2f} s after its send")
            as_arrived = replayed(valid + [late], presorted=True)
            assert compare_features({"clk-late": got}, replayed(valid + [late])), \
                "the scenario cannot tell arrival order from event time"
            assert not compare_features({"clk-late": got}, as_arrived)
            assert worker.poll() is None and "Traceback" not in procs.log_of(worker)
        finally:
            procs.stop_all()


# --- deadlines: the payment host's own clock -------------------------------------------------
@pytest.mark.parametrize("skew", [AHEAD, BEHIND], ids=["ahead", "behind"])
def test_a_skewed_payment_host_still_waits_out_its_availability_delay(own_broker, monkeypatch,
                                                                     skew):
    """``payout_due_ts`` is stamped and checked on the payment host's clock, so a host 5 minutes
    off either way still gives Vigie the whole delay (here 2 s): an undecided transfer is held
    by the fallback neither 5 minutes early nor 5 minutes late, an approved one paid out after
    the delay, whatever the stamps of the stream's decisions (the worker's clock).
    On a broker of its own: on the session's, the instance would first adopt the transfers the
    stream tests wrote without a payment service and apply their backlog of decisions, one
    transaction each, and this test's decision could come after its 2 s."""
    monkeypatch.setenv("VIGIE_AVAILABILITY_DELAY_S", "2")
    monkeypatch.setattr(payment, "now_ms", lambda: common.now_ms() + skew)  # the host's clock

    async def run() -> dict[str, tuple[float, list]]:
        async with publisher() as pub, serving(payment) as client:
            sent, views, sender = {}, {}, rid()
            for name in ("undecided", "approved"):
                resp = await client.post("/v1/transfers", json={
                    "sender": sender, "recipient": rid(), "amount_cents": 2_500},
                    headers=as_user(sender))
                assert resp.status == 201, await resp.text()
                sent[name] = time.monotonic()
                views[name] = await (await client.get(
                    f"/v1/transfers/{(await resp.json())['transfer_id']}",
                    headers=as_user(sender))).json()
            v = views["approved"]
            await pub.publish("decisions", s.Decision(
                id=f"{v['transfer_id']}.d", ts=common.now_ms(), transfer_id=v["transfer_id"],
                sender=v["sender"], recipient=v["recipient"], amount_cents=v["amount_cents"],
                action="approve", score=0.1, model_version="clock-test"))
            final, out = {"undecided": "held", "approved": "paid_out"}, {}
            deadline = time.monotonic() + 30
            while len(out) < len(final) and time.monotonic() < deadline:
                for name, view in views.items():
                    got = await (await client.get(f"/v1/transfers/{view['transfer_id']}",
                                                  headers=as_user(sender))).json()
                    if name not in out and got["status"] == final[name]:
                        out[name] = (time.monotonic() - sent[name], got["history"])
                await asyncio.sleep(0.05)
            return out

    settled = asyncio.run(run())
    assert set(settled) == {"undecided", "approved"}, f"not settled within 30 s: {settled}"
    for name, (after_s, history) in settled.items():
        assert 1.9 <= after_s <= 10, (name, after_s, history)  # the delay, on the host's clock
    assert [h["status"] for h in settled["approved"][1]] == ["pending", "approved", "paid_out"]
    assert settled["undecided"][1][-1]["reason"] == "fallback: no decision by deadline"
