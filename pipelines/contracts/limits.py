"""Hard limits on a transfer, enforced by the payment service before anything is published.

They sit under every scoring policy: a transfer over a limit is refused (422 with the reason)
and never reaches Kafka, so the rules, lists and models that decide afterwards can only
tighten what the limits let through. One place, read from the environment, shown read-only
in the console (rules page).

"New account": one whose first transfer the payment service knows (from its log-rebuilt
state) is less than ``VIGIE_NEW_ACCOUNT_DAYS`` old, or that has none yet. The payment service
has that without reading another topic, and it cannot be gamed by an attacker who signs up
early and waits: the clock starts at the first money sent. (The transfer log's retention must
exceed the window; past it an account counts as new again, which only tightens.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pipelines.contracts import settings

DAY_MS = 86_400_000


def euros(cents: int) -> str:
    return f"{cents / 100:,.2f}"


@dataclass(frozen=True)
class Limits:
    max_amount_cents: int  # per transfer
    currencies: tuple[str, ...]  # allowed, ISO 4217
    new_account_days: int  # an account is new until this long after its first transfer
    new_account_daily_cents: int  # what a new account may send in any 24 h

    def refusal(self, amount_cents: int, currency: str, first_transfer_ts: Optional[int],
                sent_last_24h_cents: int, now_ms: int) -> Optional[str]:
        """Why this transfer is refused, or None. ``sent_last_24h_cents``: what the sender's
        transfers of the last 24 h add up to, without this one."""
        if currency not in self.currencies:
            return f"currency {currency} not allowed (allowed: {', '.join(self.currencies)})"
        if amount_cents > self.max_amount_cents:
            return (f"amount over the per-transfer limit of {euros(self.max_amount_cents)} "
                    f"{currency}")
        if self.is_new(first_transfer_ts, now_ms):
            total = sent_last_24h_cents + amount_cents
            if total > self.new_account_daily_cents:
                return (f"new account (first transfer less than {self.new_account_days} days "
                        f"ago): over its limit of {euros(self.new_account_daily_cents)} a day "
                        f"({euros(sent_last_24h_cents)} sent in the last 24 h)")
        return None

    def is_new(self, first_transfer_ts: Optional[int], now_ms: int) -> bool:
        return (first_transfer_ts is None
                or now_ms - first_transfer_ts < self.new_account_days * DAY_MS)

    def table(self) -> list[dict]:
        """The limits as rows for a screen: setting, value, environment variable."""
        return [
            {"limit": "maximum per transfer", "current": euros(self.max_amount_cents),
             "setting": "VIGIE_MAX_TRANSFER_CENTS"},
            {"limit": "allowed currencies", "current": ", ".join(self.currencies),
             "setting": "VIGIE_CURRENCIES"},
            {"limit": "an account is new for (days after its first transfer)",
             "current": str(self.new_account_days), "setting": "VIGIE_NEW_ACCOUNT_DAYS"},
            {"limit": "a new account may send in 24 h",
             "current": euros(self.new_account_daily_cents),
             "setting": "VIGIE_NEW_ACCOUNT_DAILY_CENTS"},
        ]


def load() -> Limits:
    env = settings.environment().limits
    currencies = tuple(c.strip().upper() for c in env.currencies.split(",") if c.strip())
    limits = Limits(max_amount_cents=env.max_transfer_cents, currencies=currencies,
                    new_account_days=env.new_account_days,
                    new_account_daily_cents=env.new_account_daily_cents)
    if limits.max_amount_cents <= 0 or limits.new_account_daily_cents <= 0 or not currencies:
        raise ValueError("transfer limits must be positive, with at least one currency")
    return limits
