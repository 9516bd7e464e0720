"""Graph signals: accounts per device / card / IP, the recipient's fan-in and in->out speed, and
the 1-hop link to accounts with a confirmed fraud label.

Which labels confirm fraud (``Label.account`` is the account the label judges):
- ``chargeback`` and ``analyst_verdict`` with ``is_fraud``: the account is confirmed fraudulent,
  and its live counterparties (messages or transfers in the last 30 days, most recent first, at
  most FANOUT) are told through a derived ``NeighbourFlagged`` event. Later, each *new*
  counterparty of a confirmed account is told as well. ``analyst_verdict`` without ``is_fraud``
  clears the account's own flag (links already told stay until they expire after 30 days).
- ``user_scam_report``: unverified (anyone can report anyone), so it only counts in
  ``*_scam_reports_30d`` and is not propagated.
- ``ato_confirmed`` / ``not_ato``: the owner is a victim and its contacts are the attacker's
  targets, not accomplices: left to the recovery workflow, not used here.
A label takes effect at ``known_at``, when Vigie learnt it, never at ``ts`` (when the fraud
happened): a feature must not know what nobody knew yet. A label whose ``party`` is ``unknown``
judges no account (it marks its transfer only: ``features.risk``); with any other party (or none,
for labels older than the field) ``account`` is the judged account, as above.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Optional

from msgspec import Struct

from features.family import Family
from features.state import Moment, Rows, Stamps
from features.velocity import NO_CONVERSATION, Flow
from features.windows import DAY, HOUR, MINUTE, MONTH, NAN, WEEK, count_in, drop_head, insert, span

CONFIRMING = ("chargeback", "analyst_verdict")
FANOUT = 64  # counterparties told about one confirmed account
MAX_LINKS = 32
MAX_ACCOUNTS = 512  # accounts remembered per device / card / IP (counts saturate there)
FORWARD_WITHIN = 30 * MINUTE


class NeighbourFlagged(Struct, kw_only=True, frozen=True, gc=False):
    """Derived event: ``neighbour`` was confirmed fraudulent; ``account`` has been its counterparty.
    Routed to ("account", account, "neighbour_flagged") right after the event that caused it."""
    id: str
    ts: int  # when the link became known (the label's known_at, or the new contact's time)
    account: str
    neighbour: str


def flag_neighbours(neighbour: str, accounts: list[str], ts: int, cause_id: str) -> list:
    """One derived event per account to tell; ids are unique and stable across replays."""
    return [NeighbourFlagged(id=f"{cause_id}:nf.{neighbour[2:10]}.{i}", ts=ts, account=a,
                             neighbour=neighbour)
            for i, a in enumerate(accounts) if a != neighbour]


class Fraud(Struct, array_like=True, gc=False):
    flagged: Optional[int] = None  # when this account was confirmed fraudulent (relative ms)
    links: dict[int, int] = {}  # tag of a confirmed neighbour -> when the link became known
    report_ts: list[int] = []  # user scam reports against this account, 30 days

    TIMES = (Moment("flagged"), Stamps("links", keep=MONTH), Rows("report_ts", keep=MONTH))

    def on_label(self, label, t: int) -> bool:
        """Learn a label judging this account; True when it newly confirms it (time to tell its
        contacts)."""
        if label.party == "unknown":
            return False
        if label.kind == "user_scam_report" and label.is_fraud:
            drop_head((self.report_ts,), span(self.report_ts, t, MONTH)[0])
            insert((self.report_ts,), (t,))
        elif label.kind in CONFIRMING and label.is_fraud:
            if self.flagged is None:
                self.flagged = t
                return True
            self.flagged = min(t, self.flagged)
        elif label.kind == "analyst_verdict":  # an analyst cleared the account
            self.flagged = None
        return False

    def link(self, neighbour: int, t: int) -> None:
        if neighbour not in self.links and len(self.links) >= MAX_LINKS:
            del self.links[min(self.links, key=self.links.__getitem__)]
        self.links[neighbour] = max(t, self.links.get(neighbour, t))

    def features(self, t: int) -> dict[str, float]:
        return {"confirmed_fraud": float(self.flagged is not None and self.flagged < t),
                "fraud_links_30d": float(sum(1 for v in self.links.values() if t - MONTH <= v < t)),
                "scam_reports_30d": float(count_in(self.report_ts, t, MONTH))}


class Linked(Struct, array_like=True, gc=False):
    """Accounts seen on one device / card / IP, and failed logins from it."""
    accounts: dict[int, int] = {}  # account tag -> last seen (relative ms)
    fail_ts: list[int] = []

    TIMES = (Stamps("accounts", keep=WEEK), Rows("fail_ts", keep=HOUR))

    def see(self, account: int, t: int) -> None:
        accounts = self.accounts
        last = accounts.get(account)
        if last is None:
            if len(accounts) >= MAX_ACCOUNTS:
                del accounts[min(accounts, key=accounts.__getitem__)]
            accounts[account] = t
        elif t > last:
            accounts[account] = t

    def failed(self, t: int) -> None:
        drop_head((self.fail_ts,), span(self.fail_ts, t, HOUR)[0])
        insert((self.fail_ts,), (t,))

    def accounts_7d(self, t: int) -> float:
        return float(sum(1 for v in self.accounts.values() if t - WEEK <= v < t))

    def failed_1h(self, t: int) -> float:
        return float(count_in(self.fail_ts, t, HOUR))


def fan_in(received: Flow, t: int) -> dict[str, float]:
    """Share of the distinct senders of the last 24 h who had never written to the recipient
    before paying it (NaN without senders): the mule / fake-seller shape."""
    senders = received.cps_since(t, DAY)
    return {"new_senders_share_24h": len(received.cps_since(t, DAY, NO_CONVERSATION)) / len(senders)
            if senders else NAN}


def forwarding(received: Flow, sent: Flow, t: int) -> dict[str, float]:
    """In->out speed over the last 7 d: share of the inbound amount followed by an outbound transfer
    within 30 min, and the shortest gap (minutes) from an inbound to the next outbound."""
    lo, hi = span(received.ts, t, WEEK)
    out_ts, out_hi = sent.ts, bisect_left(sent.ts, t)
    total = forwarded = 0
    gap = None
    for ts, amount in zip(received.ts[lo:hi], received.amount[lo:hi]):
        total += amount
        j = bisect_left(out_ts, ts, 0, out_hi)
        if j < out_hi:
            g = out_ts[j] - ts
            if g <= FORWARD_WITHIN:
                forwarded += amount
            gap = g if gap is None else min(gap, g)
    return {"forwarded_share_30m_7d": forwarded / total if total else NAN,
            "min_forward_minutes_7d": NAN if gap is None else gap / MINUTE}


def since_last_inbound(received: Flow, t: int) -> dict[str, float]:
    """Minutes since the account last received money (7 d): a mule pays out right after."""
    i = bisect_left(received.ts, t)
    last = received.ts[i - 1] if i else None
    return {"minutes_since_last_inbound": NAN if last is None or last < t - WEEK
            else (t - last) / MINUTE}


# the families an account gives (see ``features.family``)
FRAUD = Family(lambda a, tr, t, role: a.fraud.features(t), "labels",
               warnings={"recipient": dict.fromkeys(
                   ("confirmed_fraud", "fraud_links_30d", "scam_reports_30d"), "payee_reported")})
# "new" senders are those who never wrote first: without messages, every sender is new
FAN_IN = Family(lambda a, tr, t, role: fan_in(a.received, t), "messages")
FORWARDING = Family(lambda a, tr, t, role: forwarding(a.received, a.sent, t), "transfers")
SINCE_INBOUND = Family(lambda a, tr, t, role: since_last_inbound(a.received, t), "transfers")
