"""Fraud scenarios, each a script with its ground truth. Codes (``Label.scenario``): ``ato``,
``romance``, ``marketplace``, ``impersonation``, ``stolen_card``, ``card_testing``, ``mule``,
``fake_account_farm``. Not every fraud gets a label (``P_REPORTED``, ``P_DISPUTED``,
``P_CONFIRMED``; mules' cash-outs never). ``DEFAULT_MIX`` gives each scenario's rate in cases
per 1,000 users per simulated day (about 0.4 % of transfers are fraud, 0.3 % with a label).

What each scenario does: docs/simulator.md#fraud
"""
from __future__ import annotations

from typing import Callable, Optional

from pipelines.services.requests import ChargebackRequest, ScamReportRequest, TakeoverReportRequest
from pipelines.simulator.population import FRAUD_COUNTRIES, User, new_card, new_device, new_ip
from pipelines.simulator.world import (Script, World, crook, fraud_account, mule_account, onboard,
                                       open_app, pay_after_talk)

EURO = 100
DEFAULT_MIX: dict[str, float] = {
    "ato": 0.25, "romance": 0.07, "marketplace": 0.12, "impersonation": 0.12,
    "stolen_card": 0.14, "card_testing": 0.05, "mule": 0.035, "fake_account_farm": 0.025,
}
CREDENTIAL_CHANGES = ("password_reset", "email_changed", "phone_changed")
P_REPORTED = 0.65  # scam victims who report (the others never tell: their fraud has no label)
P_DISPUTED = 0.85  # stolen or tested cards whose holder disputes the payments
P_CONFIRMED = 0.85  # takeovers the owner notices and gets confirmed
P_AGED_SCAMMER = 0.55  # scams that collect on an account that does not look new


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


def _small_talk_first(w: World, scammer: User, victim: User) -> Script:
    """Half the time, a scam opens with a plain conversation, over a session or two."""
    rng = w.rng
    if rng.random() < 0.5:
        yield w.say(scammer, victim, "greet")
        yield w.wait("reply")
        yield from _exchange(w, victim, scammer, "chat", rng.randint(1, 3))
        if rng.random() < 0.5:
            yield w.wait("session")


def _victim_pays(w: World, code: str, victim: User, scammer: User, amount: int,
                 must_pay: bool = True, reports: bool = True) -> Script:
    """The victim pays the scammer, and reports it later if ``reports`` (a warning heeded
    too: it showed them the scam). Returns the transfer id, None if not paid or called off."""
    def sent(transfer_id: str) -> None:
        w.fraud(code, transfer_id)
        w.deceived.add(transfer_id)
        if reports:
            w.later("scam_report", ScamReportRequest(reporter=victim.id, reported=scammer.id,
                                                     transfer_id=transfer_id, category=code,
                                                     occurred_ts=w.now()))
    return (yield from pay_after_talk(w, victim, scammer, amount, must_pay=must_pay,
                                      victim_of=code, sent=sent))


def _reports(w: World) -> bool:
    return w.rng.random() < P_REPORTED


def _fraud_transfer(w: World, code: str, sender: User, recipient: User, amount: int,
                    card: Optional[str] = None, disputed: bool = True, **where) -> Script:
    """A transfer made by a fraudster; a card-funded one comes back as a chargeback when the
    card's holder disputes it."""
    transfer_id = yield w.transfer(sender, recipient, amount, card=card, **where)
    if transfer_id:
        w.fraud(code, transfer_id)
        if card and disputed:
            w.later("chargeback", ChargebackRequest(transfer_id=transfer_id, category=code))
    return transfer_id


def _scammer(w: World) -> Script:
    return (yield from fraud_account(w, "scammer", P_AGED_SCAMMER))


def _listing_lure(w: World, scammer: User, victim: User, amount: int, smooth: bool = False) -> Script:
    """A fake listing; a ``smooth`` scammer writes as an honest seller does."""
    yield w.say(victim, scammer, "buyer")
    yield w.wait("reply")
    yield w.say(scammer, victim, "sell" if smooth else "listing", amount)
    yield w.wait("reply")
    yield w.say(victim, scammer, "chat")
    yield w.wait("reply")
    yield w.say(scammer, victim, "seller_pay" if smooth else "listing_pay", amount)


def _impersonation_lure(w: World, scammer: User, victim: User, amount: int) -> Script:
    yield w.say(scammer, victim, "impersonate")
    yield w.wait("reply")
    yield w.say(victim, scammer, "chat")
    yield w.wait("reply")
    yield w.say(scammer, victim, "impersonate_ask", amount)


def _campaign(w: World, victims: int, script: Callable[[User], Script]) -> None:
    """One scammer, ``victims`` victims, one after another over days to weeks."""
    delay = 0
    for _ in range(victims):
        w.spawn(script(w.member()), delay)
        delay += w.wait("campaign")


# --- authorised push-payment scams -------------------------------------------------------------
def romance(w: World) -> Script:
    rng = w.rng
    victim = w.member()
    scammer = yield from _scammer(w)
    reports = _reports(w)
    yield from open_app(w, victim)
    for _ in range(rng.randint(2, 5)):  # courtship, over days
        yield from _exchange(w, scammer, victim, "flirt", rng.randint(1, 3))
        yield w.wait("session") * rng.randint(1, 3)
    amounts = (50, 100, 300, 500, 800, 1200, 2000, 3000)
    step = rng.randrange(3)
    for ask in range(rng.randint(1, 3)):  # a small gift first, each ask bigger than the last
        amount = amounts[step + 2 * ask] * EURO
        yield w.say(scammer, victim, "romance_ask", amount)
        if not (yield from _victim_pays(w, "romance", victim, scammer, amount,
                                        must_pay=ask == 0, reports=reports)):
            return
        yield w.wait("reply")
        yield w.say(scammer, victim, "flirt")
        yield w.wait("session") * rng.randint(1, 4)


def marketplace(w: World) -> Script:
    """A fake seller, buyer after buyer, over one to three weeks; half write as honest
    sellers do, and many items are cheap."""
    rng = w.rng
    scammer = yield from _scammer(w)
    smooth = rng.random() < 0.5
    _campaign(w, rng.randint(2, 8), lambda victim: _marketplace_sale(w, scammer, victim, smooth))


def _marketplace_sale(w: World, scammer: User, victim: User, smooth: bool) -> Script:
    yield from open_app(w, victim)
    amount = w.rng.choice((30, 45, 60, 80, 120, 150, 250, 350, 450, 600)) * EURO
    yield from _listing_lure(w, scammer, victim, amount, smooth)
    yield from _victim_pays(w, "marketplace", victim, scammer, amount, reports=_reports(w))


def impersonation(w: World) -> Script:
    """A scammer posing as a relative, a bank or a courier, victim after victim."""
    rng = w.rng
    scammer = yield from _scammer(w)
    _campaign(w, rng.randint(2, 6), lambda victim: _impersonated(w, scammer, victim))


def _impersonated(w: World, scammer: User, victim: User) -> Script:
    rng = w.rng
    reports = _reports(w)
    yield from open_app(w, victim)
    yield from _small_talk_first(w, scammer, victim)
    amount = rng.choice((40, 90, 200, 350, 500, 900, 1500)) * EURO
    yield from _impersonation_lure(w, scammer, victim, amount)
    if (yield from _victim_pays(w, "impersonation", victim, scammer, amount, reports=reports)) \
            and rng.random() < 0.4:
        yield w.wait("reply")
        yield w.say(scammer, victim, "impersonate_ask", amount)
        yield from _victim_pays(w, "impersonation", victim, scammer, amount, must_pay=False,
                                reports=reports)


# --- account takeover ----------------------------------------------------------------------------
def ato(w: World) -> Script:
    rng = w.rng
    victim = w.member(min_friends=3)
    device, ip = new_device(rng), new_ip(rng, private=False)
    country = victim.country if rng.random() < 0.5 else rng.choice(FRAUD_COUNTRIES)
    there = dict(device=device, ip=ip, country=country)
    start = victim.compromised_from_ts = victim.taken_over_ts = w.now()
    for _ in range(rng.choice((0, 0, 1, 2, 3))):
        yield w.account(victim, "login_failed", **there)
        yield w.wait("burst")
    yield w.account(victim, "login", **there)
    yield w.account(victim, "device_added", **there)
    for kind in rng.sample(CREDENTIAL_CHANGES, rng.choice((0, 1, 1, 2, 3))):
        yield w.wait("step")
        yield w.account(victim, kind, **there)
    # "friend in need" to some contacts; a few of them pay
    contacts = rng.sample(victim.friends, min(len(victim.friends), rng.randint(2, 8)))
    for idx in contacts:
        friend = w.pop[idx]
        amount = rng.choice((50, 100, 150, 200, 250, 300, 400, 500, 800)) * EURO
        yield w.say(victim, friend, "need", amount)
        if rng.random() < 0.3:
            w.spawn(_friend_in_need_pays(w, friend, victim, amount), w.wait("read"))
        yield w.wait("burst")
    # the attacker empties the account to the ring's accounts
    transfers = []
    for _ in range(rng.randint(1, 2)):
        yield w.wait("step")
        recipient = yield from crook(w)
        card = victim.card if victim.card and rng.random() < 0.5 else None
        amount = rng.choice((100, 200, 300, 450, 600, 900, 1500)) * EURO
        transfer_id = yield from _fraud_transfer(w, "ato", victim, recipient, amount, card,
                                                 device=device, ip=ip)
        if transfer_id:
            transfers.append((transfer_id, w.now()))
    yield w.wait("ato_duration")
    end, victim.compromised_from_ts = w.now(), None
    if rng.random() < P_CONFIRMED:
        for transfer_id, ts in [(None, start), *transfers]:  # the account, then each transfer
            w.later("ato_noticed", TakeoverReportRequest(
                account=victim.id, transfer_id=transfer_id, occurred_ts=ts,
                compromise_from_ts=start, compromise_to_ts=end))


def _friend_in_need_pays(w: World, friend: User, victim: User, amount: int) -> Script:
    yield from open_app(w, friend)
    yield w.say(friend, victim, "victim_ok")
    yield from _victim_pays(w, "ato", friend, victim, amount, reports=_reports(w))


# --- cards -------------------------------------------------------------------------------------------
def _card_holder(w: World) -> Script:
    """The account a stolen card is used from (returned by ``yield from``): a sleeper or
    a new signup, on a device the ring used before a third of the time."""
    rng = w.rng
    fraudster = w.sleeper("fraudster") if rng.random() < 0.4 else None
    if fraudster is None:
        device = rng.choice(w.ring_devices) if w.ring_devices and rng.random() < 0.35 else None
        fraudster = w.pop.add("fraudster", device=device)
        yield from onboard(w, fraudster)
    w.ring_devices.append(fraudster.device)
    return fraudster


def stolen_card(w: World) -> Script:
    rng = w.rng
    fraudster = yield from _card_holder(w)
    card = new_card(rng)
    disputed = rng.random() < P_DISPUTED
    yield w.wait("step")
    yield w.account(fraudster, "card_registered", card_number=card)
    if rng.random() < 0.5:  # lets the card age a little
        yield w.wait("session") * rng.randint(1, 4)
    if rng.random() < 0.6:  # does the card work?
        recipient = yield from crook(w)
        yield from _fraud_transfer(w, "stolen_card", fraudster, recipient, rng.randint(5, 40) * EURO,
                                   card, disputed)
        yield w.wait("session")
    for _ in range(rng.randint(1, 4)):
        yield w.wait("step")
        recipient = yield from crook(w)
        yield from _fraud_transfer(w, "stolen_card", fraudster, recipient,
                                   rng.choice((60, 100, 150, 250, 400, 600, 900)) * EURO, card,
                                   disputed)
        yield w.say(fraudster, recipient, "done")


def card_testing(w: World) -> Script:
    rng = w.rng
    tester = yield from _card_holder(w)
    cards = [new_card(rng) for _ in range(rng.randint(1, 3))]
    disputed = rng.random() < P_DISPUTED
    for card in cards:  # cards to test
        yield w.wait("burst")
        yield w.account(tester, "card_registered", card_number=card)
    target = yield from crook(w)
    for _ in range(rng.randint(3, 10)):
        yield w.wait("burst")
        yield from _fraud_transfer(w, "card_testing", tester, target, rng.randint(50, 500),
                                   rng.choice(cards), disputed)


# --- rings ------------------------------------------------------------------------------------------
def mule(w: World) -> Script:
    rng = w.rng
    ring = []
    for _ in range(rng.randint(2, 4)):
        ring.append((yield from mule_account(w)))
    collector = yield from crook(w)
    # fan-in: victims of lures, over one to three weeks
    _campaign(w, rng.randint(5, 12), lambda victim: _mule_victim(w, victim, rng.choice(ring), collector))


def _mule_victim(w: World, victim: User, mule_account: User, collector: User) -> Script:
    rng = w.rng
    yield from open_app(w, victim)
    amount = rng.choice((40, 90, 150, 250, 400, 700)) * EURO
    lure = _listing_lure if rng.random() < 0.5 else _impersonation_lure
    yield from lure(w, mule_account, victim, amount)
    if (yield from _victim_pays(w, "mule", victim, mule_account, amount, reports=_reports(w))):
        yield w.wait("cashout")  # the mule sends it on within minutes, keeping a cut
        yield from _fraud_transfer(w, "mule", mule_account, collector, amount * rng.randint(88, 97) // 100)


def fake_account_farm(w: World) -> Script:
    """Signups over hours from a handful of devices and networks, each device and card
    shared by a few accounts, then card-funded payments to a collector."""
    rng = w.rng
    size = rng.randint(6, 15)
    devices = [new_device(rng) for _ in range(max(1, size // rng.randint(2, 4)))]
    cards = [new_card(rng) for _ in range(max(1, size // rng.randint(3, 5)))]
    ips, country = [new_ip(rng, private=False) for _ in range(rng.randint(1, 3))], rng.choice(FRAUD_COUNTRIES)
    disputed = rng.random() < P_DISPUTED
    accounts = []
    for _ in range(size):
        account = w.pop.add("farm", device=rng.choice(devices), ip=rng.choice(ips), country=country)
        account.card, account.iban = rng.choice(cards), None
        yield from onboard(w, account)
        accounts.append(account)
        yield w.wait("session") // 8  # minutes to hours apart
    collector = yield from crook(w)
    for account in accounts:
        for _ in range(rng.randint(0, 2)):
            yield w.say(account, w.member(), "spam")
        yield from _fraud_transfer(w, "fake_account_farm", account, collector,
                                   rng.randint(20, 150) * EURO, account.card, disputed)
        yield w.wait("step")


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
