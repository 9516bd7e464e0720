"""The account owners' side of the recovery workflow, live (``vigie simulate --live``), and
the attackers who hold a taken-over account's session.

A member whose account has just seen a security change polls their notifications every
``POLL_MS`` for ``WATCH_MS``. For each ``step_up_challenge`` the owner reads the code their
verified contact received (``VerifiedContact``: through the delivery gateway, which only the
owner holds) and answers through ``POST /v1/recovery/{case_id}/answer`` (actor
``simulator-owner``): ``correct``, ``wrong`` (mistyped codes, until the challenge fails) or
``late``, drawn as relative weights (``DEFAULT_OWNER_MIX``) from a generator of their own, so
a seed gives the same sequence whatever the timing of the rest of the traffic. On an account the
simulator took over, the attacker sees the challenge too (the session is theirs) and answers
"it_was_me" first with a guessed code: wrong, it unlocks nothing.

The behaviours in detail: docs/simulator.md#owners
"""
from __future__ import annotations

import random
from typing import NamedTuple, Optional

from pipelines.recovery import cases as rc
from pipelines.services.requests import AccountEventRequest, RecoveryAnswerRequest
from pipelines.simulator.population import User
from pipelines.simulator.world import Challenges, Deck, RecoveryAnswer, Script, World

DEFAULT_OWNER_MIX = {"correct": 0.8, "wrong": 0.1, "late": 0.1}
WATCHED_KINDS = ("login_failed", "device_added", "password_reset", "email_changed",
                 "phone_changed")
POLL_MS, WATCH_MS = 2000, 120_000
THINK_MS = (1000, 4000)  # reading the challenge and answering it
LATE_MS = (2000, 5000)  # past the SLA
KNOWS_TAKEOVER_MS = 24 * 3600 * 1000  # the owner ties a challenge to a takeover this recent
ATTACKER_MS = (300, 1500)  # the attacker, watching the session, answers before the owner
CODE_TRIES = 5  # looks at the verified contact this many times, POLL_MS apart, for the code


class VerifiedContact(NamedTuple):
    """Live only: the newest code the owner's verified contact received for recovery case
    ``case_id`` (the delivery gateway's outbox, an internal endpoint): the code, or None."""
    user: str
    case_id: str


def check_owner_mix(mix: Optional[dict]) -> dict[str, float]:
    mix = dict(DEFAULT_OWNER_MIX if mix is None else mix)
    unknown = sorted(set(mix) - set(DEFAULT_OWNER_MIX))
    if unknown or any(weight < 0 for weight in mix.values()):
        raise ValueError(f"owner behaviours are non-negative weights of {sorted(DEFAULT_OWNER_MIX)}"
                         f"; got {mix}")
    return mix


def taken_over(user: User, challenged_ts: int) -> bool:
    return user.taken_over_ts is not None \
        and 0 <= challenged_ts - user.taken_over_ts < KNOWS_TAKEOVER_MS


def answer_for(user: User, challenged_ts: int) -> str:
    return "confirm_compromise" if taken_over(user, challenged_ts) else "it_was_me"


def mistyped(code: str, n: int) -> str:
    """The code with its ``n``-th digit off by one: never the code."""
    i = n % len(code)
    return code[:i] + str((int(code[i]) + 1) % 10) + code[i + 1:]


class Owners:
    """Watches members' notifications after security changes and answers the challenges."""

    def __init__(self, world: World, seed: int, mix: Optional[dict] = None):
        self.world = world
        self.rng = random.Random(f"owners:{seed}")  # apart from the world's: see the docstring
        self.deck = Deck(self.rng, check_owner_mix(mix))
        self.watching: dict[str, int] = {}  # raw user id -> watch until (ms)
        self.taken: set[str] = set()  # challenge (notification) ids already taken up
        self.answered: dict[str, str] = {}  # case id -> behaviour, once the service took its answers
        self.attacked: dict[str, int] = {}  # case id -> the attacker's guesses the service took
        self.attacker_rng = random.Random(f"attackers:{seed}")  # the owners' draws unchanged
        self.since = world.now()  # older challenges (a restarted simulator) are not ours

    def saw(self, command) -> None:
        """Every command the simulation sends comes through here: a security change on a
        member's account starts (or extends) its owner's watch."""
        if command.__class__ is not AccountEventRequest or not self.deck:
            return
        user = self.world.pop.by_id(command.account)
        if user is None or user.role != "member" or not (
                command.kind in WATCHED_KINDS
                or (command.kind == "login" and command.country != user.country)):
            return
        watched = user.id in self.watching
        self.watching[user.id] = self.world.now() + WATCH_MS
        if not watched:
            self.world.spawn(self._watch(user))

    def _watch(self, user: User) -> Script:
        while self.world.now() < self.watching[user.id]:
            yield POLL_MS
            for note in (yield Challenges(user.id)) or ():
                if note["id"] not in self.taken and note["ts"] >= self.since:
                    self.taken.add(note["id"])
                    # drawn here, in the order challenges arrive: the sequence is the seed's
                    behaviour = self.deck.draw()
                    wait = self.rng.uniform(*(LATE_MS if behaviour == "late" else THINK_MS))
                    self.world.spawn(self._answer(user, note, behaviour, int(wait)))
                    if taken_over(user, note["ts"]):
                        self.world.spawn(self._attack(user, note))
        del self.watching[user.id]

    def _answer(self, user: User, note: dict, behaviour: str, wait_ms: int) -> Script:
        if behaviour == "late":  # past the deadline, which runs from the challenge
            wait_ms += note["ts"] + int(rc.sla_s("owner_verification") * 1000) - self.world.now()
        yield max(0, wait_ms)
        code = None
        for _ in range(CODE_TRIES):  # the SMS may take a moment
            if (code := (yield VerifiedContact(user.id, note["case_id"]))):
                break
            yield POLL_MS
        if code is None:
            return  # nothing came: the case times out to an analyst
        tries = [mistyped(code, n) for n in range(rc.MAX_CODE_ATTEMPTS)] \
            if behaviour == "wrong" else [code]
        taken = 0
        for typed in tries:
            request = RecoveryAnswerRequest(account=user.id, actor="simulator-owner",
                                            answer=answer_for(user, note["ts"]), code=typed)
            taken += bool((yield RecoveryAnswer(note["case_id"], request)))
        if taken == len(tries):  # all of them (a run may stop between two mistyped codes)
            self.answered[note["case_id"]] = behaviour

    def _attack(self, user: User, note: dict) -> Script:
        """The attacker, in the victim's session, says "it was me" with a guessed code."""
        yield int(self.attacker_rng.uniform(*ATTACKER_MS))
        guess = f"{self.attacker_rng.randrange(10 ** 6):06d}"
        request = RecoveryAnswerRequest(account=user.id, actor="owner", answer="it_was_me",
                                        code=guess)
        if (yield RecoveryAnswer(note["case_id"], request)):
            self.attacked[note["case_id"]] = self.attacked.get(note["case_id"], 0) + 1
