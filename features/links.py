"""States of the entities that link accounts together: devices, cards and IP hashes.

Roles they learn: "seen" (an account event carrying them) and "transfer". A device and a card
give a transfer their velocity (transfers made with them, distinct recipients) and the accounts
seen with them in 7 d; a device and an IP give their failed logins in the last hour.
Feature names are prefixed by the kind: device_accounts_7d, card_count_1h, ip_failed_logins_1h.
"""
from __future__ import annotations

from msgspec import field

from features.family import Family
from features.graph import Linked
from features.state import EntityState
from features.velocity import Flow
from features.windows import tag

# the families a device, a card or an IP gives (see ``features.family``)
VELOCITY = Family(lambda st, tr, t, role: st.flow.velocity(t, "recipients"), "devices")
ACCOUNTS = Family(lambda st, tr, t, role: {"accounts_7d": st.linked.accounts_7d(t)}, "devices")
FAILED_LOGINS = Family(lambda st, tr, t, role: {"failed_logins_1h": st.linked.failed_1h(t)},
                       "devices")


class LinkState(EntityState, array_like=True, gc=False):
    flow: Flow = field(default_factory=Flow)
    linked: Linked = field(default_factory=Linked)

    def learn_one(self, ev, role: str) -> list:
        t = self.clock(ev.ts)
        if role == "transfer":
            if VELOCITY in self.READS["transfer"]:  # only what a family reads is kept
                self.flow.add(t, ev.amount_cents, tag(ev.recipient), 0)
            self.linked.see(tag(ev.sender), t)
        elif ev.kind == "login_failed":  # role "seen": an account event
            self.linked.failed(t)
        else:
            self.linked.see(tag(ev.account), t)
        return []

    @classmethod
    def prefix(cls, role: str) -> str:
        return cls.KIND


class DeviceState(LinkState, array_like=True, gc=False):
    KIND = "device"
    READS = {"transfer": (VELOCITY, ACCOUNTS, FAILED_LOGINS)}


class CardState(LinkState, array_like=True, gc=False):
    KIND = "card"
    READS = {"transfer": (VELOCITY, ACCOUNTS)}


class IpState(LinkState, array_like=True, gc=False):
    KIND = "ip"
    READS = {"transfer": (ACCOUNTS, FAILED_LOGINS)}
