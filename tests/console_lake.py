"""A small lake for the console tests: a few accounts, transfers, decisions (some held), statuses,
labels, analyst actions, recovery cases (one escalated after wrong codes) and dead letters,
written with the lake's own writer."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from features.vector import FEATURE_NAMES
from pipelines.contracts import schemas
from pipelines.contracts.privacy import pseudonymize as h
from pipelines.lake import parquet as lake

MIN = 60_000


def acct(i: int) -> str:
    return h("account", f"user-{i}")


def write_lake(lake_dir: Path, now_ms: int | None = None) -> dict:
    """Returns what was written that tests look for (held transfer ids, accounts…)."""
    now = now_ms or int(time.time() * 1000)
    t0 = now - 120 * MIN
    account_events, messages, transfers, decisions, statuses, labels = [], [], [], [], [], []
    for i in range(8):
        account_events.append(schemas.AccountEvent(id=f"ae-s{i}", ts=t0 + i, account=acct(i),
                                                   kind="signup", device=h("device", f"dev-{i}"),
                                                   ip=h("ip", f"10.0.0.{i}"), country="FR"))
        account_events.append(schemas.AccountEvent(id=f"ae-c{i}", ts=t0 + 10 + i, account=acct(i),
                                                   kind="card_registered",
                                                   card=h("card", f"card-{i % 3}")))
    held = []
    for i in range(12):
        sender, recipient = acct(i % 4), acct(4 + i % 4)
        ts = t0 + (i + 1) * 5 * MIN
        tid = f"tr-{i:03d}"
        messages.append(schemas.MessageSent(id=f"m-{i}", ts=ts - MIN, sender=recipient, recipient=sender,
                                            conversation=h("conversation", f"c-{i % 4}"), lang="fr",
                                            length=40, money_talk=True, money_request=i % 2 == 0,
                                            urgency=i % 3 == 0, has_link=False, has_phone=False))
        transfers.append(schemas.TransferRequested(
            id=f"t-{i}", ts=ts, transfer_id=tid, sender=sender, recipient=recipient,
            amount_cents=1000 * (i + 1), device=h("device", f"dev-{i % 4}"),
            card=h("card", f"card-{i % 3}"), payout_due_ts=now + (i + 1) * 10 * MIN))
        action = "hold" if i % 3 == 0 else "approve"
        score = 0.5 + i / 40 if action == "hold" else 0.05
        features = {name: float((i * 7 + k) % 11) for k, name in enumerate(FEATURE_NAMES[:12])}
        features[FEATURE_NAMES[12]] = None
        decisions.append(schemas.Decision(
            id=f"d-{i}", ts=ts + 50, transfer_id=tid, sender=sender, recipient=recipient,
            amount_cents=1000 * (i + 1), action=action, score=score, model_version="m-test",
            rule_hits=["big_first_payment"] if action == "hold" else [],
            reasons=[schemas.ReasonCode(feature=FEATURE_NAMES[k], value=features[FEATURE_NAMES[k]],
                                        contribution=0.3 - 0.1 * k) for k in range(5)],
            features=features, latency_ms=20.0 + i))
        status = "held" if action == "hold" else "approved"
        statuses.append(schemas.TransferStatus(id=f"s-{i}", ts=ts + 60, transfer_id=tid, sender=sender,
                                               recipient=recipient, amount_cents=1000 * (i + 1),
                                               status=status, reason=f"decision:{action}"))
        if action == "hold":
            held.append(tid)
    labels.append(schemas.Label(id="l-1", ts=t0, kind="user_scam_report", account=acct(5),
                                is_fraud=True, known_at=t0 + MIN))
    actions = [
        schemas.AnalystAction(id="aa-1", ts=t0 + 30 * MIN, actor="alice", role="analyst",
                              action="claim", target_kind="transfer", target=held[0],
                              reason="<b>looking</b> into it"),
        schemas.AnalystAction(id="aa-2", ts=t0 + 31 * MIN, actor="leo", role="lead",
                              action="rule_change", target_kind="rule", target="big_first_payment",
                              reason="new rule",
                              params={"op": "upsert", "name": "big_first_payment",
                                      "expression": f"{FEATURE_NAMES[0]} > 5", "action": "hold",
                                      "priority": "1", "enabled": "true"}),
        schemas.AnalystAction(id="aa-3", ts=t0 + 32 * MIN, actor="leo", role="lead",
                              action="add_to_list", target_kind="device",
                              target=h("device", "dev-9"), reason="farm device",
                              params={"list": "block"}),
    ]
    recovery = [
        schemas.RecoveryEvent(id="case-1.1", ts=t0 + 40 * MIN, case_id="case-1", account=acct(2),
                              state="opened", actor="stream", reason="new device then reset"),
        schemas.RecoveryEvent(id="case-1.2", ts=t0 + 41 * MIN, case_id="case-1", account=acct(2),
                              state="contained", actor="stream"),
    ]
    # case-2: its challenge failed (three wrong codes): escalated, waiting for an analyst
    for n, state in enumerate(("opened", "contained", "owner_verification", "escalated"), 1):
        recovery.append(schemas.RecoveryEvent(
            id=f"case-2.{n}", ts=t0 + 30 * MIN + n, case_id="case-2", account=acct(3), state=state,
            actor="stream", reason="owner verification failed: 3 wrong codes" if n == 4 else ""))
    sent_code = h("account", "a code").replace("a_", "v_")  # stands in for its keyed hash
    verification = [schemas.OwnerVerification(
        id="ov-0", ts=t0 + 30 * MIN + 3, kind="code_sent", case_id="case-2", account=acct(3),
        code_digest=sent_code, challenge_id="case-2.sc3")]
    verification += [schemas.OwnerVerification(
        id=f"ov-{n}", ts=t0 + 31 * MIN + n, kind="answer", case_id="case-2", account=acct(3),
        code_digest=h("account", f"guess {n}").replace("a_", "v_"), answer="it_was_me")
        for n in range(1, 4)]
    secret = json.dumps({"sender": "user-1", "text": "my card 4111 1111 1111 1111"}).encode()
    dead = [schemas.DeadLetter(ts=t0 + 50 * MIN + i, reason="Expected `str` matching regex - at `$.sender`",
                               topic="messages", partition=0, offset=i,
                               original_b64=base64.b64encode(secret).decode(),
                               original_size=len(secret)) for i in range(3)]
    for topic, events in [("account-events", account_events), ("messages", messages),
                          ("transfer-requests", transfers), ("decisions", decisions),
                          ("transfer-status", statuses), ("labels", labels),
                          ("analyst-actions", actions), ("recovery", recovery),
                          ("owner-verification", verification),
                          ("dead-letters", dead)]:
        lake.write_batch(lake_dir, topic, lake.TopicTable(topic, with_kafka_columns=True), events,
                         "test", partitions=[0] * len(events), offsets=list(range(len(events))))
    held.sort(key=lambda t: -int(t.split("-")[1]))  # higher index: higher score and amount
    return {"held": held, "accounts": [acct(i) for i in range(8)], "now": now}


def signed_in(at, username: str, role: str):
    """``at`` (a Streamlit AppTest) signed in as ``username``, a user with ``role`` in the data
    dir's users file (the console checks the file at every run: a session of a user who is not
    there ends at once)."""
    import secrets

    from dashboards import users

    users.write_users(users.users_path(), {username: (role, secrets.token_urlsafe(9))})
    at.session_state["auth"] = {"username": username, "role": role}
    return at

