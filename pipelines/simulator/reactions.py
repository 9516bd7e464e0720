"""How senders react to an in-chat warning on their transfer: heed it (cancel the transfer)
or pay anyway.

A scam victim heeds a warning with a probability that depends on the scenario (how deep the
deception runs: a romance victim trusts the scammer more than a buyer trusts a stranger's
listing) and on the warning's fit: a warning whose code names what this scam looks like
(``FITS``) is heeded far more often than a generic or unrelated one. An honest sender
sometimes calls off a warned payment too: that is the warnings' friction. A fraudster sending
with a stolen card or a taken-over account never heeds (the scripts do not ask).

The figures are assumptions of the simulation, chosen to be plausible, not measured: the
benchmark's figures (``pipelines.bench.warnings``) say what warnings would stop *if* people
reacted so. Change them here; docs/simulator.md#warnings says how they are used.

>>> import random
>>> p_heed("marketplace", "link_shared") > p_heed("marketplace", "new_card") > p_heed(None, "urgency")
True
>>> heeds(random.Random(1), "romance", "money_request") in (True, False)
True
"""
from __future__ import annotations

import random
from typing import Optional

# Warning codes (``features.vector.WARNING_CODES``; ``unusual_transfer`` when no reason has
# one) that name what each deception looks like to its victim.
FITS: dict[str, frozenset[str]] = {
    "romance": frozenset({"money_request", "unusual_amount", "payee_reported"}),
    "marketplace": frozenset({"first_contact_payee", "link_shared", "payee_reported",
                              "money_request"}),
    "impersonation": frozenset({"urgency", "money_request", "first_contact_payee",
                                "payee_reported"}),
    # a friend's account, taken over, asks for money: its new device or credentials give it away
    "ato": frozenset({"new_device", "credentials_changed", "urgency", "money_request",
                      "payee_reported"}),
    "mule": frozenset({"first_contact_payee", "link_shared", "urgency", "money_request",
                       "payee_reported"}),
}
# scenario -> (chance a victim heeds a fitting warning, chance they heed another one)
HEED: dict[str, tuple[float, float]] = {
    "romance": (0.25, 0.08),  # weeks of courtship: the victim defends the scammer
    "marketplace": (0.60, 0.20),  # a stranger's listing: a named doubt is often enough
    "impersonation": (0.55, 0.20),
    "ato": (0.65, 0.30),  # a friend's odd request, and a warning that the account changed hands
    "mule": (0.50, 0.18),  # the lures of mule rings: fake listings and impersonations
}
ABANDON = 0.04  # an honest sender calls off a warned payment (friction)


def p_heed(scenario: Optional[str], code: str) -> float:
    """The chance a sender cancels a transfer warned with ``code``: ``scenario`` is the scam
    its sender is the victim of, None for an honest sender."""
    if scenario is None:
        return ABANDON
    fit, other = HEED[scenario]
    return fit if code in FITS[scenario] else other


def heeds(rng: random.Random, scenario: Optional[str], code: str) -> bool:
    """Whether this sender cancels (a draw of ``p_heed``)."""
    return rng.random() < p_heed(scenario, code)
