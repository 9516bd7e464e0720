"""Concurrency and change in flight, on a real broker with one worker: only a promoted model
acts (before the first promotion, rules and lists alone; a model trained since waits for its
own), two analysts acting on one held transfer (the first wins, the second is refused with the
reason), claims that conflict, a promotion and a rollback while transfers flow (every decision
names the model that scored it, whole; shadow decisions throughout), and a model the worker
cannot feed refused at promotion.

The module runs on its own broker and data dir (``fresh_environment``): it promotes models, and
the session's other stream tests decide with whatever the session's registry and control table
hold. Its models are small LightGBM boosters over real feature names, trained in a second on
random rows whose label follows the amount: what matters here is which model scored, not how
well.
"""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import msgspec
import numpy as np
import pytest
from process_support import Processes, wait_for
from service_support import aio, as_user, serving
from stream_support import DecisionWatcher, hand_transfer, publish

from features.vector import FEATURE_NAMES
from pipelines.contracts import schemas as s

pytestmark = pytest.mark.kafka
THRESHOLDS = {"warn": 0.5, "hold": 0.8, "block": 0.95}
PACE_S = 0.04  # the traffic during a model switch: ~20 transfers/s, each acknowledged


def register_model(features: list[str], fraud_above_cents: float, seed: int, root=None,
                   now=None) -> str:
    """A booster whose score rises with ``transfer_amount_cents`` (its first feature) past
    ``fraud_above_cents``, saved in the registry (``root``: the settings' one) as if at ``now``;
    returns its version."""
    import lightgbm as lgb

    from models import registry

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4_000, len(features)))
    x[:, 0] = np.exp(rng.uniform(np.log(100), np.log(1e6), len(x)))
    y = (x[:, 0] > fraud_above_cents) ^ (rng.random(len(x)) < 0.05)
    booster = lgb.train({"objective": "binary", "num_leaves": 7, "seed": seed, "verbose": -1,
                         "num_threads": 1}, lgb.Dataset(x, y.astype(int), feature_name=features),
                        num_boost_round=15)
    return registry.save(booster.model_to_string(), {"feature_names": features,
                                                     "thresholds": THRESHOLDS}, root, now)


def update(action: str, version: str) -> s.ModelUpdate:
    return s.ModelUpdate(id=f"cf-{uuid.uuid4().hex}", ts=int(time.time() * 1000), action=action,
                         version=version, actor="dana")


def analyst(actor: str, action: str, target: str, params=None, role="analyst",
            kind="transfer") -> s.AnalystAction:
    return s.AnalystAction(id=f"cf-{uuid.uuid4().hex}", ts=int(time.time() * 1000), actor=actor,
                           role=role, action=action, target_kind=kind, target=target,
                           params=params or {}, reason="changes in flight test")


class Stage:
    def __init__(self, watcher: DecisionWatcher, models: dict, procs: Processes):
        self.watcher, self.models, self.procs = watcher, models, procs

    def refusals(self) -> dict[str, s.DeadLetter]:
        """Dead letters of analyst actions and model updates, by the refused event's id."""
        out = {}
        for _, raw in list(self.watcher.other.get("dead-letters", [])):
            letter = msgspec.json.decode(raw, type=s.DeadLetter)
            if letter.topic in ("analyst-actions", "model-updates"):
                out[json.loads(base64.b64decode(letter.original_b64))["id"]] = letter
        return out

    def probe(self, tag: str, timeout: float = 60) -> s.Decision:
        """The decision of a fresh probe transfer."""
        probe = hand_transfer(f"{tag}-{time.time_ns()}", f"{tag}-payee", 1_000, tag)
        publish([probe])
        return self.watcher.wait_all([probe.transfer_id], timeout, "a probe")[probe.transfer_id][0]

    def acting(self, tag: str, timeout: float = 60) -> str:
        """The model that decides a fresh probe transfer."""
        return self.probe(tag, timeout).model_version

    def updates(self) -> list[s.ModelUpdate]:
        return [msgspec.json.decode(raw, type=s.ModelUpdate)
                for _, raw in list(self.watcher.other.get("model-updates", []))]


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """Its own broker and registry; models A, B (promoted in turn) and S (shadow); one worker,
    started with S in shadow and no model promoted (``before_promotion``: a probe's decision
    then), then A promoted with ``vigie promote``."""
    from pipelines.bench.harness import fresh_environment

    features = list(FEATURE_NAMES)
    with fresh_environment() as (_, root):
        models = {"A": register_model(features[:12], 200_000, seed=1),
                  "B": register_model(features[:20], 20_000, seed=2),
                  "S": register_model(features[:8], 100_000, seed=3)}
        procs = Processes(tmp_path_factory.mktemp("changes"))
        try:
            with DecisionWatcher(("decisions", "dead-letters", "model-updates")) as watcher:
                publish([update("shadow", models["S"])])
                worker = procs.start("worker", "worker")
                stage = Stage(watcher, models, procs)
                stage.before_promotion = stage.probe("warm", 90)
                promote = procs.start("promote", "promote", models["A"], "--actor", "dana",
                                      "--reason", "the first model of this test")
                assert promote.wait(60) == 0, procs.log_of(promote)
                wait_for(lambda: stage.acting("warm", 90) == models["A"], timeout=120,
                         interval=0.5, what="the worker to decide with model A")
                yield stage
                assert worker.poll() is None, "the worker died"
                assert "Traceback" not in procs.log_of(worker)
        finally:
            procs.stop_all()
    shutil.rmtree(root, ignore_errors=True)


# --- (0) only a promoted model acts -----------------------------------------------------------
def test_only_a_promoted_model_acts_and_its_promotion_is_on_the_record(stage):
    # three models trained and registered, none promoted: rules and lists alone, and a transfer
    # they do not decide is held for an analyst, never approved blind
    before = stage.before_promotion
    assert (before.model_version, before.action, before.rule_hits, before.list_hits) == \
        ("rules-only", "hold", [], [])
    assert before.score == 0.0 and before.reasons == []
    promotion = next(u for u in stage.updates() if u.action == "promote")
    assert (promotion.version, promotion.actor, promotion.reason) == (
        stage.models["A"], "dana", "the first model of this test")
    # a model trained since, the registry's newest, does not act until someone promotes it
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    newest = register_model(list(FEATURE_NAMES)[:12], 50_000, seed=6, now=later)
    from models import registry

    assert registry.latest() == newest
    time.sleep(6)  # past any re-reading of the registry the worker might do
    assert stage.acting("newest") == stage.models["A"]


# --- (a) two analysts, one held transfer ----------------------------------------------------
@aio
async def test_the_first_analyst_decision_wins_and_the_second_is_refused_with_the_reason(
        stage, monkeypatch):
    from pipelines.services import payment

    monkeypatch.setenv("VIGIE_AVAILABILITY_DELAY_S", "30")  # held long before its payout time
    n = time.time_ns() % 10**9
    amount = 1_300 + n % 89  # only these transfers carry it; model A approves it
    rule = f"cf_hold_{n}"
    await asyncio.to_thread(publish, [analyst("lea", "rule_change", rule, {
        "op": "upsert", "name": rule, "action": "hold",
        "expression": f"transfer_amount_cents = {amount}"}, "lead", "rule")])
    async with serving(payment) as pay:
        async def held_transfer() -> dict:
            """A transfer the rule holds (retried until the rule has reached the worker)."""
            for _ in range(20):
                payer = f"cf-payer-{uuid.uuid4().hex[:8]}"
                resp = await pay.post("/v1/transfers", json={
                    "sender": payer, "recipient": f"cf-payee-{n}", "amount_cents": amount},
                    headers=as_user(payer))
                tid = (await resp.json())["transfer_id"]
                PAYERS[tid] = payer
                d = (await asyncio.to_thread(stage.watcher.wait_all, [tid], 30, "a transfer"))[tid]
                if d[0].action == "hold":
                    break
                await asyncio.sleep(0.5)
            assert d[0].action == "hold", "the hold rule never took effect"
            await wait_status(pay, tid, ("held",))
            return (await (await pay.get(f"/v1/transfers/{tid}", headers=as_user(payer))).json())

        async def two_analysts(first: str, second: str) -> tuple:
            t = await held_transfer()
            params = {k: str(t[k]) for k in ("sender", "recipient", "amount_cents")}
            actions = (analyst("alice", first, t["transfer_id"], params),
                       analyst("bob", second, t["transfer_id"], params))
            await asyncio.to_thread(publish, actions)  # back to back: both in one batch, likely
            return t["transfer_id"], actions

        released, (release, late_block) = await two_analysts("release", "block")
        blocked, (block, late_release) = await two_analysts("block", "release")
        refused = await asyncio.to_thread(
            wait_for, lambda: {late_block.id, late_release.id} <= stage.refusals().keys(),
            30, 0.2, "both second actions refused")
        assert refused
        letters = stage.refusals()
        assert letters[late_block.id].reason == (
            f"block refused: transfer {released} was already released by alice "
            f"(action {release.id})")
        assert letters[late_release.id].reason == (
            f"release refused: transfer {blocked} was already blocked by alice "
            f"(action {block.id})")
        await asyncio.to_thread(publish, [release])  # redelivered (a worker crashed, say)
        await wait_status(pay, released, ("released", "paid_out"))
        await wait_status(pay, blocked, ("returned",))
        await asyncio.sleep(1.0)  # room for a second analyst decision, or a refusal, to come
        assert not {release.id, block.id} & stage.refusals().keys()
        for tid, first, action in ((released, release, "approve"), (blocked, block, "block")):
            by_analysts = {(d.id, d.action, d.model_version)
                           for d in stage.watcher.decisions([tid])[tid]
                           if d.model_version.startswith("analyst:")}
            assert by_analysts == {(f"{tid}.a{first.ts}", action, "analyst:alice")}
        view = await (await pay.get(f"/v1/transfers/{released}",
                                    headers=as_user(PAYERS[released]))).json()
        history = [h["status"] for h in view["history"]]
        assert "blocked" not in history, history
    await asyncio.to_thread(publish, [analyst("lea", "rule_change", rule,
                                              {"op": "delete", "name": rule}, "lead", "rule")])


PAYERS: dict[str, str] = {}  # transfer id -> its raw sender, whose token reads it


async def wait_status(pay, transfer_id: str, statuses: tuple, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    headers = as_user(PAYERS[transfer_id])
    while (status := (await (await pay.get(f"/v1/transfers/{transfer_id}",
                                           headers=headers)).json())["status"]) not in statuses:
        assert time.monotonic() < deadline, f"{transfer_id} still {status}, not {statuses}"
        await asyncio.sleep(0.1)


def test_a_claimed_transfer_cannot_be_claimed_by_another_analyst(stage):
    target = f"cf-claim-{uuid.uuid4().hex}"
    carol, dave, carol_again = (analyst("carol", "claim", target), analyst("dave", "claim", target),
                                analyst("carol", "claim", target))
    to_dave = analyst("lea", "assign", target, {"assignee": "dave"}, role="lead")
    carol_late = analyst("carol", "claim", target)
    publish([carol, dave, carol_again, to_dave, carol_late, carol])  # carol's claim redelivered
    wait_for(lambda: {dave.id, carol_late.id} <= stage.refusals().keys(), 30,
             what="the conflicting claims refused")
    time.sleep(1.0)  # room for a wrong refusal of the others
    letters = stage.refusals()
    assert letters[dave.id].reason == \
        f"claim refused: transfer {target} is claimed by carol (action {carol.id})"
    assert letters[carol_late.id].reason == \
        f"claim refused: transfer {target} is claimed by dave (action {to_dave.id})"
    assert not {carol.id, carol_again.id, to_dave.id} & letters.keys()


# --- (b) promotion and rollback during traffic -------------------------------------------------
class Traffic:
    """Transfers sent one by one, each acknowledged, until stopped: (monotonic send time, id)."""

    def __init__(self, tag: str):
        self.tag, self.sent, self._stop = tag, [], threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        from pipelines.kafka.clients import Publisher

        pub = await Publisher(linger_ms=0).start()
        try:
            i = 0
            while not self._stop.is_set():
                i += 1
                tr = hand_transfer(f"{self.tag}-payer-{i % 24}", f"{self.tag}-payee-{i % 7}",
                                   100 + (i * 7919) % 60_000, self.tag)
                await pub.publish("transfer-requests", tr)
                self.sent.append((time.monotonic(), tr.transfer_id))
                await asyncio.sleep(PACE_S)
        finally:
            await pub.stop()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def test_promotion_and_rollback_in_flight_every_decision_names_its_whole_model(stage):
    from models.scorer import Scorer

    a, b, shadow = (stage.models[k] for k in ("A", "B", "S"))
    watcher = stage.watcher
    scorers = {v: Scorer.load(v) for v in (a, b, shadow)}

    def first_arrival_of(version: str, after: float) -> float:
        """When the first decision named ``version`` arrived after ``after`` (monotonic)."""
        def seen():
            return min((at for t in list(watcher.seen) for at, d in watcher.arrivals(t)
                        if at > after and d.model_version == version and not d.shadow),
                       default=None)
        return wait_for(seen, 30, 0.1, f"a decision by {version}")

    tag = f"cf{time.time_ns() % 10**9}"
    with Traffic(tag) as traffic:
        time.sleep(2)
        promoted_at = time.monotonic()
        publish([update("promote", b)])
        b_seen = first_arrival_of(b, promoted_at)
        time.sleep(3)
        rolled_back_at = time.monotonic()
        publish([update("rollback", "previous")])
        a_again = first_arrival_of(a, rolled_back_at)
        time.sleep(3)
    sent = dict((t, at) for at, t in traffic.sent)
    acting = {t: ds for t, ds in watcher.wait_all(sent, 60, "the traffic").items()}
    wait_for(lambda: len(watcher.decisions(sent, shadow=True)) == len(sent), 60, 0.5,
             "a shadow decision for every transfer")
    shadowed = watcher.decisions(sent, shadow=True)
    arrived = {t: watcher.arrivals(t)[0][0] for t in sent}

    # no transfer missing, each decided by a whole registered model: the score it carries is
    # the one its named model gives its features (so no other model, nor a half-loaded one)
    assert set(acting) == set(shadowed) == set(sent)
    decisions = [d for ds in [*acting.values(), *shadowed.values()] for d in ds]
    assert {d.model_version for ds in acting.values() for d in ds} == {a, b}
    assert {d.model_version for ds in shadowed.values() for d in ds} == {shadow}
    wrong = [(d.transfer_id, d.model_version, d.score) for d in decisions
             if float(scorers[d.model_version].score(
                 scorers[d.model_version].matrix([d.features]))[0]) != d.score]
    assert not wrong, f"{len(wrong)} decisions carry a score their model does not give: {wrong[:3]}"
    # and the check tells the models apart: their scores differ on most of these transfers
    differ = sum(scorers[a].score(scorers[a].matrix([ds[0].features]))[0]
                 != scorers[b].score(scorers[b].matrix([ds[0].features]))[0]
                 for ds in acting.values())
    assert differ > len(acting) / 2

    # the model acting at the time: A before the promotion, B once it decided one, A again
    # once the rollback decided one
    def versions(ids) -> set:
        return {d.model_version for t in ids for d in acting[t]}

    before = [t for t in sent if arrived[t] < promoted_at]
    during = [t for t in sent if b_seen < sent[t] and arrived[t] < rolled_back_at]
    after = [t for t in sent if sent[t] > a_again]
    print(f"\nswitch in flight: {len(sent)} transfers; {len(before)} before the promotion, "
          f"{len(during)} while B acted, {len(after)} after the rollback; B first decided "
          f"{(b_seen - promoted_at) * 1000:.0f} ms after the promotion was sent, A again "
          f"{(a_again - rolled_back_at) * 1000:.0f} ms after the rollback")
    assert before and during and after
    assert versions(before) == {a} and versions(during) == {b} and versions(after) == {a}


# --- (c) a model the worker cannot feed --------------------------------------------------------
def test_a_model_needing_features_the_worker_lacks_is_refused_at_promotion(stage):
    from models import registry

    a = stage.models["A"]
    assert stage.acting("pre") == a
    unfed = register_model(["transfer_amount_cents", "sender_mood_score"], 20_000, seed=4)
    promote = update("promote", unfed)
    publish([promote])
    letter = wait_for(lambda: stage.refusals().get(promote.id), 30,
                      what="the promotion refused")
    assert letter.reason == (f"promote {unfed} refused: model {unfed} needs features the worker "
                             "does not compute: sender_mood_score")
    broken = "m-20200101-000000-0badf00d"  # whole on disk, but its model text is not a model
    (registry.models_dir() / broken).mkdir()
    (registry.models_dir() / broken / "meta.json").write_text(json.dumps(
        {"version": broken, "feature_names": ["transfer_amount_cents"], "thresholds": THRESHOLDS}))
    (registry.models_dir() / broken / "model.txt").write_text("not a model\n")
    promote = update("promote", broken)
    publish([promote])
    letter = wait_for(lambda: stage.refusals().get(promote.id), 30, what="the promotion refused")
    assert letter.reason.startswith(f"promote {broken} refused: model {broken} cannot be loaded")
    shadow = update("shadow", unfed)
    publish([shadow])
    wait_for(lambda: stage.refusals().get(shadow.id), 30, what="the shadow refused")
    # the acting and shadow models stay
    probe = hand_transfer(f"cf-sh-{time.time_ns()}", "cf-sh-payee", 900, "cfsh")
    publish([probe])
    (d,) = stage.watcher.wait_all([probe.transfer_id], 30, "a probe")[probe.transfer_id]
    wait_for(lambda: stage.watcher.decisions([probe.transfer_id], shadow=True), 30,
             what="its shadow decision")
    (sd,) = stage.watcher.decisions([probe.transfer_id], shadow=True)[probe.transfer_id]
    assert (d.model_version, sd.model_version) == (a, stage.models["S"])


class Acting:
    """The control table's view, as the decide stage reads it: only the models."""

    def __init__(self):
        self.versions = {}

    def model(self, which: str):
        return self.versions.get(which)


def test_the_decide_stage_never_scores_with_a_model_it_cannot_feed(tmp_path, monkeypatch):
    """Behind the router's refusal: should such a model become acting anyway (promoted on a
    machine where its files were not there yet), the model that acted stays; a fresh worker
    falls back on the previous promoted model, and with none on rules and lists alone, never
    on whatever the registry holds."""
    from pipelines.stream import decide
    from pipelines.stream.decide import DecideStage

    features = list(FEATURE_NAMES)
    good = register_model(features[:12], 200_000, seed=1, root=tmp_path)
    later = datetime.now(timezone.utc) + timedelta(hours=1)  # the registry's newest
    unfed = register_model([features[0], "sender_mood_score"], 20_000, seed=4, root=tmp_path,
                           now=later)
    control = Acting()
    stage = DecideStage(control, models_root=tmp_path)
    assert stage.scorer("acting") is None  # nothing promoted: no model, however many trained
    control.versions["acting"] = unfed
    assert stage.scorer("acting") is None
    control.versions["previous"] = good
    assert stage.scorer("acting").version == good  # a fresh worker: the previous promoted one
    control.versions["acting"] = good
    assert stage.scorer("acting").version == good
    control.versions["acting"] = unfed
    assert stage.scorer("acting").version == good
    control.versions["shadow"] = unfed
    assert stage.scorer("shadow") is None
    # promoted before its files reached this machine: the model that acted stays until they come
    elsewhere = tmp_path / "elsewhere"
    coming = register_model(features[:10], 50_000, seed=5, root=elsewhere)
    control.versions["acting"] = coming
    assert stage.scorer("acting").version == good
    (elsewhere / coming).rename(tmp_path / coming)
    monkeypatch.setattr(decide, "LOAD_RETRY_S", 0.0)
    assert stage.scorer("acting").version == coming
