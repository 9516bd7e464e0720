"""States of the entities that link accounts together: devices, cards and IP hashes.

Roles they learn: "seen" (an account event carrying them) and "transfer". A device and a card
give a transfer their velocity (transfers made with them, distinct recipients) and the accounts
seen with them in 7 d; a device and an IP give their failed logins in the last hour.
Feature names are prefixed by the kind: device_accounts_7d, card_count_1h, ip_failed_logins_1h.
"""
from __future__ import annotations

from functools import lru_cache

from msgspec import field

from features import velocity
from features.graph import Linked
from features.state import EntityState
from features.velocity import Flow
from features.windows import tag


class LinkState(EntityState, array_like=True, gc=False):
    VELOCITY = True
    FAILS = True

    flow: Flow = field(default_factory=Flow)
    linked: Linked = field(default_factory=Linked)

    def learn_one(self, ev, role: str) -> list:
        t = self.clock(ev.ts)
        if role == "transfer":
            if self.VELOCITY:
                self.flow.add(t, ev.amount_cents, tag(ev.recipient), 0)
            self.linked.see(tag(ev.sender), t)
        elif ev.kind == "login_failed":  # role "seen": an account event
            self.linked.failed(t)
        else:
            self.linked.see(tag(ev.account), t)
        return []

    def features_for(self, tr, role: str) -> dict[str, float]:
        t = self.now(tr.ts)
        values = self.flow.velocity(t) if self.VELOCITY else []
        values.append(self.linked.accounts_7d(t))
        if self.FAILS:
            values.append(self.linked.failed_1h(t))
        return dict(zip(self.feature_names(), values))

    @classmethod
    @lru_cache(maxsize=None)
    def feature_names(cls, role: str = "transfer") -> tuple[str, ...]:
        p = cls.KIND
        return ((velocity.names(p, "recipients") if cls.VELOCITY else ()) + (f"{p}_accounts_7d",)
                + ((f"{p}_failed_logins_1h",) if cls.FAILS else ()))

    def _sweep(self, t: int, day: int) -> None:
        self.flow.sweep(t)
        self.linked.sweep(t)

    def _shift(self, d: int) -> None:
        self.flow.shift(d)
        self.linked.shift(d)

    def _empty(self) -> bool:
        return self.flow.empty() and self.linked.empty()


class DeviceState(LinkState, array_like=True, gc=False):
    KIND = "device"


class CardState(LinkState, array_like=True, gc=False):
    KIND = "card"
    FAILS = False


class IpState(LinkState, array_like=True, gc=False):
    KIND = "ip"
    VELOCITY = False
