"""Events built by hand for tests and benchmarks: ``Log`` turns raw names ("alice", "phone-1")
into keyed hashes the way the services do, and ``synthetic_log`` writes weeks of messenger life.

>>> log = Log()
>>> t = log.transfer("alice", "bob", T0, amount=1_500)
>>> t.amount_cents, t.sender == hashed("account", "alice"), len(log)
(1500, True, 1)
"""
from __future__ import annotations

import random
from typing import Optional

from features.windows import DAY, HOUR, MINUTE
from pipelines.contracts import schemas as s
from pipelines.contracts.privacy import pseudonymize

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def hashed(kind: str, raw: Optional[str]) -> Optional[str]:
    return None if raw is None else pseudonymize(kind, raw)


class Log(list):
    """A list of events, built from raw names ("alice", "phone-1") turned into keyed hashes."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def message(self, a: str, b: str, ts: int, money: bool = False, request: bool = False,
                urgent: bool = False, link: bool = False) -> s.MessageSent:
        return self._add(s.MessageSent(
            id=self._id("m"), ts=ts, sender=hashed("account", a), recipient=hashed("account", b),
            conversation=hashed("conversation", "|".join(sorted((a, b)))), lang="fr", length=20,
            money_talk=money or request, money_request=request, urgency=urgent, has_link=link,
            has_phone=False))

    def transfer(self, a: str, b: str, ts: int, amount: int = 2_000, device: Optional[str] = None,
                 card: Optional[str] = None, ip: Optional[str] = None, **kw) -> s.TransferRequested:
        return self._add(s.TransferRequested(
            id=self._id("t"), ts=ts, transfer_id=self._id("tr"), sender=hashed("account", a),
            recipient=hashed("account", b), amount_cents=amount, device=hashed("device", device),
            card=hashed("card", card), ip=hashed("ip", ip), payout_due_ts=ts + 2 * HOUR, **kw))

    def account_event(self, a: str, ts: int, kind: str, device: Optional[str] = None,
                      ip: Optional[str] = None, card: Optional[str] = None,
                      country: Optional[str] = None) -> s.AccountEvent:
        return self._add(s.AccountEvent(
            id=self._id("e"), ts=ts, account=hashed("account", a), kind=kind,
            device=hashed("device", device), ip=hashed("ip", ip), card=hashed("card", card),
            country=country))

    def assistant(self, a: str, b: str, ts: int, kind: str, suggestion_id: str,
                  **kw) -> s.AssistantEvent:
        return self._add(s.AssistantEvent(
            id=self._id("s"), ts=ts, kind=kind, suggestion_id=suggestion_id,
            user=hashed("account", a), counterparty=hashed("account", b),
            conversation=hashed("conversation", "|".join(sorted((a, b)))), **kw))

    def label(self, a: Optional[str], ts: int, known_at: int, kind: str = "chargeback",
              is_fraud: bool = True, party: Optional[str] = None, sender: Optional[str] = None,
              recipient: Optional[str] = None, on: Optional[s.TransferRequested] = None) -> s.Label:
        """A label judging account ``a`` (raw names, as everywhere here). ``on``: the labelled
        transfer, whose id and parties it then names (``a`` None: its sender's account)."""
        party_keys = {"sender": hashed("account", sender), "recipient": hashed("account", recipient)}
        transfer_id = None
        if on is not None:
            transfer_id, party_keys = on.transfer_id, {"sender": on.sender,
                                                       "recipient": on.recipient}
        account = hashed("account", a) if a is not None else party_keys["sender"]
        return self._add(s.Label(id=self._id("l"), ts=ts, known_at=known_at, kind=kind,
                                 account=account, is_fraud=is_fraud, party=party,
                                 transfer_id=transfer_id, **party_keys))

    def _add(self, event):
        self.append(event)
        return event


def synthetic_log(n_accounts: int = 500, days: int = 7, seed: int = 7, t0: int = T0) -> Log:
    """Per account and week, about: 50 messages sent (so ~100 sent or received) in bursts with
    its ~8 contacts, 10 transfers sent (so ~20 sent or received), 10 account events, a few
    assistant suggestions; plus a mule ring (fan-in, quick forwarding) with labels: a third of
    the payments to a mule reported by their payer hours to days later (naming the transfer and
    its parties), a few of those cleared by an analyst later still, and chargebacks on the mules
    after a week."""
    rnd = random.Random(seed)
    log = Log()
    user = [f"user{i}" for i in range(n_accounts)]
    contacts: list[set[int]] = [set() for _ in range(n_accounts)]
    for a in range(n_accounts):  # an undirected contact graph, ~8 contacts each
        for b in rnd.sample(range(n_accounts), 4):
            if b != a:
                contacts[a].add(b)
                contacts[b].add(a)
    friends = [sorted(c) for c in contacts]
    end, weeks = t0 + days * DAY, days / 7

    def when() -> int:
        return rnd.randint(t0 + HOUR, end)

    def pay(a: int, b: int, ts: int, amount: int,
            suggestion: Optional[str] = None) -> s.TransferRequested:
        return log.transfer(user[a], user[b], ts, amount, device=f"phone{a}", ip=f"ip{a % 300}",
                     card=f"card{a}" if a % 2 else None, suggestion_id=suggestion)

    for a in range(n_accounts):
        log.account_event(user[a], t0 + rnd.randint(0, HOUR), "signup", device=f"phone{a}",
                          ip=f"ip{a % 300}", country="FR")
    for a in range(n_accounts):
        for _ in range(int(10 * weeks)):  # bursts of 5 messages both ways: ~100 a week each
            b, ts, money = rnd.choice(friends[a]), when(), rnd.random() < 0.3
            for k in range(5):
                x, y = (a, b) if k % 2 == 0 else (b, a)
                log.message(user[x], user[y], ts + k * MINUTE, money=money and k < 2)
        for _ in range(int(10 * weeks)):
            b, ts, suggestion = rnd.choice(friends[a]), when(), None
            if rnd.random() < 0.3:
                suggestion = f"sg{a}-{ts}"
                log.assistant(user[a], user[b], ts - MINUTE, "suggested", suggestion)
            pay(a, b, ts, int(rnd.lognormvariate(8, 1)) + 1, suggestion)
        for _ in range(int(10 * weeks)):
            kind = rnd.choices(["login", "login_failed", "password_reset"], [92, 6, 2])[0]
            log.account_event(user[a], when(), kind, device=f"phone{a}", ip=f"ip{a % 300}",
                              country="FR")
    # a mule ring: strangers pay 5 mules, who forward to one collector within minutes
    mules, collector = range(n_accounts - 6, n_accounts - 1), n_accounts - 1
    reports = random.Random(seed + 1)  # its own draws: the rest of the log is as it was
    for day in range(days):
        for m in mules:
            ts = t0 + day * DAY + rnd.randint(0, 20 * HOUR)
            for _ in range(4):
                ts += rnd.randint(1, 20) * MINUTE
                tr = pay(rnd.randrange(n_accounts - 6), m, ts, rnd.randint(5_000, 50_000))
                if reports.random() < 0.3:
                    known = ts + reports.randint(2 * HOUR, 3 * DAY)
                    log.label(user[m], ts, known, "user_scam_report", party="recipient", on=tr)
                    if reports.random() < 0.1:
                        log.label(None, ts, known + DAY, "analyst_verdict", is_fraud=False,
                                  party="unknown", on=tr)
            pay(m, collector, ts + 5 * MINUTE, 150_000)
    if days > 7:
        for m in mules:
            log.label(user[m], t0 + DAY, known_at=t0 + 7 * DAY)
    return log
