"""How long people (and fraudsters, and card networks) take, in milliseconds: each delay a
(low, high) range drawn log-uniformly. ``OFFLINE`` is realistic (labels come days to weeks
later); ``LIVE`` compresses the same story into minutes for a demo.

>>> low, high = OFFLINE.scam_report
>>> low <= OFFLINE.draw(random.Random(1), "scam_report") <= high
True

Why: docs/simulator.md#timing
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields

SECOND, MINUTE, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000


@dataclass(frozen=True)
class Timing:
    reply: tuple[int, int]  # between two messages of a conversation
    read: tuple[int, int]  # a suggestion or a request read, and acted upon
    step: tuple[int, int]  # consecutive actions of one actor (an attacker's account changes)
    burst: tuple[int, int]  # between two card tests, two farm signups
    cashout: tuple[int, int]  # a mule receives money and sends it on
    campaign: tuple[int, int]  # between two victims of one scam campaign (days to weeks in all)
    session: tuple[int, int]  # between two sessions of a long scam (romance)
    scam_report: tuple[int, int]  # a victim realises and reports
    chargeback: tuple[int, int]  # the card holder disputes
    ato_noticed: tuple[int, int]  # the owner of a taken-over account finds out
    ato_duration: tuple[int, int]  # how long an attacker keeps using an account
    verdict: tuple[int, int]  # an analyst reviews a dispute, after it arrived
    availability_ms: int  # offline only: the payment service's payout delay (live: the service's own)

    def __post_init__(self):
        # (low, log of high/low) per delay kind, so that a draw is one multiplication.
        table = {}
        for f in fields(self):
            if f.name != "availability_ms":
                low, high = getattr(self, f.name)
                table[f.name] = (low, math.log(high / low))
        object.__setattr__(self, "_table", table)

    def draw(self, rng: random.Random, kind: str) -> int:
        low, log_ratio = self._table[kind]
        return int(low * math.exp(rng.random() * log_ratio))


OFFLINE = Timing(
    reply=(10 * SECOND, 40 * MINUTE), read=(20 * SECOND, 2 * HOUR), step=(5 * SECOND, 3 * MINUTE),
    burst=(2 * SECOND, 40 * SECOND), cashout=(2 * MINUTE, 25 * MINUTE), session=(2 * HOUR, 20 * HOUR),
    campaign=(6 * HOUR, 5 * DAY),
    scam_report=(12 * HOUR, 21 * DAY), chargeback=(4 * DAY, 30 * DAY), ato_noticed=(3 * HOUR, 4 * DAY),
    ato_duration=(20 * MINUTE, 3 * HOUR), verdict=(1 * DAY, 10 * DAY),
    availability_ms=30 * SECOND,  # the payment service's default (VIGIE_AVAILABILITY_DELAY_S)
)
LIVE = Timing(
    reply=(700, 6 * SECOND), read=(1 * SECOND, 4 * SECOND), step=(500, 3 * SECOND),
    burst=(300, 1500), cashout=(5 * SECOND, 40 * SECOND), session=(5 * SECOND, 15 * SECOND),
    campaign=(3 * SECOND, 20 * SECOND),
    scam_report=(10 * SECOND, 30 * SECOND), chargeback=(60 * SECOND, 120 * SECOND),
    ato_noticed=(20 * SECOND, 60 * SECOND), ato_duration=(20 * SECOND, 60 * SECOND),
    verdict=(20 * SECOND, 60 * SECOND),
    availability_ms=30 * SECOND,
)
