"""Fraud scenarios, each a script with its ground truth.

Codes (``Label.scenario``):

- ``ato``: account takeover. Failed logins, then a login and a ``device_added`` from a new
  device and IP (often another country), credential changes, "friend in need" messages
  (money request + urgency) to many contacts, and transfers out to new recipients. Friends
  who pay report it hours later; the takeover itself is confirmed (``ato_confirmed`` with the
  compromise window) once the owner notices.
- ``romance``, ``marketplace``, ``impersonation``: authorised push-payment scams. A new
  account contacts the victim, urgency, links or phone numbers, the victim pays the
  scammer (often through the assistant's own suggestion) and reports it hours later.
- ``stolen_card``: a new account registers a stolen card and spends it on accounts of the
  ring; ``card_testing``: many small transfers funded by newly registered cards. Both end
  in chargebacks weeks later.
- ``mule``: a money-mule ring: victims of lures pay a few mule accounts (fan-in; recruited
  members or new accounts), each mule sends the money on to a collector within minutes (fast
  cash-out). Victims report; nobody reports the cash-out, which carries no label.
- ``fake_account_farm``: many signups sharing a couple of device hashes, an IP and cards,
  spam, then card-funded transfers to a collector; chargebacks.

``DEFAULT_MIX`` gives each scenario's rate in cases per 1,000 users per simulated day.
"""
from __future__ import annotations

from typing import Callable, Optional

from pipelines.requests import ChargebackRequest, ScamReportRequest, TakeoverReportRequest
from pipelines.simulator.population import FRAUD_COUNTRIES, User, new_card, new_device, new_ip
from pipelines.simulator.world import (Script, World, crook, mule_account, onboard, open_app,
                                       pay_after_talk)

EURO = 100
DEFAULT_MIX: dict[str, float] = {
    "ato": 0.6, "romance": 0.3, "marketplace": 0.6, "impersonation": 0.6,
    "stolen_card": 0.4, "card_testing": 0.3, "mule": 0.15, "fake_account_farm": 0.1,
}
CREDENTIAL_CHANGES = ("password_reset", "email_changed", "phone_changed")


# --- pieces shared by the scenarios ----------------------------------------------------------
def _new_account(w: World, role: str, lang: Optional[str] = None, **where) -> Script:
    user = w.pop.add(role, lang=lang, **where)
    yield from onboard(w, user)
    return user


def _exchange(w: World, a: User, b: User, intent: str, turns: int) -> Script:
    """``a`` writes ``intent`` messages, ``b`` answers with small talk."""
    for _ in range(turns):
        yield w.say(a, b, intent)
        yield w.wait("reply")
        yield w.say(b, a, "chat")
        yield w.wait("reply")


def _victim_pays(w: World, code: str, victim: User, scammer: User, amount: int,
                 must_pay: bool = True) -> Script:
    """The victim pays the scammer, and reports it later."""
    transfer_id = yield from pay_after_talk(w, victim, scammer, amount, must_pay=must_pay)
    if transfer_id:
        w.count(code, "transfers")
        w.later("scam_report", ScamReportRequest(reporter=victim.id, reported=scammer.id,
                                                 transfer_id=transfer_id, category=code,
                                                 occurred_ts=w.now()))
    return transfer_id


def _fraud_transfer(w: World, code: str, sender: User, recipient: User, amount: int,
                    card: Optional[str] = None, **where) -> Script:
    """A transfer made by a fraudster; a card-funded one comes back as a chargeback."""
    transfer_id = yield w.transfer(sender, recipient, amount, card=card, **where)
    if transfer_id:
        w.count(code, "transfers")
        if card:
            w.later("chargeback", ChargebackRequest(transfer_id=transfer_id, category=code))
    return transfer_id


def _listing_lure(w: World, scammer: User, victim: User, amount: int) -> Script:
    yield w.say(victim, scammer, "buyer")
    yield w.wait("reply")
    yield w.say(scammer, victim, "listing", amount)
    yield w.wait("reply")
    yield w.say(victim, scammer, "chat")
    yield w.wait("reply")
    yield w.say(scammer, victim, "listing_pay", amount)


def _impersonation_lure(w: World, scammer: User, victim: User, amount: int) -> Script:
    yield w.say(scammer, victim, "impersonate")
    yield w.wait("reply")
    yield w.say(victim, scammer, "chat")
    yield w.wait("reply")
    yield w.say(scammer, victim, "impersonate_ask", amount)


# --- authorised push-payment scams -------------------------------------------------------------
def romance(w: World) -> Script:
    rng = w.rng
    victim = w.member()
    scammer = yield from _new_account(w, "scammer", lang=victim.lang)
    yield from open_app(w, victim)
    for _ in range(rng.randint(2, 4)):  # courtship
        yield from _exchange(w, scammer, victim, "flirt", rng.randint(1, 3))
        yield w.wait("session")
    amounts = (300, 500, 800, 1200, 2000, 3000, 5000)
    step = rng.randrange(3)
    for ask in range(rng.randint(1, 3)):  # each ask bigger than the last
        amount = amounts[step + 2 * ask] * EURO
        yield w.say(scammer, victim, "romance_ask", amount)
        if not (yield from _victim_pays(w, "romance", victim, scammer, amount, must_pay=ask == 0)):
            return
        yield w.wait("reply")
        yield w.say(scammer, victim, "flirt")
        yield w.wait("session")


def marketplace(w: World) -> Script:
    victim = w.member()
    scammer = yield from _new_account(w, "scammer", lang=victim.lang)
    yield from open_app(w, victim)
    amount = w.rng.choice((80, 120, 150, 250, 350, 450, 600)) * EURO
    yield from _listing_lure(w, scammer, victim, amount)
    yield from _victim_pays(w, "marketplace", victim, scammer, amount)


def impersonation(w: World) -> Script:
    rng = w.rng
    victim = w.member()
    scammer = yield from _new_account(w, "scammer", lang=victim.lang)
    yield from open_app(w, victim)
    amount = rng.choice((200, 350, 500, 900, 1500, 2500)) * EURO
    yield from _impersonation_lure(w, scammer, victim, amount)
    if (yield from _victim_pays(w, "impersonation", victim, scammer, amount)) and rng.random() < 0.4:
        yield w.wait("reply")
        yield w.say(scammer, victim, "impersonate_ask", amount)
        yield from _victim_pays(w, "impersonation", victim, scammer, amount, must_pay=False)


# --- account takeover ----------------------------------------------------------------------------
def ato(w: World) -> Script:
    rng = w.rng
    victim = w.member(min_friends=3)
    device, ip = new_device(rng), new_ip(rng, private=False)
    country = victim.country if rng.random() < 0.4 else rng.choice(FRAUD_COUNTRIES)
    there = dict(device=device, ip=ip, country=country)
    start = victim.compromised_from_ts = victim.taken_over_ts = w.now()
    for _ in range(rng.randint(0, 3)):
        yield w.account(victim, "login_failed", **there)
        yield w.wait("burst")
    yield w.account(victim, "login", **there)
    yield w.account(victim, "device_added", **there)
    for kind in rng.sample(CREDENTIAL_CHANGES, rng.randint(1, 3)):
        yield w.wait("step")
        yield w.account(victim, kind, **there)
    # "friend in need" to many contacts; some of them pay
    contacts = rng.sample(victim.friends, min(len(victim.friends), rng.randint(4, 12)))
    for idx in contacts:
        friend = w.pop[idx]
        amount = rng.choice((150, 200, 250, 300, 400, 500, 800)) * EURO
        yield w.say(victim, friend, "need", amount)
        if rng.random() < 0.35:
            w.spawn(_friend_in_need_pays(w, friend, victim, amount), w.wait("read"))
        yield w.wait("burst")
    # the attacker empties the account to recipients the owner never paid
    transfers = []
    for _ in range(rng.randint(1, 3)):
        yield w.wait("step")
        recipient = yield from crook(w)
        card = victim.card if victim.card and rng.random() < 0.5 else None
        amount = rng.choice((200, 300, 450, 600, 900, 1500)) * EURO
        transfer_id = yield from _fraud_transfer(w, "ato", victim, recipient, amount, card,
                                                 device=device, ip=ip)
        if transfer_id:
            transfers.append((transfer_id, w.now()))
    yield w.wait("ato_duration")
    end, victim.compromised_from_ts = w.now(), None
    for transfer_id, ts in [(None, start), *transfers]:  # the account, then each transfer
        w.later("ato_noticed", TakeoverReportRequest(
            account=victim.id, transfer_id=transfer_id, occurred_ts=ts, compromise_from_ts=start,
            compromise_to_ts=end))


def _friend_in_need_pays(w: World, friend: User, victim: User, amount: int) -> Script:
    yield from open_app(w, friend)
    yield w.say(friend, victim, "victim_ok")
    yield from _victim_pays(w, "ato", friend, victim, amount)


# --- cards -------------------------------------------------------------------------------------------
def stolen_card(w: World) -> Script:
    rng = w.rng
    fraudster = w.pop.add("fraudster")
    fraudster.card = new_card(rng)  # registered right after signup
    yield from onboard(w, fraudster)
    for _ in range(rng.randint(0, 2)):  # does the card work?
        yield w.wait("burst")
        recipient = yield from crook(w)
        yield from _fraud_transfer(w, "stolen_card", fraudster, recipient, rng.randint(100, 300),
                                   fraudster.card)
    for _ in range(rng.randint(2, 4)):
        yield w.wait("step")
        recipient = yield from crook(w)
        yield from _fraud_transfer(w, "stolen_card", fraudster, recipient,
                                   rng.choice((150, 250, 400, 600, 900)) * EURO, fraudster.card)
        yield w.say(fraudster, recipient, "done")


def card_testing(w: World) -> Script:
    rng = w.rng
    tester = w.pop.add("fraudster")
    tester.card = new_card(rng)
    yield from onboard(w, tester)
    cards = [tester.card]
    for _ in range(rng.randint(0, 2)):  # more cards to test
        yield w.wait("burst")
        cards.append(new_card(rng))
        yield w.account(tester, "card_registered", card_number=cards[-1])
    target = yield from crook(w)
    for _ in range(rng.randint(8, 25)):
        yield w.wait("burst")
        yield from _fraud_transfer(w, "card_testing", tester, target, rng.randint(50, 500),
                                   rng.choice(cards))


# --- rings ------------------------------------------------------------------------------------------
def mule(w: World) -> Script:
    rng = w.rng
    ring = []
    for _ in range(rng.randint(2, 4)):
        ring.append((yield from mule_account(w)))
    collector = yield from crook(w)
    delay = 0
    for _ in range(rng.randint(5, 12)):  # fan-in: victims of lures, spread over hours
        w.spawn(_mule_victim(w, w.member(), rng.choice(ring), collector), delay)
        delay += w.wait("session") // 4


def _mule_victim(w: World, victim: User, mule_account: User, collector: User) -> Script:
    rng = w.rng
    yield from open_app(w, victim)
    amount = rng.choice((90, 150, 250, 400, 700)) * EURO
    lure = _listing_lure if rng.random() < 0.5 else _impersonation_lure
    yield from lure(w, mule_account, victim, amount)
    if (yield from _victim_pays(w, "mule", victim, mule_account, amount)):
        yield w.wait("cashout")  # the mule sends it on within minutes, keeping a cut
        yield from _fraud_transfer(w, "mule", mule_account, collector, amount * rng.randint(88, 97) // 100)


def fake_account_farm(w: World) -> Script:
    rng = w.rng
    devices = [new_device(rng) for _ in range(rng.randint(1, 2))]
    cards = [new_card(rng) for _ in range(rng.randint(1, 2))]
    ip, country = new_ip(rng, private=False), rng.choice(FRAUD_COUNTRIES)
    accounts = []
    for _ in range(rng.randint(6, 20)):
        account = w.pop.add("farm", device=rng.choice(devices), ip=ip, country=country)
        account.card, account.iban = rng.choice(cards), None
        yield from onboard(w, account)
        accounts.append(account)
        yield w.wait("burst")
    collector = yield from crook(w)
    for account in accounts:
        for _ in range(rng.randint(0, 2)):
            yield w.say(account, w.member(), "spam")
        yield from _fraud_transfer(w, "fake_account_farm", account, collector,
                                   rng.randint(20, 150) * EURO, account.card)
        yield w.wait("burst")


SCENARIOS: dict[str, Callable[[World], Script]] = {
    "ato": ato, "romance": romance, "marketplace": marketplace, "impersonation": impersonation,
    "stolen_card": stolen_card, "card_testing": card_testing, "mule": mule,
    "fake_account_farm": fake_account_farm,
}


def start(w: World, code: str) -> Script:
    """One case of scenario ``code``."""
    w.count(code, "cases")
    return SCENARIOS[code](w)


def check_mix(mix: Optional[dict]) -> dict[str, float]:
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = sorted(set(mix) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: {sorted(SCENARIOS)}")
    return mix
