"""Senders react to in-chat warnings: victims heed a fitting warning more than another one,
honest senders sometimes abandon, fraudsters never; seeded; and without warnings (offline) the
lake is the same bytes as before. The live client reads the warning from the messaging service
and cancels through the payment service (real services, real broker)."""
from __future__ import annotations

import math
import uuid
from pathlib import Path

import aiohttp
import pytest
from service_support import acc, aio, as_user, eventually, publisher, rid, serving

from features.vector import WARNING_CODES
from pipelines.contracts import schemas as s
from pipelines.services import messaging, payment
from pipelines.services.common import now_ms
from pipelines.simulator import fraud, live, reactions
from pipelines.simulator.offline import simulate
from pipelines.simulator.world import CancelTransfer, WarningFor
from pipelines.stream.decide import notification_for
from tests.simulator.test_simulator import _digests

USERS, DAYS = 400, 5.0
# many scam victims (fake listings), and fraudsters' own card transfers
MIX = {**dict.fromkeys(fraud.DEFAULT_MIX, 0.0), "marketplace": 60.0, "stolen_card": 3.0}
FITTING, OTHER = "link_shared", "new_card"  # a fake listing's warning, and an unrelated one


def warn_all(query: WarningFor) -> str:
    """Every transfer warned: every other one (by its id's number) with the fitting code."""
    return FITTING if int(query.transfer_id.rpartition("t")[2]) % 2 else OTHER


@pytest.fixture(scope="module")
def warned(tmp_path_factory):
    base = tmp_path_factory.mktemp("warned")
    return [simulate(base / name, seed=5, users=USERS, days=DAYS, mix=MIX, warn=warn_all)
            for name in ("a", "b")]


def _within(heeded: int, asked: int, p: float) -> bool:
    """``heeded`` of ``asked`` is a plausible draw of p (3.5 standard deviations)."""
    return abs(heeded - asked * p) <= 3.5 * math.sqrt(asked * p * (1 - p)) + 1


def test_victims_heed_fitting_warnings_more_and_fraudsters_never(warned):
    (_, world), _ = warned
    victims = [t for t in world.fraud_transfers if t in world.deceived]
    assert {world.fraud_transfers[t] for t in victims} == {"marketplace"}
    by_code = {code: [t for t in victims if warn_all(WarningFor("", t)) == code]
               for code in (FITTING, OTHER)}
    heeded = {code: sum(t in world.cancelled for t in ts) for code, ts in by_code.items()}
    fit, other = reactions.HEED["marketplace"]
    assert min(map(len, by_code.values())) >= 100, by_code
    assert _within(heeded[FITTING], len(by_code[FITTING]), fit), (heeded, by_code)
    assert _within(heeded[OTHER], len(by_code[OTHER]), other), (heeded, by_code)
    # the card fraudsters' own transfers, warned as well: never called off
    fraudsters = world.fraud_transfers.keys() - world.deceived
    assert fraudsters and not fraudsters & world.cancelled.keys()


def test_honest_abandon_rate_is_the_documented_friction(warned):
    (stats, world), _ = warned
    honest_sent = stats["by_topic"]["transfer-requests"] - len(world.fraud_transfers)
    honest_cancelled = sum(1 for t in world.cancelled if t not in world.fraud_transfers)
    # a cancelled honest transfer is in the lake too (its request was sent)
    assert honest_cancelled and _within(honest_cancelled, honest_sent, reactions.ABANDON), (
        honest_cancelled, honest_sent)


def test_reactions_are_seeded(warned):
    (stats_a, world_a), (stats_b, world_b) = warned
    assert world_a.cancelled == world_b.cancelled and world_a.cancelled
    assert _digests(Path(stats_a["out"])) == _digests(Path(stats_b["out"]))


def test_without_warnings_the_lake_does_not_change(tmp_path):
    """Offline nothing warns: a stand-in that never warns gives the very bytes of a run
    without one, and nobody cancels."""
    plain, _ = simulate(tmp_path / "plain", seed=5, users=200, days=3.0, mix=MIX)
    silent, world = simulate(tmp_path / "silent", seed=5, users=200, days=3.0, mix=MIX,
                             warn=lambda query: None)
    assert _digests(tmp_path / "plain") == _digests(tmp_path / "silent")
    assert plain["cancelled_after_warning"] == silent["cancelled_after_warning"] == 0
    assert not world.cancelled


def test_fit_and_scenario_set_the_chance():
    assert reactions.p_heed("marketplace", "link_shared") == reactions.HEED["marketplace"][0]
    assert reactions.p_heed("marketplace", "new_card") == reactions.HEED["marketplace"][1]
    assert reactions.p_heed(None, "link_shared") == reactions.ABANDON
    for scenario, codes in reactions.FITS.items():
        fit, other = reactions.HEED[scenario]
        assert 0 < other < fit < 1 and codes
    assert set(reactions.FITS) == set(reactions.HEED)


# --- live: the real messaging and payment services ---------------------------------------------
@pytest.mark.kafka
@aio
async def test_the_live_client_reads_the_warning_and_cancels_in_time(kafka, monkeypatch):
    # room for the warn to come before the deadline on a loaded machine; a long cooling-off
    monkeypatch.setenv("VIGIE_AVAILABILITY_DELAY_S", "5")
    monkeypatch.setenv("VIGIE_WARN_COOLING_OFF_S", "30")
    monkeypatch.setattr(live, "WARNING_LOOK_S", 0.1)
    sender, paid_sender = rid(), rid()
    async with serving(messaging) as m, serving(payment) as p, publisher() as pub, \
            aiohttp.ClientSession() as session:
        urls = {"messaging": str(m.make_url("")).rstrip("/"),
                "payment": str(p.make_url("")).rstrip("/"), "assistant": "http://unused"}
        client = live.ServiceClient(session, urls, live.Pacer(1000))
        tid = await client.handle(live.rq.TransferRequest(sender=sender, recipient=rid(),
                                                          amount_cents=12_000))
        none_yet = await client.handle(WarningFor(sender, tid))
        view = await (await p.get(f"/v1/transfers/{tid}", headers=as_user(sender))).json()
        # the stream's decision and its tailored warning, as the decide stage builds them
        feature = next(f for f, code in WARNING_CODES.items() if code == FITTING)
        decision = s.Decision(id=uuid.uuid4().hex, ts=now_ms(), transfer_id=tid,
                              sender=view["sender"], recipient=view["recipient"],
                              amount_cents=12_000, action="warn", score=0.4, model_version="m",
                              reasons=[s.ReasonCode(feature=feature, value=1.0, contribution=0.5)])
        await pub.publish("decisions", decision)
        await pub.publish("notifications", notification_for(decision))

        async def code():
            return await client.handle(WarningFor(sender, tid))
        seen = await eventually(code)
        took = await client.handle(CancelTransfer(sender, tid))
        history = [h["status"] for h in (await (await p.get(
            f"/v1/transfers/{tid}", headers=as_user(sender))).json())["history"]]
        # too late: a transfer already paid out is not cancelled, and that is no error
        other = await client.handle(live.rq.TransferRequest(sender=paid_sender, recipient=rid(),
                                                            amount_cents=500))
        other_view = await (await p.get(f"/v1/transfers/{other}",
                                        headers=as_user(paid_sender))).json()
        await pub.publish("decisions", s.Decision(
            id=uuid.uuid4().hex, ts=now_ms(), transfer_id=other, sender=acc(paid_sender),
            recipient=other_view["recipient"], amount_cents=500, action="approve", score=0.0,
            model_version="m"))

        async def paid():
            resp = await p.get(f"/v1/transfers/{other}", headers=as_user(paid_sender))
            return (await resp.json())["status"] == "paid_out"
        await eventually(paid, timeout=20)
        late = await client.handle(CancelTransfer(paid_sender, other))
    assert none_yet is None and seen == FITTING
    assert took is True and history == ["pending", "warned", "cancelled", "returned"]
    assert late is False and client.cancelled == 1 and not client.errors, client.errors
