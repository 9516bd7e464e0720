"""Feature families: names come with the values, and the warning codes and source families are
derived from the families' declarations."""
from __future__ import annotations

import pytest

from features.family import PROBE, Family, declared
from features.links import DeviceState
from features.routing import STATE_CLASSES
from features.sources import FEATURE_FAMILY
from features.vector import DECLARED, FEATURE_NAMES, WARNING_CODES
from pipelines.contracts.schemas import ReasonCode
from pipelines.stream.decide import warning_code

# the mapping decide.py listed by hand before the families declared it
WARNINGS_BEFORE = {
    "sender_no_prior_conversation": "first_contact_payee",
    "sender_first_transfer_to_recipient": "first_contact_payee",
    "sender_pair_age_hours": "first_contact_payee",
    "sender_pair_urgent_msgs_1h": "urgency",
    "sender_pair_money_requests_in_1h": "money_request",
    "sender_pair_link_msgs_1h": "link_shared",
    "sender_hours_since_new_device": "new_device",
    "sender_device_first_seen": "new_device",
    "sender_hours_since_new_card": "new_card",
    "sender_hours_since_password_reset": "credentials_changed",
    "sender_hours_since_email_change": "credentials_changed",
    "sender_hours_since_phone_change": "credentials_changed",
    "sender_amount_to_median_30d": "unusual_amount",
    "sender_amount_zscore_30d": "unusual_amount",
    "recipient_fraud_links_30d": "payee_reported",
    "recipient_scam_reports_30d": "payee_reported",
    "recipient_confirmed_fraud": "payee_reported",
}


def test_the_warning_codes_are_the_families_declarations():
    assert WARNING_CODES == WARNINGS_BEFORE
    reasons = [ReasonCode("sender_count_1h", 3.0, 0.4),
               ReasonCode("recipient_scam_reports_30d", 1.0, 0.3),
               ReasonCode("sender_pair_urgent_msgs_1h", 2.0, 0.2)]
    assert warning_code(reasons) == "payee_reported"  # the strongest reason that has one
    assert warning_code(reasons[:1]) == "unusual_transfer"


def test_every_feature_is_declared_once_with_its_family_and_source():
    assert tuple(name for name, _, _, _ in DECLARED) == FEATURE_NAMES
    assert list(FEATURE_FAMILY) == list(FEATURE_NAMES)
    assert FEATURE_FAMILY["sender_pair_prior_transfers_out"] == "transfers"  # an exception...
    assert FEATURE_FAMILY["sender_pair_msgs_out_7d"] == "messages"  # ...to its family's source
    for kind, role in (("account", "sender"), ("device", "transfer")):
        cls = STATE_CLASSES[kind]
        assert cls.feature_names(role) == tuple(name for name, _, _ in declared(cls, role))


def test_a_family_that_reads_other_names_than_it_declared_is_refused(monkeypatch):
    moody = iter([{"accounts_7d": 1.0}, {"accounts_seven_days": 1.0}])

    class Moody(DeviceState, array_like=True, gc=False):
        READS = {"transfer": (Family(lambda st, tr, t, role: next(moody), "devices"),)}

    assert Moody.feature_names("transfer") == ("device_accounts_7d",)  # the first read names it
    with pytest.raises(ValueError, match="accounts_seven_days"):
        Moody().features_for(PROBE, "transfer")
