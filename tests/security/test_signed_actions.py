"""Analyst actions are signed by the console; the worker applies only those it can verify whose
role allows them. A forged action (no signature, a bad one, another key's, a role the action does
not allow, a signed action replayed with one field changed) is dead-lettered with its reason and
changes nothing: no decision (no money moves), no rule, no recovery case. Real broker, real
worker; a signed action of each kind, sent after the forged ones, shows the worker applies what
the console signs (the topic has one partition: the forged ones were handled before it)."""
from __future__ import annotations

import base64
import time
import uuid

import msgspec
import pytest
from msgspec.structs import replace
from service_support import Tap, acc, aio, eventually, publisher

from pipelines.contracts import schemas as s, signatures
from pipelines.contracts.topics import decode
from pipelines.services.common import now_ms
from pipelines.stream.router import action_refusal

CONTROL_CHANGELOG = "vigie-control-changelog"  # the worker's control table (rules, lists...)


def action(kind: str, target_kind: str, target: str, actor: str = "alice", role: str = "analyst",
           **params) -> s.AnalystAction:
    return s.AnalystAction(id=f"sa-{uuid.uuid4().hex[:16]}", ts=now_ms(), actor=actor, role=role,
                           action=kind, target_kind=target_kind, target=target,
                           reason="security test", params={k: str(v) for k, v in params.items()})


def release(target: str, **who) -> s.AnalystAction:
    return action("release", "transfer", target, sender=acc(f"{target}-from"),
                  recipient=acc(f"{target}-to"), amount_cents=990_000, **who)


def rule(name: str, **who) -> s.AnalystAction:
    """An upsert of a disabled rule: it shows in the rule set and changes no decision."""
    return action("rule_change", "rule", name, op="upsert", name=name, action="hold",
                  enabled="false", expression="transfer_amount_cents < 0", **who)


def v1_bytes(event: s.AnalystAction) -> bytes:
    """The same action as version 1 wrote it: no ``v``, no signature."""
    fields = msgspec.to_builtins(event)
    del fields["v"], fields["signature"]
    return msgspec.json.encode(fields)


def forgeries(tag: str, signed_release: s.AnalystAction) -> list[tuple[str, bytes, str, str]]:
    """(case, the bytes sent, what it targets, a fragment of the reason it must be refused with)."""
    intruder, _ = signatures.new_key_pair()
    t = lambda case: f"{tag}-{case}"  # noqa: E731  a transfer id per case
    cases = [
        ("unsigned release as admin", release(t("u"), actor="nobody", role="admin"),
         "unsigned: no console signature"),
        ("garbage signature", replace(release(t("g")), signature="A" * 86), "bad signature"),
        ("signed with another key", signatures.sign(release(t("k"), actor="nobody", role="admin"),
                                                    intruder), "bad signature"),
        ("signed, role may not release", signatures.sign(release(t("r"), actor="dana",
                                                                 role="data_scientist")),
         "the role data_scientist may not release"),
        ("signed release replayed on another transfer", replace(signed_release, target=t("t")),
         "bad signature"),
        ("signed release replayed with another amount", replace(signed_release, params={
            **signed_release.params, "amount_cents": "99999999"}), "bad signature"),
        ("signed release replayed with another role", replace(signed_release, role="admin"),
         "bad signature"),
        ("unsigned rule change", rule(f"{tag}_unsigned", actor="nobody", role="admin"),
         "unsigned"),
        ("signed, role may not change rules", signatures.sign(rule(f"{tag}_analyst")),
         "the role analyst may not rule change"),
        ("unsigned open case", action("open_case", "account", acc(t("victim")), actor="nobody",
                                      role="admin"), "unsigned"),
    ]
    out = [(case, s.encode(event), event.target, reason) for case, event, reason in cases]
    old = release(t("v1"), actor="nobody", role="admin")
    return out + [("version 1 (unsigned) release", v1_bytes(old), old.target, "unsigned")]


async def _exists(topic: str) -> bool:
    from pipelines.kafka.clients import consumer

    probe = consumer()
    await probe.start()
    try:
        return topic in await probe.topics()
    finally:
        await probe.stop()


def test_the_worker_names_why_it_refuses(tmp_path, monkeypatch):
    """action_refusal, without a broker: each reason, and a signed, allowed action passes."""
    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(signatures.SIGNING_KEY_ENV, raising=False)
    monkeypatch.delenv(signatures.VERIFY_KEY_ENV, raising=False)
    plain = release("tr-1")
    assert action_refusal(plain) == "unsigned: no console signature"
    assert "no verify key" in action_refusal(replace(plain, signature="AAAA"))  # console never signed
    signed = signatures.sign(plain)  # makes the data dir's key pair
    assert action_refusal(signed) is None
    for field, value in [("target", "tr-2"), ("actor", "mallory"), ("role", "admin"),
                         ("reason", "security test."), ("ts", plain.ts + 1), ("id", "sa-other"),
                         ("params", {**plain.params, "amount_cents": "1"})]:
        assert action_refusal(replace(signed, **{field: value})) == \
            "bad signature: not signed by the console", field
    assert action_refusal(signatures.sign(release("tr-1", role="data_scientist"))) == \
        "the role data_scientist may not release"
    assert action_refusal(signatures.sign(action("assign", "transfer", "tr-1", assignee="bob"))) \
        == "the role analyst may not assign"
    # an old, unsigned record still decodes (as an unsigned version 2), and is refused
    old = decode("analyst-actions", v1_bytes(plain))
    assert (old.v, old.signature, old.target) == (2, "", "tr-1")
    assert action_refusal(old) == "unsigned: no console signature"


def test_keys_are_made_once_per_data_dir_and_the_environment_overrides_them(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(signatures.SIGNING_KEY_ENV, raising=False)
    monkeypatch.delenv(signatures.VERIFY_KEY_ENV, raising=False)
    first = signatures.sign(release("tr-1"))
    private = tmp_path / "secrets" / "console-signing.key"
    assert oct(private.stat().st_mode)[-3:] == "600"
    assert oct(private.parent.stat().st_mode)[-3:] == "700"
    key_text = private.read_text()
    assert signatures.sign(first) == first and private.read_text() == key_text  # not made again
    # a deployment's keys: the console holds the private key, the worker only the public ones
    new_private, new_public = signatures.new_key_pair()
    old_public = signatures.verify_keys()[0]
    monkeypatch.setenv(signatures.SIGNING_KEY_ENV, signatures._b64(new_private))
    monkeypatch.setenv(signatures.VERIFY_KEY_ENV,
                       f"{signatures._b64(new_public)},{signatures._b64(old_public)}")  # rotating
    second = signatures.sign(release("tr-2"))
    assert signatures.verify(second, [old_public]) == "bad signature: not signed by the console"
    assert action_refusal(second) is None and action_refusal(first) is None
    monkeypatch.setenv(signatures.VERIFY_KEY_ENV, signatures._b64(new_public))  # old key retired
    assert action_refusal(first) == "bad signature: not signed by the console"
    monkeypatch.setenv(signatures.VERIFY_KEY_ENV, "not-a-key")
    assert action_refusal(second).startswith("no usable verify key: VIGIE_CONSOLE_VERIFY_KEY")


@pytest.mark.kafka
@aio
async def test_forged_actions_are_dead_lettered_and_move_no_money(kafka, processes):
    tag = f"sa{uuid.uuid4().hex[:10]}"
    signed_release = signatures.sign(release(f"{tag}-ok"))  # as the console writes it
    forged = forgeries(tag, signed_release)
    legit_rule = signatures.sign(rule(f"{tag}_lead", actor="leo", role="lead"))
    legit_case = signatures.sign(action("open_case", "account", acc(f"{tag}-suspect")))
    topics = ("decisions", "dead-letters", "recovery-signals", CONTROL_CHANGELOG)
    processes.start("worker", "worker")
    await eventually(lambda: _exists(CONTROL_CHANGELOG), timeout=120, interval=1)  # made by the worker
    async with Tap(*topics) as tap, publisher() as pub:
        sent = {}  # offset on analyst-actions -> (case, target, reason)
        for case, raw, target, reason in forged:
            where = await pub.publish_raw("analyst-actions", raw)
            sent[where.offset] = (case, target, reason)
        for event in (signed_release, legit_rule, legit_case):
            await pub.publish("analyst-actions", event)

        def letters() -> dict[int, s.DeadLetter]:
            out = {}
            for r in tap.records:
                if r.topic == "dead-letters":
                    letter = decode("dead-letters", r.value)
                    if letter.topic == "analyst-actions" and letter.offset in sent:
                        out[letter.offset] = letter
            return out

        def keys(topic: str) -> list[bytes]:
            return [r.key for r in tap.records if r.topic == topic]

        def rules_written() -> str:
            return " ".join(r.value.decode(errors="replace") for r in tap.records
                            if r.topic == CONTROL_CHANGELOG and r.key == b"rules")

        def missing() -> list[str]:
            """What is still to come: the signed ones applied, and a letter per forged one."""
            decided = {d.transfer_id for d in tap.events("decisions")}
            return [what for what, done in [
                ("the signed release's decision", signed_release.target in decided),
                ("the lead's rule", f"{tag}_lead" in rules_written()),
                ("the analyst's case", legit_case.target.encode() in keys("recovery-signals")),
                (f"{len(sent) - len(letters())} dead letters", len(letters()) == len(sent))]
                if not done]

        deadline = time.monotonic() + 180
        while missing() and time.monotonic() < deadline:
            await tap._read()
        assert not missing(), (missing(), [letter.reason for letter in letters().values()])
        await tap.drain()

    refused = letters()
    for (offset, (case, target, reason)), (_, raw, _, _) in zip(sent.items(), forged):
        letter = refused[offset]
        assert " refused: " in letter.reason and reason in letter.reason, (case, letter.reason)
        assert base64.b64decode(letter.original_b64) == raw, case
    # no money moved: the only decision among this test's transfers is the signed release's
    decided = {d.transfer_id: d for d in tap.events("decisions") if d.transfer_id.startswith(tag)}
    assert set(decided) == {signed_release.target}, sorted(decided)
    assert decided[signed_release.target].model_version == "analyst:alice"
    # no rule from a forged action, no case opened by one
    assert f"{tag}_unsigned" not in rules_written() and f"{tag}_analyst" not in rules_written()
    assert acc(f"{tag}-victim").encode() not in keys("recovery-signals")
