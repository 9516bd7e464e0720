"""The analysts' first-wins rule on a held transfer (``Control.transfer_action``), per hold: a
second release or block of the same hold is refused; a transfer released and then held again (an
account lock) can be decided again, for the new hold only."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from pipelines.stream.control import ActionError, Control


class _Table(dict):
    """The control table as Control uses it: read by key, written through its changelog
    (applied at once here, as the changelog round trip would)."""

    def __init__(self):
        super().__init__()
        self.changelog_topic = SimpleNamespace(send=self._send)

    async def _send(self, key, value, **_):
        self[key] = value


def _act(control: Control, n: int, actor: str, action: str, hold: str | None = None) -> None:
    params = {"hold": hold} if hold else {}
    asyncio.run(control.transfer_action(SimpleNamespace(
        id=f"a{n}", target="t1", actor=actor, action=action, params=params)))


def test_one_decision_per_hold_and_a_new_hold_decided_again():
    control = Control(_Table())
    _act(control, 1, "alice", "release", "t1.2")
    with pytest.raises(ActionError, match="already released by alice"):
        _act(control, 2, "bob", "block", "t1.2")  # the same hold: the first analyst's wins
    _act(control, 1, "alice", "release", "t1.2")  # a redelivery passes, changes nothing
    # paid out? no: an account lock held it again (status t1.5); it leaves the queue only so
    _act(control, 3, "bob", "block", "t1.5")
    assert control.transfer("t1")["decided"] == {"actor": "bob", "action": "block", "id": "a3",
                                                  "hold": "t1.5"}
    with pytest.raises(ActionError, match="already blocked by bob"):
        _act(control, 4, "alice", "release", "t1.5")
    with pytest.raises(ActionError):  # an action that names no hold never reopens it
        _act(control, 5, "alice", "release")
    with pytest.raises(ActionError):  # nor does an older hold
        _act(control, 6, "alice", "release", "t1.2")


def test_a_claimed_transfer_is_decided_by_its_claimant_only():
    """The worker enforces claims, not only the console: another analyst's release or block of
    a claimed transfer is refused (signed or not, it names the claimant), until a lead assigns
    it."""
    control = Control(_Table())
    _act(control, 1, "alice", "claim")
    for n, action in ((2, "release"), (3, "block"), (4, "claim")):
        with pytest.raises(ActionError, match="claimed by alice"):
            _act(control, n, "bob", action, "t1.2")
    assert "decided" not in control.transfer("t1")
    asyncio.run(control.transfer_action(SimpleNamespace(
        id="a5", target="t1", actor="lead", action="assign", params={"assignee": "bob"})))
    with pytest.raises(ActionError, match="claimed by bob"):
        _act(control, 6, "alice", "release", "t1.2")
    _act(control, 7, "bob", "block", "t1.2")
    assert control.transfer("t1")["decided"]["actor"] == "bob"
