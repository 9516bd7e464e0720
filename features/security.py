"""Account security: account age, time since each credential / contact / instrument change, failed
logins in the last hour, whether the transfer's device is new to the account.

A device or country counts as *new* only when the account already had a live one (the signup
device is not "new"); ``device_added`` always counts. Devices and countries unseen for 30 days
are forgotten. Failed logins never make a device known.
"""
from __future__ import annotations

from typing import Optional

from msgspec import Struct, field

from features.family import Family
from features.state import Moments, Rows, Stamps
from features.windows import DAY, HOUR, MONTH, NAN, count_in, drop_head, insert, span, tag

CHANGES = ("password_reset", "email_change", "phone_change", "new_device", "new_card",
           "new_bank_account", "new_country")
NEW_DEVICE, NEW_COUNTRY = CHANGES.index("new_device"), CHANGES.index("new_country")
_CHANGE_OF_KIND = {"password_reset": 0, "email_changed": 1, "phone_changed": 2,
                   "device_added": NEW_DEVICE, "card_registered": 4, "bank_account_registered": 5}
CREDENTIALS = (0, 1, 2)  # the changes an account takeover makes to lock the owner out
MAX_KNOWN = 8  # devices / countries remembered per account


class Security(Struct, array_like=True, gc=False):
    created: Optional[int] = None  # signup, absolute ms (kept while the state lives)
    # last time of each change (relative ms)
    changes: list[Optional[int]] = field(default_factory=lambda: [None] * len(CHANGES))
    fail_ts: list[int] = []  # failed logins, for one hour
    devices: dict[int, int] = {}  # device tag -> last seen
    countries: dict[str, int] = {}  # country -> last seen

    TIMES = (Rows("fail_ts", keep=HOUR), Moments("changes", keep=MONTH),
             Stamps("devices", keep=MONTH), Stamps("countries", keep=MONTH))

    def on_event(self, ev, t: int) -> None:
        kind = ev.kind
        if kind == "login_failed":
            drop_head((self.fail_ts,), span(self.fail_ts, t, HOUR)[0])
            insert((self.fail_ts,), (t,))
            return
        if kind == "signup":
            self.created = ev.ts
        i = _CHANGE_OF_KIND.get(kind)
        if i is not None:
            self._changed(i, t)
        if ev.device is not None:
            self.see_device(tag(ev.device), t)
        if ev.country is not None:
            self._see(self.countries, ev.country, t, NEW_COUNTRY)

    def see_device(self, device: int, t: int) -> None:
        self._see(self.devices, device, t, NEW_DEVICE)

    def _see(self, known: dict, key, t: int, change: int) -> None:
        last = known.get(key)
        if last is None or last < t - MONTH:
            if any(v >= t - MONTH for v in known.values()):
                self._changed(change, t)
            if len(known) >= MAX_KNOWN:
                del known[min(known, key=known.__getitem__)]
        if last is None or t > last:
            known[key] = t

    def _changed(self, i: int, t: int) -> None:
        if self.changes[i] is None or t > self.changes[i]:
            self.changes[i] = t

    def knows_device(self, device: int, t: int) -> bool:
        last = self.devices.get(device)
        return last is not None and last >= t - MONTH

    def features(self, tr, t: int, with_device: bool) -> dict[str, float]:
        created = self.created
        out = {"account_age_days": (tr.ts - created) / DAY
               if created is not None and created < tr.ts else NAN}
        for name, c in zip(_SINCE, self.changes):
            out[name] = (t - c) / HOUR if c is not None and t - MONTH <= c < t else NAN
        out["failed_logins_1h"] = float(count_in(self.fail_ts, t, HOUR))
        if with_device:
            device = tr.device
            out["device_first_seen"] = (NAN if device is None
                                        else float(not self.knows_device(tag(device), t)))
        return out

    def recent_change(self, t: int, changes, within: int) -> bool:
        return any(self.changes[i] is not None and t - within <= self.changes[i] < t
                   for i in changes)


_SINCE = tuple(f"hours_since_{c}" for c in CHANGES)

# the sender's transfer reads its device too
SECURITY = Family(lambda a, tr, t, role: a.sec.features(tr, t, role == "sender"), "devices",
                  sources={"account_age_days": "accounts"},
                  warnings={"sender": {
                      "hours_since_new_device": "new_device", "device_first_seen": "new_device",
                      "hours_since_new_card": "new_card",
                      **dict.fromkeys(("hours_since_password_reset", "hours_since_email_change",
                                       "hours_since_phone_change"), "credentials_changed")}})
