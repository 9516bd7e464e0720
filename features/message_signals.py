"""Signals derived from a chat message's text, in French and English.

The messaging service calls ``derive`` and then drops the text: only these signals
(and the message's length) ever reach Kafka. Deterministic, no model, a few µs a message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_MONEY = re.compile(
    r"\b(argent|payer|paie|pay(?:e|ed|ing)?|rembours\w*|virement|virer|envoie|envoyer|send|"
    r"transfer|money|cash|thune|fric|euros?|€|loyer|rent|facture|bill|split|partager|dette|"
    r"owe|doi[st]|prêt|prête|lend|loan|iban|resto|restaurant|courses|groceries|cadeau|gift)\b",
    re.IGNORECASE,
)
_REQUEST = re.compile(
    r"(peux[- ]tu\s+(?:me\s+|m')?(?:envoyer|prêter|virer|avancer)|tu\s+peux\s+(?:me\s+|m')?(?:envoyer|prêter|virer|avancer)|"
    r"can\s+you\s+(?:send|lend|transfer|wire)|could\s+you\s+(?:send|lend|transfer|wire)|"
    r"j'ai\s+besoin\s+d[e']\s*(?:argent|\d)|i\s+need\s+(?:some\s+)?(?:money|cash|\d|€|\$)|"
    r"envoie[- ]moi|send\s+me|prête[- ]moi|lend\s+me)",
    re.IGNORECASE,
)
_AMOUNT = re.compile(
    r"(?:€\s*(\d{1,6}(?:[.,]\d{1,2})?))|(?:(\d{1,6}(?:[.,]\d{1,2})?)\s*(?:€|eur(?:os?)?\b))",
    re.IGNORECASE,
)
_URGENCY = re.compile(
    r"\b(urgent|urgence|vite|asap|tout\s+de\s+suite|immediately|right\s+now|maintenant|now|"
    r"emergency|aujourd'hui\s+même|before\s+tonight|avant\s+ce\s+soir|please\s+hurry|dépêche)\b",
    re.IGNORECASE,
)
_LINK = re.compile(r"(https?://|www\.|\b[a-z0-9-]+\.(?:com|fr|net|org|io|ly|me|co)\b)", re.IGNORECASE)
_PHONE = re.compile(r"(?:\+\d{2}[\s.]?|\b0)\d(?:[\s.-]?\d{2}){4}\b")
_FR = re.compile(r"\b(je|tu|le|la|les|est|pas|merci|pour|avec|bonjour|salut|oui|une?|des|ce|ça|demain)\b",
                 re.IGNORECASE)
_EN = re.compile(r"\b(i|you|the|is|not|thanks|for|with|hello|hi|yes|a|an|this|that|tomorrow)\b",
                 re.IGNORECASE)


@dataclass(frozen=True)
class MessageSignals:
    lang: str  # "fr" | "en" | "other"
    length: int
    money_talk: bool
    money_request: bool
    amount_mentioned_cents: Optional[int]
    urgency: bool
    has_link: bool
    has_phone: bool


def _amount_cents(text: str) -> Optional[int]:
    match = _AMOUNT.search(text)
    if not match:
        return None
    number = (match.group(1) or match.group(2)).replace(",", ".")
    cents = int(round(float(number) * 100))
    return cents if cents > 0 else None


def _language(text: str) -> str:
    fr, en = len(_FR.findall(text)), len(_EN.findall(text))
    if fr == en == 0:
        return "other"
    return "fr" if fr >= en else "en"


def derive(text: str) -> MessageSignals:
    """The signals of one message. The caller must drop ``text`` afterwards."""
    amount = _amount_cents(text)
    request = bool(_REQUEST.search(text))
    return MessageSignals(
        lang=_language(text),
        length=len(text),
        money_talk=request or amount is not None or bool(_MONEY.search(text)),
        money_request=request,
        amount_mentioned_cents=amount,
        urgency=bool(_URGENCY.search(text)),
        has_link=bool(_LINK.search(text)),
        has_phone=bool(_PHONE.search(text)),
    )
