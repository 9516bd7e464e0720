"""The source families an event history may hold, and which features each family feeds.

A history is normal whatever families it lacks: a payment provider's export often holds only
transfers and labels. A model is trained on the features of the families its history holds;
features of an absent family are left out (never fed as all-null).
"""
from __future__ import annotations

# transfers: transfer requests; labels: delayed fraud labels; accounts: sign-ups;
# devices: logins, devices, cards, IPs (account-security events); messages: chat metadata;
# assistant: payment suggestions and their outcomes.
FAMILIES = ("transfers", "labels", "accounts", "devices", "messages", "assistant")
