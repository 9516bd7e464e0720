"""What every agent script sees, and what it can ask for.

A script is a generator: it yields an ``int`` (a delay in ms), a request struct from
``pipelines.services.requests`` (the driver sends it; a ``TransferRequest`` gets back its
transfer id, or ``None`` if refused), or a command below (the assistant's endpoints, a
transfer's warning and its cancel (``pay``), the account owner's side of recovery); it keeps no
state beyond its locals and the ``User`` objects.

Details and why: docs/simulator.md#world
"""
from __future__ import annotations

import random
from typing import Callable, Generator, NamedTuple, Optional

from pipelines.services.requests import (AccountEventRequest, ChargebackRequest, MessageRequest,
                                         RecoveryAnswerRequest, ScamReportRequest,
                                         SuggestionResponseRequest, TakeoverReportRequest,
                                         TransferRequest)
from pipelines.simulator import reactions, texts
from pipelines.simulator.population import Population, User, new_device
from pipelines.simulator.timing import Timing

Script = Generator  # yields int | request | command, receives the result
RECRUITED_SHARE = 0.6  # of the mule accounts: aged accounts (recruited members, sleepers)
SLEEPERS_PER_USER = 1 / 200  # accounts fraud rings registered with the population, kept for later


class Suggestion(NamedTuple):
    """The assistant's open suggestion for ``user`` in ``conversation``: the result is
    ``(suggestion_id, amount_cents or None)``, or ``None`` if there is none."""
    user: str
    conversation: str


class SuggestionResponse(NamedTuple):
    """What the user did with a suggestion; the result says whether the assistant took it
    (it refuses a suggestion that expired or was replaced meanwhile)."""
    suggestion_id: str
    request: SuggestionResponseRequest


class AssistantSwitch(NamedTuple):
    user: str
    enabled: bool


class Challenges(NamedTuple):
    """Live only: the step-up challenges waiting for ``user`` (the messaging service's
    notifications): the result is a list of ``{"id", "ts", "case_id"}``."""
    user: str


class RecoveryAnswer(NamedTuple):
    """Live only: an owner's answer to the challenge of recovery case ``case_id``; the result
    says whether the messaging service took it."""
    case_id: str
    request: RecoveryAnswerRequest


class WarningFor(NamedTuple):
    """The in-chat warning on ``user``'s transfer, if it was warned: the result is its code
    (``features.vector.WARNING_CODES``), or None. Offline nothing decides, so always None."""
    user: str
    transfer_id: str


class CancelTransfer(NamedTuple):
    """Live only: the sender calls the transfer off; the result says whether the payment
    service took it (it refuses once the transfer is paid out)."""
    user: str
    transfer_id: str


class AnalystVerdict(NamedTuple):
    """An analyst's verdict on a disputed transfer (raw ids; ``party``: the side the dispute
    accused, ``sender`` or ``recipient``). Offline it becomes an ``analyst_verdict`` label;
    live, analysts give theirs in the console and the simulator sends none."""
    transfer_id: str
    sender: str
    recipient: str
    party: str
    is_fraud: bool
    occurred_ts: int
    scenario: Optional[str] = None


LABEL_COMMANDS = (ScamReportRequest, ChargebackRequest, TakeoverReportRequest, AnalystVerdict)


class World:
    def __init__(self, seed: int, users: int, timing: Timing, clock: Callable[[], int],
                 spawn: Callable[[Script, int], None]):
        self.rng = random.Random(seed)
        self.pop = Population(self.rng, users)
        self.members = self.pop.members()  # members (invited ones join): victims are drawn here
        self.timing = timing
        self.now = clock  # event time in ms
        self._spawn = spawn
        self.crooks: list[User] = []  # accounts where stolen money lands
        # aged fraud accounts: registered among the population, unused until a ring needs one
        self.sleepers = [self.pop.add("sleeper", disguised=True)
                         for _ in range(max(2, round(users * SLEEPERS_PER_USER)))]
        self._unused_sleepers = self.sleepers[::-1]
        self.ring_devices: list[str] = []  # devices fraudsters used: some come back
        self.by_scenario: dict[str, dict[str, int]] = {}
        self.fraud_transfers: dict[str, str] = {}  # transfer id -> scenario: the ground truth
        self.deceived: set[str] = set()  # fraud transfers a scam victim sent (not a fraudster)
        self.cancelled: dict[str, str] = {}  # transfer id -> the warning code its sender heeded
        # Reactions draw from their own stream: the rest of the run is the same whether or not
        # warnings come (offline none do, so the seeded lakes do not change).
        self.reaction_rng = random.Random(f"{seed}/reactions")

    # --- scheduling ----------------------------------------------------------------------
    def spawn(self, script: Script, delay_ms: int = 0) -> None:
        """Run another script beside this one (a friend answering, a victim reporting)."""
        self._spawn(script, delay_ms)

    def wait(self, kind: str) -> int:
        return self.timing.draw(self.rng, kind)

    def later(self, kind: str, command) -> None:
        """Send ``command`` after a delay of ``kind`` (a report, a chargeback)."""
        self.spawn(_just(command), self.wait(kind))

    def count(self, scenario: str, what: str, n: int = 1) -> None:
        counts = self.by_scenario.setdefault(scenario, {})
        counts[what] = counts.get(what, 0) + n

    def fraud(self, scenario: str, transfer_id: str) -> None:
        """A fraudulent transfer, labelled or not (the truth the labels only partly tell)."""
        self.count(scenario, "transfers")
        self.fraud_transfers[transfer_id] = scenario

    # --- choosing people -----------------------------------------------------------------
    def sleeper(self, role: str) -> Optional[User]:
        """An aged fraud account not used yet, from now on in ``role`` (None: all are used)."""
        if not self._unused_sleepers:
            return None
        user = self._unused_sleepers.pop()
        user.role = role
        return user

    def member(self, min_friends: int = 0) -> User:
        """A random member (of the initial population, or invited since), with enough friends if
        one is found."""
        for _ in range(100):
            user = self.members[self.rng.randrange(len(self.members))]
            if len(user.friends) >= min_friends:
                break
        return user

    def friend_of(self, user: User) -> User:
        return self.pop[self.rng.choice(user.friends)] if user.friends else self.member(1)

    # --- building requests ---------------------------------------------------------------
    def say(self, sender: User, recipient: User, intent: str, amount: Optional[int] = None) -> MessageRequest:
        return MessageRequest(sender=sender.id, recipient=recipient.id,
                              conversation=Population.conversation(sender, recipient),
                              text=texts.render(self.rng, intent, sender.lang, amount, recipient.name))

    @staticmethod
    def account(user: User, kind: str, device: Optional[str] = None, ip: Optional[str] = None,
                country: Optional[str] = None, **extra) -> AccountEventRequest:
        """An account event from ``user``'s own device, IP and country unless told otherwise."""
        return AccountEventRequest(account=user.id, kind=kind, device=device or user.device,
                                   ip=ip or user.ip, country=country or user.country, **extra)

    @staticmethod
    def transfer(sender: User, recipient: User, amount: int, *, device: Optional[str] = None,
                 ip: Optional[str] = None, card: Optional[str] = None, **extra) -> TransferRequest:
        return TransferRequest(sender=sender.id, recipient=recipient.id, amount_cents=amount,
                               conversation=Population.conversation(sender, recipient),
                               device=device or sender.device, ip=ip or sender.ip,
                               card_number=card, **extra)


class Deck:
    """Weighted draws in which each choice of positive weight comes once (shuffled) before any
    repeats, so that a short live run shows every fraud scenario, every owner behaviour."""

    def __init__(self, rng: random.Random, weights: dict[str, float]):
        self.rng = rng
        self.choices = [choice for choice, weight in weights.items() if weight > 0]
        self.weights = [weights[choice] for choice in self.choices]
        self.cards = rng.sample(self.choices, len(self.choices))

    def __bool__(self) -> bool:
        return bool(self.choices)

    def draw(self) -> str:
        return self.cards.pop() if self.cards else self.rng.choices(self.choices, self.weights)[0]


def _just(command) -> Script:
    yield command


# --- sub-scripts shared by legitimate and fraudulent agents -----------------------------------
def onboard(w: World, user: User) -> Script:
    """A new account: signup, its device, its card and bank account, its assistant switch."""
    user.onboarded = True
    yield w.account(user, "signup")
    yield w.wait("burst")
    yield w.account(user, "device_added")
    yield w.account(user, "login")
    if user.card:
        yield w.wait("burst")
        yield w.account(user, "card_registered", card_number=user.card)
    if user.iban:
        yield w.wait("burst")
        yield w.account(user, "bank_account_registered", bank_account=user.iban)
    if user.assistant:
        yield AssistantSwitch(user.id, True)


def open_app(w: World, user: User, p_login: float = 0.6) -> Script:
    """``user`` opens the app: usually a login. Live, a member the simulation has not used
    yet also gets its assistant switch sent (its registrations predate the demo)."""
    if not user.onboarded:
        user.onboarded = True
        if user.assistant:
            yield AssistantSwitch(user.id, True)
    if w.rng.random() < p_login:
        if w.rng.random() < 0.04:  # a typo first
            yield w.account(user, "login_failed")
        yield w.account(user, "login")


def crook(w: World) -> Script:
    """An account controlled by a fraud ring, where stolen money lands (returned by
    ``yield from``): mostly one already in use, sometimes a fresh one."""
    if w.crooks and w.rng.random() < 0.7:
        return w.crooks[w.rng.randrange(len(w.crooks))]
    user = yield from mule_account(w)
    w.crooks.append(user)
    return user


def mule_account(w: World) -> Script:
    """An account that passes stolen money on (returned by ``yield from``): mostly an aged
    one, as real mules are (``fraud_account``)."""
    return (yield from fraud_account(w, "mule", RECRUITED_SHARE))


def fraud_account(w: World, role: str, p_aged: float) -> Script:
    """An account a fraud ring uses (returned by ``yield from``). With probability ``p_aged``
    one that does not look new: half the time a sleeper registered weeks ago (while one is
    left), else a member recruited with their own account, history and friends; otherwise a
    signup made for the purpose. A new account alone does not tell fraud either: friends
    invite new members with a payment (``legit.invite``), new sellers sell (``legit.buy``)."""
    rng = w.rng
    if rng.random() < p_aged:
        user = w.sleeper(role) if rng.random() < 0.5 else None
        if user is not None:
            return user
        return w.member()  # recruited: still its owner's account, used (and watched) by them
    user = w.pop.add(role)
    yield from onboard(w, user)
    return user


def _respond(rng: random.Random, amount: int, suggested: Optional[int]) -> tuple[Optional[str], int]:
    """What a payer does with a suggestion (None: ignores it), and the amount they keep."""
    draw = rng.random()
    if draw < 0.62:
        return "accepted", suggested or amount
    if draw < 0.77:
        return "edited", max(100, amount + rng.choice((-1, 1)) * rng.randint(1, 4) * 500)
    return ("declined" if draw < 0.9 else None), amount


def pay_after_talk(w: World, payer: User, payee: User, amount: int, *, must_pay: bool = False,
                   card: Optional[str] = None, p_skip: float = 0.1, ip: Optional[str] = None,
                   victim_of: Optional[str] = None,
                   sent: Optional[Callable[[str], None]] = None) -> Script:
    """``payer`` was asked for (or told about) ``amount``: they answer the assistant's
    suggestion if there is one, and pay (``pay``: the transfer id is returned by
    ``yield from``, None if not paid), from ``ip`` if they are away from home."""
    rng = w.rng
    yield w.wait("read")
    suggestion = (yield Suggestion(payer.id, Population.conversation(payer, payee))) if payer.assistant else None
    suggestion_id, edited = None, False
    if suggestion is not None:
        sid, suggested = suggestion
        response, amount = _respond(rng, amount, suggested)
        if response is not None:
            recorded = yield SuggestionResponse(sid, SuggestionResponseRequest(
                user=payer.id, response=response, amount_cents=None if response == "declined" else amount))
            if recorded and response != "declined":
                suggestion_id, edited = sid, response == "edited" and amount != suggested
        if response in ("accepted", "edited"):
            if not must_pay and rng.random() < 0.04:
                return None  # accepted, then changed their mind
        elif not must_pay and rng.random() < 0.5:
            return None  # declined or ignored, and did not pay by hand either
        yield w.wait("step")
    elif not must_pay and rng.random() < p_skip:
        return None  # talked about it, never paid
    use_card = card or (payer.card if payer.card and rng.random() < 0.3 else None)
    return (yield from pay(w, w.transfer(payer, payee, amount, card=use_card, ip=ip,
                                         suggestion_id=suggestion_id, amount_edited=edited),
                           victim_of, sent))


def pay(w: World, request: TransferRequest, victim_of: Optional[str] = None,
        sent: Optional[Callable[[str], None]] = None) -> Script:
    """Send a transfer; if it comes back warned, its sender may heed the warning and cancel it
    (``reactions``: ``victim_of`` is the scam the sender is deceived by, None for an honest
    sender). Returns (by ``yield from``) the transfer id, or None if refused or called off;
    ``sent`` is told the id of a transfer sent, called off or not."""
    transfer_id = yield request
    if transfer_id is None:
        return None
    if sent is not None:
        sent(transfer_id)
    code = yield WarningFor(request.sender, transfer_id)
    if code is not None and reactions.heeds(w.reaction_rng, victim_of, code):
        if (yield CancelTransfer(request.sender, transfer_id)):
            w.cancelled[transfer_id] = code
            w.count(victim_of or "honest", "cancelled_after_warning")
            return None
    return transfer_id


def new_phone(w: World, user: User, **where) -> Script:
    """A legitimate new device: the same signals as a takeover's, from the user's own IP
    (or ``where`` they are: ``ip``, ``country``)."""
    device = new_device(w.rng)
    user.devices.insert(0, device)
    yield w.account(user, "device_added", **where)
    yield w.account(user, "login", **where)
