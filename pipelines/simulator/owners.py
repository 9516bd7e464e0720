"""The account owners' side of the recovery workflow, live (``vigie simulate --live``).

A member whose account has just seen a security change polls their notifications every
``POLL_MS`` for ``WATCH_MS`` and answers each ``step_up_challenge`` through
``POST /v1/recovery/{case_id}/answer`` (actor ``simulator-owner``): ``correct``, ``wrong`` or
``late``, drawn as relative weights (``DEFAULT_OWNER_MIX``) from a generator of their own, so
a seed gives the same sequence whatever the timing of the rest of the traffic.

The behaviours in detail: docs/simulator.md#owners
"""
from __future__ import annotations

import random
from typing import Optional

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


def check_owner_mix(mix: Optional[dict]) -> dict[str, float]:
    mix = dict(DEFAULT_OWNER_MIX if mix is None else mix)
    unknown = sorted(set(mix) - set(DEFAULT_OWNER_MIX))
    if unknown or any(weight < 0 for weight in mix.values()):
        raise ValueError(f"owner behaviours are non-negative weights of {sorted(DEFAULT_OWNER_MIX)}"
                         f"; got {mix}")
    return mix


def answer_for(user: User, behaviour: str, challenged_ts: int) -> str:
    if behaviour == "wrong":
        return "wrong_code"
    taken_over = user.taken_over_ts is not None \
        and 0 <= challenged_ts - user.taken_over_ts < KNOWS_TAKEOVER_MS
    return "confirm_compromise" if taken_over else "it_was_me"


class Owners:
    """Watches members' notifications after security changes and answers the challenges."""

    def __init__(self, world: World, seed: int, mix: Optional[dict] = None):
        self.world = world
        self.rng = random.Random(f"owners:{seed}")  # apart from the world's: see the docstring
        self.deck = Deck(self.rng, check_owner_mix(mix))
        self.watching: dict[str, int] = {}  # raw user id -> watch until (ms)
        self.taken: set[str] = set()  # challenge (notification) ids already taken up
        self.answered: dict[str, str] = {}  # case id -> behaviour, answers the service took
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
        del self.watching[user.id]

    def _answer(self, user: User, note: dict, behaviour: str, wait_ms: int) -> Script:
        if behaviour == "late":  # past the deadline, which runs from the challenge
            wait_ms += note["ts"] + int(rc.sla_s("owner_verification") * 1000) - self.world.now()
        yield max(0, wait_ms)
        request = RecoveryAnswerRequest(account=user.id, actor="simulator-owner",
                                        answer=answer_for(user, behaviour, note["ts"]))
        if (yield RecoveryAnswer(note["case_id"], request)):
            self.answered[note["case_id"]] = behaviour
