"""Which source family each feature needs (features/sources.py)."""
from __future__ import annotations

import pytest

from features.sources import FAMILIES, FEATURE_FAMILY, features_for_sources
from features.vector import FEATURE_NAMES


def test_every_feature_is_mapped_to_one_known_family():
    assert tuple(FEATURE_FAMILY) == FEATURE_NAMES
    assert set(FEATURE_FAMILY.values()) <= set(FAMILIES)


def test_a_history_of_transfers_and_labels_feeds_the_baseline_and_counterparty_risk():
    names = features_for_sources({"transfers", "labels"})
    assert names == [n for n in FEATURE_NAMES if n in set(names)]  # FEATURE_NAMES order
    for w in ("24h", "7d", "30d"):
        assert {f"sender_out_count_{w}", f"sender_out_mean_{w}", f"recipient_in_count_{w}",
                f"recipient_in_fraud_{w}", f"recipient_in_fraud_share_{w}"} <= set(names)
    assert {"transfer_amount_cents", "recipient_amount_zscore_30d", "sender_confirmed_fraud",
            "recipient_in_hours_since_fraud", "sender_pair_prior_transfers_out"} <= set(names)
    for absent in ("device_count_1h", "ip_accounts_7d", "transfer_has_card",
                   "sender_pair_msgs_out_7d", "sender_suggestion_seen", "sender_account_age_days",
                   "sender_hours_since_new_device", "recipient_new_senders_share_24h"):
        assert absent not in names


def test_families_split_as_their_sources():
    assert FEATURE_FAMILY["recipient_in_count_7d"] == "transfers"
    assert FEATURE_FAMILY["recipient_in_fraud_7d"] == "labels"
    assert FEATURE_FAMILY["sender_out_hours_since_fraud"] == "labels"
    assert FEATURE_FAMILY["sender_account_age_days"] == "accounts"
    assert FEATURE_FAMILY["sender_suggestion_edited"] == "assistant"
    assert FEATURE_FAMILY["card_sum_24h"] == "devices"
    without_labels = set(features_for_sources(set(FAMILIES) - {"labels"}))
    assert without_labels == {n for n, f in FEATURE_FAMILY.items() if f != "labels"}
    assert len(features_for_sources(set(FAMILIES))) == len(FEATURE_NAMES)


def test_an_unknown_family_is_refused():
    with pytest.raises(ValueError):
        features_for_sources({"transfers", "telepathy"})
