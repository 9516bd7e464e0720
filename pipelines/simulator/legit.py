"""Legitimate behaviour: ``episode`` picks what a member does next (chatting, splitting bills,
paying rent, lending, buying second-hand, a kitty, travelling, changing phones...), mostly with
one of their friends: on average a transfer comes with about ten messages and three account
events. Honest people look risky as often as they do in life, and a few honest payments are
disputed.

The catalogue and why: docs/simulator.md#legit
"""
from __future__ import annotations

from typing import Optional

from pipelines.services.requests import ChargebackRequest, ScamReportRequest
from pipelines.simulator.population import TRAVEL_COUNTRIES, User, new_ip
from pipelines.simulator.world import (AnalystVerdict, AssistantSwitch, Script, World, new_phone,
                                       onboard, open_app, pay, pay_after_talk)

EURO = 100
LEGIT_DISPUTE = "legit_dispute"  # the simulator's truth on a dispute of an honest payment
P_CARD_DISPUTE = 0.002  # honest card payments charged back ("I don't recognise this")
P_SALE_REPORT = 0.005  # second-hand sales reported as a scam (a late parcel, a buyer's remorse)
P_CLEARED = 0.6  # of those disputes, the share an analyst later finds legitimate


def chat(w: World, a: User, b: User) -> Script:
    """Small talk, sometimes with money words that lead nowhere."""
    rng = w.rng
    yield from open_app(w, a)
    yield w.say(a, b, "greet")
    speaker, other = b, a
    for _ in range(rng.randint(2, 13)):
        yield w.wait("reply")
        yield w.say(speaker, other, "plans" if rng.random() < 0.08 else "chat")
        if rng.random() < 0.7:
            speaker, other = other, speaker


def _small_talk(w: World, a: User, b: User, most: int) -> Script:
    for _ in range(w.rng.randint(0, most)):
        yield w.say(a, b, "chat")
        yield w.wait("reply")
        a, b = b, a


def settle_up(w: World, creditor: User, payer: User, kind: str, ip: Optional[str] = None) -> Script:
    """``creditor`` paid for something (``kind``: split or rent) and tells ``payer`` their
    share; the payer answers the assistant's suggestion, or pays by hand (from ``ip`` when
    away from home)."""
    rng = w.rng
    amount = (rng.randrange(250, 900, 10) * EURO if kind == "rent"
              else rng.randint(5, 80) * EURO + (50 if rng.random() < 0.3 else 0))
    yield from open_app(w, creditor)
    yield from _small_talk(w, creditor, payer, 3)
    if rng.random() < 0.3:
        yield w.say(payer, creditor, "ask_amount")
        yield w.wait("reply")
    yield w.say(creditor, payer, kind, amount)
    yield from open_app(w, payer)
    if rng.random() < 0.4:
        yield w.say(payer, creditor, "will_pay")
    transfer_id = yield from pay_after_talk(w, payer, creditor, amount, ip=ip)
    if transfer_id:
        _may_dispute(w, transfer_id, payer, creditor)
        if rng.random() < 0.7:
            yield w.wait("reply")
            yield w.say(creditor, payer, "thanks")


def lend(w: World, borrower: User, lender: User) -> Script:
    """A legitimate money request, paid back some days later; a quarter of the time an
    urgent one (a forgotten wallet, a taxi), as a friend in need's."""
    rng = w.rng
    urgent = rng.random() < 0.25
    amount = rng.choice((20, 30, 40, 50, 60, 80, 100, 150, 200, 300)) * EURO
    yield from open_app(w, borrower)
    yield from _small_talk(w, borrower, lender, 0 if urgent else 2)
    yield w.say(borrower, lender, "short_of_cash" if urgent else "lend", amount)
    yield from open_app(w, lender)
    yield w.say(lender, borrower, "will_pay")
    if (yield from pay_after_talk(w, lender, borrower, amount)) and rng.random() < 0.6:
        w.spawn(give(w, borrower, lender, "repay", amount), w.wait("session") * 3)


def give(w: World, payer: User, payee: User, kind: str = "gift", amount: int = 0) -> Script:
    """``payer`` sends money of their own accord (a gift, a repayment), usually with a word
    first; a third of the time without one (they agreed face to face), so that a transfer
    with no talk before it is not fraud by itself."""
    rng = w.rng
    amount = amount or rng.choice((10, 15, 20, 25, 30, 40, 50, 100)) * EURO
    yield from open_app(w, payer)
    if rng.random() < 2 / 3:
        yield w.say(payer, payee, kind, amount)
        yield w.wait("step")
    card = payer.card if payer.card and rng.random() < 0.3 else None
    transfer_id = yield from pay(w, w.transfer(payer, payee, amount, card=card))
    if transfer_id:
        _may_dispute(w, transfer_id, payer, payee, card)
        if rng.random() < 0.8:
            yield w.wait("reply")
            yield w.say(payee, payer, "thanks")


def _newcomer(w: World, user: User, circle: Optional[int]) -> User:
    """A new member who knows ``user`` and up to ``circle`` of their friends (``circle``
    None: a stranger to ``user``, from the same place)."""
    newcomer = w.pop.add("member", lang=user.lang, country=user.country)
    if circle is None:
        newcomer.friends = [w.member().idx]
    else:
        friends = w.rng.sample(user.friends, min(len(user.friends), w.rng.randint(0, circle)))
        newcomer.friends = [user.idx, *friends]
    for idx in newcomer.friends:
        w.pop[idx].friends.append(newcomer.idx)
    w.members.append(newcomer)
    return newcomer


def invite(w: World, user: User) -> Script:
    """A friend of ``user``'s is not on the app yet and signs up to settle a debt (how
    payment apps grow): to be paid, or, a third of the time, to pay right away, sometimes with
    the card just registered. Then they chat and pay like any member. New accounts that
    receive or send money within the hour are thus mostly legitimate, as they are in life."""
    newcomer = _newcomer(w, user, 3)
    yield w.wait("session")
    yield from onboard(w, newcomer)
    yield w.wait("step")
    if w.rng.random() < 1 / 3:
        yield from settle_up(w, user, newcomer, "split")
    else:
        yield from settle_up(w, newcomer, user, "split")


def buy(w: World, buyer: User) -> Script:
    """``buyer`` answers a stranger's listing (second-hand goods): a first conversation, a
    link to the ad, the price, a first payment to someone they never paid. Some sellers
    joined the app to sell. Now and then the parcel is late and the buyer reports a scam."""
    rng = w.rng
    if rng.random() < 0.1:  # a new seller signs up
        seller = _newcomer(w, buyer, None)
        yield from onboard(w, seller)
        yield w.wait("session")
    else:
        seller = w.member()
    amount = rng.choice((10, 15, 20, 30, 45, 60, 80, 120, 150, 250, 400, 600)) * EURO
    yield from open_app(w, buyer)
    yield w.say(buyer, seller, "buyer")
    yield w.wait("reply")
    yield w.say(seller, buyer, "sell", amount)
    yield from _small_talk(w, buyer, seller, 2)
    yield w.say(seller, buyer, "seller_pay", amount)
    transfer_id = yield from pay_after_talk(w, buyer, seller, amount, p_skip=0.25)
    if transfer_id:
        _may_dispute(w, transfer_id, buyer, seller, report=P_SALE_REPORT)
        yield w.wait("reply")
        yield w.say(seller, buyer, "thanks")


def deposit(w: World, payer: User) -> Script:
    """A large, urgent first payment to someone new: a flat's deposit to a landlord, a car's
    down payment; the payee asks, with a phone number or a deadline."""
    rng = w.rng
    payee = w.member()
    amount = rng.randrange(500, 2500, 50) * EURO
    yield from open_app(w, payee)
    yield w.say(payee, payer, "deposit", amount)
    yield from open_app(w, payer)
    yield w.say(payer, payee, "will_pay")
    yield from pay_after_talk(w, payer, payee, amount, must_pay=True)


def kitty(w: World, organiser: User) -> Script:
    """``organiser`` collects everyone's share (a present, a weekend cottage) from their
    friends, then pays the total on, often to someone outside the group, within minutes to
    hours of the last share: many senders and a fast pass-on, as a mule's."""
    rng = w.rng
    share = rng.randint(10, 60) * EURO
    paid: list[int] = []
    friends = rng.sample(organiser.friends, min(len(organiser.friends), rng.randint(3, 8)))
    yield from open_app(w, organiser)
    for idx in friends:
        w.spawn(_chip_in(w, organiser, w.pop[idx], share, paid), w.wait("burst"))
    yield w.wait("session") // 3
    if paid:
        yield from open_app(w, organiser, p_login=0.3)
        payee = w.member() if rng.random() < 0.7 else w.friend_of(organiser)
        yield from pay(w, w.transfer(organiser, payee, sum(paid) + share))


def _chip_in(w: World, organiser: User, friend: User, share: int, paid: list) -> Script:
    yield w.say(organiser, friend, "kitty", share)
    if (yield from pay_after_talk(w, friend, organiser, share, p_skip=0.2)):
        paid.append(share)


def travel(w: World, user: User) -> Script:
    """Abroad: a login from another country on a hotel's or a café's network, sometimes on a
    phone bought there, then paying a friend their share from there."""
    rng = w.rng
    ip, country = new_ip(rng, private=False), rng.choice(TRAVEL_COUNTRIES)
    if rng.random() < 0.15:
        yield from new_phone(w, user, ip=ip, country=country)
    yield w.account(user, "login", ip=ip, country=country)
    yield w.wait("step")
    yield from settle_up(w, w.friend_of(user), user, "split", ip=ip)


def new_phone_and_pay(w: World, user: User) -> Script:
    """A new phone, and a payment from it within the hour: a takeover's first signals."""
    yield from new_phone(w, user)
    yield w.wait("step")
    yield from give(w, user, w.friend_of(user))


def _may_dispute(w: World, transfer_id: str, payer: User, payee: User,
                 card: Optional[str] = None, report: float = 0.0) -> None:
    """An honest payment disputed: a card payment charged back (``P_CARD_DISPUTE``), or,
    with probability ``report``, a scam report against the payee."""
    rng = w.rng
    if card and rng.random() < P_CARD_DISPUTE:
        w.spawn(_disputed(w, transfer_id, payer, payee, "sender"))
    elif report and rng.random() < report:
        w.spawn(_disputed(w, transfer_id, payer, payee, "recipient"))


def _disputed(w: World, transfer_id: str, payer: User, payee: User, party: str) -> Script:
    """The dispute arrives as a fraud label; an analyst reviews it and, ``P_CLEARED`` of the
    time, finds the payment legitimate (an ``analyst_verdict`` that is not fraud)."""
    paid_ts = w.now()
    if party == "sender":
        yield w.wait("chargeback")
        yield ChargebackRequest(transfer_id=transfer_id, category=LEGIT_DISPUTE)
    else:
        yield w.wait("scam_report")
        yield ScamReportRequest(reporter=payer.id, reported=payee.id, transfer_id=transfer_id,
                                category=LEGIT_DISPUTE, occurred_ts=paid_ts)
    if w.rng.random() < P_CLEARED:
        yield w.wait("verdict")
        yield AnalystVerdict(transfer_id=transfer_id, sender=payer.id, recipient=payee.id,
                             party=party, is_fraud=False, occurred_ts=paid_ts,
                             scenario=LEGIT_DISPUTE)


def look_after_account(w: World, user: User) -> Script:
    """Account maintenance that looks like a takeover's first steps, done by the owner."""
    rng = w.rng
    draw = rng.random()
    if draw < 0.3:
        yield from new_phone(w, user)
    elif draw < 0.55:
        yield w.account(user, "login_failed")
        yield w.wait("step")
        yield w.account(user, "password_reset")
        yield w.account(user, "login")
    elif draw < 0.7:
        yield w.account(user, rng.choice(("email_changed", "phone_changed")))
    elif draw < 0.9:  # abroad: a login from another country and another network
        yield w.account(user, "login", ip=new_ip(rng, private=False), country=rng.choice(TRAVEL_COUNTRIES))
    else:  # switches the assistant
        user.assistant = not user.assistant
        yield AssistantSwitch(user.id, user.assistant)


def episode(w: World, user: User) -> Script:
    """What ``user`` does next, mostly with one of their friends."""
    rng = w.rng
    friend = w.friend_of(user)
    draw = rng.random()
    if draw < 0.40:
        return chat(w, user, friend)
    if draw < 0.41:
        return invite(w, user)
    if draw < 0.64:
        return settle_up(w, user, friend, "split")
    if draw < 0.67:
        return settle_up(w, user, friend, "rent")
    if draw < 0.76:
        return lend(w, user, friend)
    if draw < 0.88:
        return give(w, user, friend)
    if draw < 0.925:
        return buy(w, user)
    if draw < 0.93:
        return deposit(w, user)
    if draw < 0.94:
        return kitty(w, user)
    if draw < 0.955:
        return travel(w, user)
    if draw < 0.97:
        return new_phone_and_pay(w, user)
    return look_after_account(w, user)
