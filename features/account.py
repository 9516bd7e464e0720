"""An account's state: what it sent and received, its conversations, its security events, its
fraud links; the features it gives a transfer as its sender or as its recipient.

Roles it learns (see ``features.routing``): msg_out, msg_in, sender, recipient, security,
assistant, label, label_sent, label_received, neighbour_flagged. A label is learnt once per
account: as ``label_sent`` / ``label_received`` by the labelled transfer's sender / recipient
(counterparty risk, and the judgement when ``Label.account`` is that side; a self-transfer's
``label_sent`` also takes the inbound side), as ``label`` by a judged account that is neither.
Each family's features are defined in its own module (velocity, conversation, security, graph,
risk); this class only routes events to them and lists, per role, which families a transfer
reads (``READS``, in the order of the features).
"""
from __future__ import annotations

from msgspec import field

from features.conversation import ASSISTANT, PAIR, Chat
from features.family import Family
from features.graph import FAN_IN, FANOUT, FORWARDING, FRAUD, SINCE_INBOUND, Fraud, flag_neighbours
from features.risk import RISK, Risk
from features.security import CREDENTIALS, NEW_DEVICE, SECURITY, Security
from features.state import EntityState
from features.velocity import (BASELINE, NEW_COUNTERPARTY, NO_CONVERSATION, SPENDING, VELOCITY,
                               AccountFlow)
from features.windows import DAY, HOUR, count_in, tag

# the sender's signs of a takeover: money asked of many contacts, payments to new recipients
TAKEOVER = Family(lambda a, tr, t, role: a._takeover(t), "transfers",
                  sources={"money_requests_out_1h": "messages"})


class AccountState(EntityState, array_like=True, gc=False):
    KIND = "account"
    READS = {
        "sender": (VELOCITY, BASELINE, PAIR, ASSISTANT, SECURITY, FRAUD, SINCE_INBOUND, TAKEOVER,
                   SPENDING, RISK),
        "recipient": (VELOCITY, FAN_IN, FORWARDING, SECURITY, FRAUD, BASELINE, RISK),
    }

    sent: AccountFlow = field(default_factory=AccountFlow)
    received: AccountFlow = field(default_factory=AccountFlow)
    chat: Chat = field(default_factory=Chat)
    sec: Security = field(default_factory=Security)
    fraud: Fraud = field(default_factory=Fraud)
    risk: Risk = field(default_factory=Risk)

    # --- learning ---------------------------------------------------------------------------
    def learn_one(self, ev, role: str) -> list:
        return _LEARN[role](self, ev, self.clock(ev.known_at if role in LABEL_ROLES else ev.ts))

    def _msg_out(self, ev, t):
        new_pair = self.chat.on_message(ev, t, True)
        return self._tell_if_flagged(ev.sender, ev.recipient, ev) if new_pair else []

    def _msg_in(self, ev, t):
        new_pair = self.chat.on_message(ev, t, False)
        return self._tell_if_flagged(ev.recipient, ev.sender, ev) if new_pair else []

    def _sender(self, tr, t):
        pair, new = self.chat.on_transfer(tr.recipient, tr.ts, True)
        flags = (NEW_COUNTERPARTY if pair.tx_out == 1 else 0) | _no_conversation(pair, t)
        self.sent.add(t, tr.amount_cents, tag(tr.recipient), flags)
        if tr.device is not None:
            self.sec.see_device(tag(tr.device), t)
        return self._tell_if_flagged(tr.sender, tr.recipient, tr) if new else []

    def _recipient(self, tr, t):
        pair, new = self.chat.on_transfer(tr.sender, tr.ts, False)
        flags = (NEW_COUNTERPARTY if pair.tx_in == 1 else 0) | _no_conversation(pair, t)
        self.received.add(t, tr.amount_cents, tag(tr.sender), flags)
        return self._tell_if_flagged(tr.recipient, tr.sender, tr) if new else []

    def _security(self, ev, t):
        self.sec.on_event(ev, t)
        return []

    def _assistant(self, ev, t):
        self.chat.on_assistant(ev, t)
        return []

    def _label(self, label, t):
        """This account is judged (``Label.account``)."""
        if not self.fraud.on_label(label, t):
            return []
        contacts = self.chat.counterparties(label.known_at // DAY, FANOUT)
        return flag_neighbours(label.account, contacts, label.known_at, label.id)

    def _label_sent(self, label, t):
        self.risk.on_label(label, self.now(label.ts), t, True)
        if label.recipient == label.sender:  # a self-transfer: routed here only
            self.risk.on_label(label, self.now(label.ts), t, False)
        return self._label(label, t) if label.account == label.sender else []

    def _label_received(self, label, t):
        self.risk.on_label(label, self.now(label.ts), t, False)
        return self._label(label, t) if label.account == label.recipient else []

    def _neighbour_flagged(self, ev, t):
        self.fraud.link(tag(ev.neighbour), t)
        return []

    def _tell_if_flagged(self, me: str, other: str, ev) -> list:
        """A confirmed account's new contact learns the link too."""
        if self.fraud.flagged is not None:
            return flag_neighbours(me, [other], ev.ts, ev.id)
        return []

    # --- reading ----------------------------------------------------------------------------
    def _takeover(self, t: int) -> dict[str, float]:
        return {"money_requests_out_1h": float(self.chat.requests_out_1h(t)),
                "new_recipients_24h": float(len(self.sent.cps_since(t, DAY, NEW_COUNTERPARTY)))}

    def ato_signals(self, ts: int) -> dict[str, float]:
        """Cheap account-takeover suspicion for the recovery workflow: a new device together with
        a credential or contact change in the last 24 h, a burst of money requests to many
        contacts in the last hour, transfers to new recipients, failed logins."""
        t = self.now(ts)
        new_device = self.sec.recent_change(t, (NEW_DEVICE,), DAY)
        takeover = self._takeover(t)
        return {
            "new_device_24h": float(new_device),
            "credential_change_24h": float(self.sec.recent_change(t, CREDENTIALS, DAY)),
            "new_device_and_credential_change_24h":
                float(new_device and self.sec.recent_change(t, CREDENTIALS, DAY)),
            "money_requests_out_1h": takeover["money_requests_out_1h"],
            "new_recipients_24h": takeover["new_recipients_24h"],
            "failed_logins_1h": float(count_in(self.sec.fail_ts, t, HOUR)),
        }


def _no_conversation(pair, t: int) -> int:
    return 0 if pair.first_msg is not None and pair.first_msg < t else NO_CONVERSATION


LABEL_ROLES = frozenset(("label", "label_sent", "label_received"))  # learnt at known_at
_LEARN = {
    "msg_out": AccountState._msg_out, "msg_in": AccountState._msg_in,
    "sender": AccountState._sender, "recipient": AccountState._recipient,
    "security": AccountState._security, "assistant": AccountState._assistant,
    "label": AccountState._label, "label_sent": AccountState._label_sent,
    "label_received": AccountState._label_received,
    "neighbour_flagged": AccountState._neighbour_flagged,
}
