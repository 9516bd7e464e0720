"""Legitimate behaviour: friends chatting, splitting bills, paying rent, lending, giving,
inviting friends who are not on the app yet, and looking after their accounts.

``episode`` picks what a member does next with one of their friends. The weights are set
so that, on average, a transfer comes with about ten messages and three account events
(the mix the benchmarks assume). Legitimate behaviour deliberately overlaps fraud's
signals (money requests, new phones, password resets, trips abroad) so that a model has
to weigh them rather than match them.
"""
from __future__ import annotations

from pipelines.simulator.population import TRAVEL_COUNTRIES, User, new_ip
from pipelines.simulator.world import (AssistantSwitch, Script, World, new_phone, onboard,
                                       open_app, pay_after_talk)

EURO = 100


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


def settle_up(w: World, creditor: User, payer: User, kind: str) -> Script:
    """``creditor`` paid for something (``kind``: split or rent) and tells ``payer`` their
    share; the payer answers the assistant's suggestion, or pays by hand."""
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
    if (yield from pay_after_talk(w, payer, creditor, amount)) and rng.random() < 0.7:
        yield w.wait("reply")
        yield w.say(creditor, payer, "thanks")


def lend(w: World, borrower: User, lender: User) -> Script:
    """A legitimate money request, paid back some days later."""
    rng = w.rng
    amount = rng.choice((20, 30, 40, 50, 60, 80, 100, 150, 200, 300)) * EURO
    yield from open_app(w, borrower)
    yield from _small_talk(w, borrower, lender, 2)
    yield w.say(borrower, lender, "lend", amount)
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
    if (yield w.transfer(payer, payee, amount, card=card)) and rng.random() < 0.8:
        yield w.wait("reply")
        yield w.say(payee, payer, "thanks")


def invite(w: World, user: User) -> Script:
    """``user`` owes a friend who is not on the app yet: the friend signs up to be paid (how
    payment apps grow), then chats and pays like any member. New accounts that receive
    money right away are thus mostly legitimate, as they are in life."""
    rng = w.rng
    newcomer = w.pop.add("member", lang=user.lang, country=user.country)
    circle = rng.sample(user.friends, min(len(user.friends), rng.randint(0, 3)))
    newcomer.friends = [user.idx, *circle]
    for idx in newcomer.friends:
        w.pop[idx].friends.append(newcomer.idx)
    w.members.append(newcomer)
    yield w.wait("session")
    yield from onboard(w, newcomer)
    yield w.wait("step")
    yield from settle_up(w, newcomer, user, "split")


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
    """What ``user`` does next, with one of their friends."""
    rng = w.rng
    friend = w.friend_of(user)
    draw = rng.random()
    if draw < 0.41:
        return chat(w, user, friend)
    if draw < 0.43:
        return invite(w, user)
    if draw < 0.70:
        return settle_up(w, user, friend, "split")
    if draw < 0.73:
        return settle_up(w, user, friend, "rent")
    if draw < 0.83:
        return lend(w, user, friend)
    if draw < 0.97:
        return give(w, user, friend)
    return look_after_account(w, user)
