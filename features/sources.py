"""The source families an event history may hold, and which features each family feeds.

A history is normal whatever families it lacks: a payment provider's export often holds only
transfers and labels. A model is trained on the features of the families its history holds;
features of an absent family are left out (never fed as all-null).

``FEATURE_FAMILY`` maps every name of ``features.vector.FEATURE_NAMES`` to the one family it needs
beyond transfers (a feature of transfers alone: "transfers"), as each feature family declares it
(``features.family``); ``features_for_sources`` is what a history holding some families can feed
a model.

>>> FEATURE_FAMILY["sender_account_age_days"], features_for_sources({"transfers"})[:2]
('accounts', ['transfer_amount_cents', 'transfer_payout_delay_hours'])
"""
from __future__ import annotations

from features.vector import DECLARED

# transfers: transfer requests; labels: delayed fraud labels; accounts: sign-ups;
# devices: logins, devices, cards, IPs (account-security events); messages: chat metadata;
# assistant: payment suggestions and their outcomes.
FAMILIES = ("transfers", "labels", "accounts", "devices", "messages", "assistant")

FEATURE_FAMILY: dict[str, str] = {name: family.source_of(suffix)
                                  for name, family, suffix, _ in DECLARED}
assert set(FEATURE_FAMILY.values()) <= set(FAMILIES), "a feature family names an unknown source"


def features_for_sources(present: set[str]) -> list[str]:
    """The features a history holding the families ``present`` can feed, in FEATURE_NAMES order
    (a family outside FAMILIES is refused)."""
    unknown = set(present) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown source families {sorted(unknown)}; known: {FAMILIES}")
    return [name for name, family in FEATURE_FAMILY.items() if family in present]
