"""Hard limits (``pipelines.contracts.limits``), enforced by the payment service before Kafka:
an amount over the per-transfer maximum, a currency not allowed, and a new account past its
daily limit are refused with 422 and the reason, and nothing reaches ``transfer-requests``."""
from __future__ import annotations

import pytest
from service_support import Tap, acc, aio, as_user, rid, serving

from pipelines.contracts import limits
from pipelines.services import payment
from tests.console import test_console as console_support

pytestmark = pytest.mark.kafka


@pytest.fixture
def small_limits(monkeypatch):
    monkeypatch.setenv("VIGIE_MAX_TRANSFER_CENTS", "100000")  # 1,000.00
    monkeypatch.setenv("VIGIE_CURRENCIES", "EUR,CHF")
    monkeypatch.setenv("VIGIE_NEW_ACCOUNT_DAILY_CENTS", "150000")  # 1,500.00 a day
    monkeypatch.setenv("VIGIE_NEW_ACCOUNT_DAYS", "7")


async def send(client, sender: str, amount: int, currency: str = "EUR") -> tuple[int, dict]:
    resp = await client.post("/v1/transfers", headers=as_user(sender), json={
        "sender": sender, "recipient": rid(), "amount_cents": amount, "currency": currency})
    return resp.status, await resp.json()


@aio
async def test_over_limit_amounts_and_currencies_are_refused_before_kafka(kafka, small_limits):
    sender = rid()
    async with Tap("transfer-requests") as tap, serving(payment) as client:
        refused = [await send(client, sender, 100_001),
                   await send(client, sender, 1000, "XXX"),
                   await send(client, sender, 1_000_000_000, "XXX")]  # the probe
        allowed = [await send(client, sender, 100_000), await send(client, sender, 500, "CHF")]
        await tap.drain()
    assert [s for s, _ in refused] == [422, 422, 422]
    assert "over the per-transfer limit of 1,000.00 EUR" in refused[0][1]["error"]
    assert refused[1][1]["error"] == "currency XXX not allowed (allowed: EUR, CHF)"
    assert "currency XXX not allowed" in refused[2][1]["error"]
    assert [s for s, _ in allowed] == [201, 201]
    logged = [e for e in tap.events("transfer-requests") if e.sender == acc(sender)]
    assert sorted(e.transfer_id for e in logged) == sorted(b["transfer_id"] for _, b in allowed)


@aio
async def test_a_new_account_past_its_daily_limit_is_refused(kafka, small_limits, monkeypatch):
    sender, veteran = rid(), rid()
    async with Tap("transfer-requests") as tap, serving(payment) as client:
        made = [await send(client, sender, 80_000), await send(client, sender, 70_000)]
        over = await send(client, sender, 1)  # 1,500.01 in 24 h
        other = await send(client, rid(), 90_000)  # another new account: its own day
        await tap.drain()
    assert [s for s, _ in made] == [201, 201] and other[0] == 201
    assert over[0] == 422
    assert over[1]["error"] == ("new account (first transfer less than 7 days ago): over its "
                                "limit of 1,500.00 a day (1,500.00 sent in the last 24 h)")
    assert len([e for e in tap.events("transfer-requests") if e.sender == acc(sender)]) == 2

    # The same amounts from an account that is no longer new (a window of 0 days) pass.
    monkeypatch.setenv("VIGIE_NEW_ACCOUNT_DAYS", "0")
    async with serving(payment) as client:
        assert [(await send(client, veteran, 80_000))[0] for _ in range(3)] == [201, 201, 201]


def test_limits_only_come_from_one_place_and_refuse_nonsense(monkeypatch):
    monkeypatch.setenv("VIGIE_MAX_TRANSFER_CENTS", "0")
    with pytest.raises(ValueError):
        limits.load()
    monkeypatch.delenv("VIGIE_MAX_TRANSFER_CENTS")
    defaults = limits.load()
    assert defaults.currencies == ("EUR",) and defaults.max_amount_cents == 1_000_000
    assert payment.limits_mod is limits  # the service reads them there, as the console does


console = console_support.console  # the console test's fixture: a small lake and users


def test_the_console_shows_the_limits_read_only(console, monkeypatch):
    monkeypatch.setenv("VIGIE_CURRENCIES", "EUR,GBP")
    at = console_support.page("rules_lists", "analyst")
    console_support.ok(at)
    [shown] = [d.value for d in at.dataframe if "setting" in d.value.columns]
    assert list(shown["current"]) == ["10,000.00", "EUR, GBP", "7", "5,000.00"]
    assert list(shown["setting"]) == ["VIGIE_MAX_TRANSFER_CENTS", "VIGIE_CURRENCIES",
                                      "VIGIE_NEW_ACCOUNT_DAYS", "VIGIE_NEW_ACCOUNT_DAILY_CENTS"]
