"""An account's state: what it sent and received, its conversations, its security events, its
fraud links; the features it gives a transfer as its sender or as its recipient.

Roles it learns (see ``features.routing``): msg_out, msg_in, sender, recipient, security,
assistant, label, label_sent, label_received, neighbour_flagged. A label is learnt once per
account: as ``label_sent`` / ``label_received`` by the labelled transfer's sender / recipient
(counterparty risk, and the judgement when ``Label.account`` is that side; a self-transfer's
``label_sent`` also takes the inbound side), as ``label`` by a judged account that is neither.
Each family's features are defined in its own module (velocity, conversation, security, graph,
risk); this class only routes events to them and lists, per role, which families a transfer reads.
"""
from __future__ import annotations

from functools import lru_cache

from msgspec import field

from features import conversation, graph, risk, security, velocity
from features.conversation import Chat
from features.graph import Fraud, flag_neighbours
from features.risk import Risk
from features.security import CREDENTIALS, NEW_DEVICE, Security
from features.state import EntityState
from features.velocity import HISTORY, NEW_COUNTERPARTY, NO_CONVERSATION, Flow
from features.windows import DAY, HOUR, count_in, tag


class AccountState(EntityState, array_like=True, gc=False):
    KIND = "account"

    sent: Flow = field(default_factory=Flow)
    received: Flow = field(default_factory=Flow)
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
        self.sent.add(t, tr.amount_cents, tag(tr.recipient), flags, HISTORY, by_day=True)
        if tr.device is not None:
            self.sec.see_device(tag(tr.device), t)
        return self._tell_if_flagged(tr.sender, tr.recipient, tr) if new else []

    def _recipient(self, tr, t):
        pair, new = self.chat.on_transfer(tr.sender, tr.ts, False)
        flags = (NEW_COUNTERPARTY if pair.tx_in == 1 else 0) | _no_conversation(pair, t)
        self.received.add(t, tr.amount_cents, tag(tr.sender), flags, HISTORY, by_day=True)
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
        contacts = self.chat.counterparties(label.known_at // DAY, graph.FANOUT)
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
    def features_for(self, tr, role: str) -> dict[str, float]:
        t = self.now(tr.ts)
        inbound, outbound = self.received.windows(t), self.sent.windows(t)
        if role == "sender":
            values = self.sent.velocity(t)
            values += self.sent.baseline(t, tr.amount_cents)
            values += self.chat.pair_features(tr, t)
            values += self.chat.assistant_features(tr, t)
            values += self.sec.features(tr, t, True)
            values += self.fraud.features(t)
            values.append(graph.since_last_inbound(self.received, t))
            values += self._takeover(t)
            values += velocity.spending(outbound)
        else:
            values = self.received.velocity(t)
            values += graph.fan_in(self.received, t)
            values += graph.forwarding(self.received, self.sent, t)
            values += self.sec.features(tr, t, False)
            values += self.fraud.features(t)
            values += self.received.baseline(t, tr.amount_cents)
        values += self.risk.features(inbound, outbound, t)
        return dict(zip(_NAMES[role], values))

    @classmethod
    @lru_cache(maxsize=None)
    def feature_names(cls, role: str) -> tuple[str, ...]:
        p = role
        if role == "sender":
            return (velocity.names(p, "recipients") + velocity.baseline_names(p)
                    + conversation.names(p) + security.names(p, True) + graph.fraud_names(p)
                    + (f"{p}_minutes_since_last_inbound", f"{p}_money_requests_out_1h",
                       f"{p}_new_recipients_24h")
                    + velocity.spending_names(p) + risk.names(p))
        return (velocity.names(p, "senders") + (f"{p}_new_senders_share_24h",
                f"{p}_forwarded_share_30m_7d", f"{p}_min_forward_minutes_7d")
                + security.names(p, False) + graph.fraud_names(p) + velocity.baseline_names(p)
                + risk.names(p))

    def _takeover(self, t: int) -> tuple[float, float]:
        return (float(self.chat.requests_out_1h(t)),
                float(len(self.sent.cps_since(t, DAY, NEW_COUNTERPARTY))))

    def ato_signals(self, ts: int) -> dict[str, float]:
        """Cheap account-takeover suspicion for the recovery workflow: a new device together with
        a credential or contact change in the last 24 h, a burst of money requests to many
        contacts in the last hour, transfers to new recipients, failed logins."""
        t = self.now(ts)
        new_device = self.sec.recent_change(t, (NEW_DEVICE,), DAY)
        requests, new_recipients = self._takeover(t)
        return {
            "new_device_24h": float(new_device),
            "credential_change_24h": float(self.sec.recent_change(t, CREDENTIALS, DAY)),
            "new_device_and_credential_change_24h":
                float(new_device and self.sec.recent_change(t, CREDENTIALS, DAY)),
            "money_requests_out_1h": requests,
            "new_recipients_24h": new_recipients,
            "failed_logins_1h": float(count_in(self.sec.fail_ts, t, HOUR)),
        }

    # --- housekeeping -----------------------------------------------------------------------
    def _sweep(self, t: int, day: int) -> None:
        self.sent.sweep(t, HISTORY)
        self.received.sweep(t, HISTORY)
        self.chat.sweep(t, day)
        self.sec.sweep(t)
        self.fraud.sweep(t)
        self.risk.sweep(t)

    def _shift(self, d: int) -> None:
        for part in self._parts():
            part.shift(d)

    def _empty(self) -> bool:
        return all(part.empty() for part in self._parts())

    def _parts(self) -> tuple:
        return self.sent, self.received, self.chat, self.sec, self.fraud, self.risk


def _no_conversation(pair, t: int) -> int:
    return 0 if pair.first_msg is not None and pair.first_msg < t else NO_CONVERSATION


LABEL_ROLES = frozenset(("label", "label_sent", "label_received"))  # learnt at known_at
_NAMES = {role: AccountState.feature_names(role) for role in ("sender", "recipient")}
_LEARN = {
    "msg_out": AccountState._msg_out, "msg_in": AccountState._msg_in,
    "sender": AccountState._sender, "recipient": AccountState._recipient,
    "security": AccountState._security, "assistant": AccountState._assistant,
    "label": AccountState._label, "label_sent": AccountState._label_sent,
    "label_received": AccountState._label_received,
    "neighbour_flagged": AccountState._neighbour_flagged,
}
