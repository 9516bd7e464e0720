"""Who may do what on the embedded broker: one Kafka principal per component, the topics it
writes and reads and the consumer groups it uses (``RIGHTS``), and ``provision``, which makes
the broker agree: SCRAM credentials from the secrets dir and exactly these ACLs, at every start.

Each service writes only its own topics; only the decision worker writes ``decisions``; only
the console writes ``analyst-actions`` and ``model-updates``; only the sink reads every topic.
``admin`` is the one super user: the broker itself, topic creation, the tests' own clients.
Why the admin calls go through confluent-kafka: docs/security.md#kafka.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism, UserScramCredentialDeletion,
                                   UserScramCredentialUpsertion)

from pipelines.contracts import keyfiles
from pipelines.contracts.settings import kafka_password_file
from pipelines.contracts.topics import INPUT_TOPICS, INTERNAL_TOPICS, STATE_TOPICS

ADMIN = "admin"
# The Faust app ids (pipelines/stream/worker.py): each is its consumer group and the prefix of
# its own topics (changelogs, the leader topic).
WORKER_APP, SINK_APP = "vigie", "vigie-lake-sink"
# The worker's group WORKER_APP is its batch ingest's (the input topics); its Faust stages
# (internal topics, tables) consume as this one (pipelines/stream/ingest.py).
STAGES_GROUP = "vigie-stages"
# The console's audit trail of sign-ins and SQL queries (dashboards/).
CONSOLE_AUDIT = "console-audit"


@dataclass(frozen=True)
class Rights:
    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()  # "*": every topic
    groups: tuple[str, ...] = ()  # consumer groups it joins and commits in
    app: str | None = None  # a Faust app: its topics "<app>-…" (creates, reads, writes them)
    not_apps: tuple[str, ...] = ()  # other apps whose ids start with "<app>-": denied
    looks_at: tuple[str, ...] = ()  # topics whose offsets it may see, not read
    looks_at_groups: tuple[str, ...] = ()  # groups whose committed offsets it may see
    transactions: str | None = None  # the prefix of its transactional ids


# The owner's answers to a takeover challenge (pipelines/services/owner_channel.py).
OWNER_VERIFICATION = "owner-verification"
WORKER_READS = (*INPUT_TOPICS, "recovery", OWNER_VERIFICATION, *INTERNAL_TOPICS)
RIGHTS: dict[str, Rights] = {
    "worker": Rights(
        writes=("decisions", "notifications", "recovery", "labels", "dead-letters",
                *INTERNAL_TOPICS),
        reads=WORKER_READS, groups=(WORKER_APP, STAGES_GROUP), app=WORKER_APP, not_apps=(SINK_APP,)),
    "sink": Rights(writes=("data-quality",), reads=("*",), groups=(SINK_APP,), app=SINK_APP),
    # Not ``recovery``: only the stream says a case moved (an owner's answer, its code's
    # hash, go on owner-verification, which the stream checks).
    # Each service also writes and reads its own record of keyed answers, and no other's
    # (``idempotency-<service>``: pipelines/services/idempotency.py).
    "messaging": Rights(writes=("messages", "account-events", "labels", OWNER_VERIFICATION,
                                "idempotency-messaging"),
                        # transfer-requests: a scam report's transfer and its parties
                        reads=("notifications", "transfer-requests", "idempotency-messaging"),
                        groups=("vigie-owner-channel",)),
    # Its transactional ids fence an instance that lost a partition (docs/services.md#payment).
    "payment": Rights(writes=("transfer-requests", "transfer-status", "labels",
                              "idempotency-payment", *STATE_TOPICS),
                      reads=("transfer-requests", "transfer-status", "recovery", "decisions",
                             "idempotency-payment", *STATE_TOPICS),
                      groups=("vigie-payment",), transactions="vigie-payment-"),
    "assistant": Rights(writes=("assistant-events", "account-events", "idempotency-assistant"),
                        reads=("account-events", "messages", "idempotency-assistant"),
                        groups=("vigie-assistant",)),
    # The console and `vigie promote/rollback/shadow`; it shows the worker's lag.
    "console": Rights(writes=("analyst-actions", "model-updates", "labels", CONSOLE_AUDIT),
                      looks_at=WORKER_READS, looks_at_groups=(WORKER_APP,)),
}
PRINCIPALS = (ADMIN, *RIGHTS)
EVERY_ACL = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)


def _acl(resource, name, operation, principal, pattern=ResourcePatternType.LITERAL,
         permission=AclPermissionType.ALLOW) -> AclBinding:
    return AclBinding(resource, name, pattern, f"User:{principal}", "*", operation, permission)


def bindings(principal: str, rights: Rights) -> set[AclBinding]:
    """The ACLs that give ``principal`` its ``rights`` and nothing more."""
    topic, group, op = ResourceType.TOPIC, ResourceType.GROUP, AclOperation
    acls = {_acl(topic, t, op.WRITE, principal) for t in rights.writes}
    acls |= {_acl(topic, t, op.READ, principal) for t in rights.reads}
    acls |= {_acl(group, g, op.READ, principal) for g in rights.groups}
    acls |= {_acl(topic, t, op.DESCRIBE, principal) for t in rights.looks_at}
    acls |= {_acl(group, g, op.DESCRIBE, principal) for g in rights.looks_at_groups}
    if rights.transactions:
        acls |= {_acl(ResourceType.TRANSACTIONAL_ID, rights.transactions, o, principal,
                      ResourcePatternType.PREFIXED) for o in (op.WRITE, op.DESCRIBE)}
    if rights.app:
        acls |= {_acl(topic, f"{rights.app}-", o, principal, ResourcePatternType.PREFIXED)
                 for o in (op.CREATE, op.READ, op.WRITE)}
    acls |= {_acl(topic, f"{other}-", op.ALL, principal, ResourcePatternType.PREFIXED,
                  AclPermissionType.DENY) for other in rights.not_apps}
    return acls


def wanted_acls() -> set[AclBinding]:
    return set().union(*(bindings(p, r) for p, r in RIGHTS.items()))


def passwords(secrets_dir: Path) -> dict[str, str]:
    """Every principal's password, generated on first use (``<secrets>/kafka/<principal>``)."""
    return {p: keyfiles.read_or_create(kafka_password_file(secrets_dir, p)) for p in PRINCIPALS}


def admin_client(bootstrap: str, admin_password: str, mechanism: str = "PLAIN") -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                        "sasl.mechanism": mechanism, "sasl.username": ADMIN,
                        "sasl.password": admin_password, "log_level": 3})


def _wait(futures) -> None:
    for future in (futures.values() if isinstance(futures, dict) else futures):
        future.result()


def provision(admin: AdminClient, secrets: dict[str, str], timeout_s: float = 30.0) -> None:
    """Make the broker's SCRAM users and ACLs exactly ``secrets`` and ``RIGHTS`` (idempotent:
    a data dir formatted before ACLs existed, or with other rights, is brought in line)."""
    mechanism = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192)
    known = admin.describe_user_scram_credentials().result()
    changes = [UserScramCredentialUpsertion(user, mechanism, password.encode())
               for user, password in secrets.items()]
    changes += [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256)
                for user in known if user not in secrets]
    _wait(admin.alter_user_scram_credentials(changes))

    wanted, ours = wanted_acls(), {f"User:{p}" for p in PRINCIPALS}
    existing = set(admin.describe_acls(EVERY_ACL).result())
    stale = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                              b.operation, b.permission_type)
             for b in existing - wanted if b.principal in ours]
    if stale:
        _wait(admin.delete_acls(stale))
    if wanted - existing:
        _wait(admin.create_acls(list(wanted - existing)))
    # The controller has them; wait until the broker's authorizer does too.
    deadline = time.monotonic() + timeout_s
    while not wanted <= set(admin.describe_acls(EVERY_ACL).result()):
        if time.monotonic() > deadline:
            raise TimeoutError("the broker did not apply Vigie's ACLs in time")
        time.sleep(0.1)
