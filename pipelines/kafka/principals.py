"""Which Kafka principal a `vigie` command runs as: one table, read by the command line, by
`vigie run` and the benches for the processes they start, and by the tests' process helper.
Kept apart from ``acls`` (which needs confluent-kafka) so the command line stays light."""
from __future__ import annotations

from typing import Sequence

# The principal each `vigie` command runs as on the embedded broker (pipelines/kafka/acls.py
# RIGHTS says what each may do); `serve NAME` runs as NAME. VIGIE_KAFKA_PRINCIPAL, when set, wins.
COMMAND_PRINCIPALS = {"worker": "worker", "sink": "sink", "console": "console",
                    "promote": "console", "shadow": "console", "unshadow": "console",
                    "rollback": "console",
                    "run": "admin", "broker": "admin", "topics": "admin", "bench": "admin"}


def command_principal(args: Sequence[str]) -> str:
    """The principal of the command line ``vigie ARGS`` ("" for a command without Kafka)."""
    args = list(args)
    while args and args[0].startswith("--"):  # the group's options: --log-level LEVEL
        args = args[1 if "=" in args[0] else 2:]
    if args[:1] == ["serve"]:
        return args[1] if len(args) > 1 else ""
    return COMMAND_PRINCIPALS.get(args[0], "") if args else ""
