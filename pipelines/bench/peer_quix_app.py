"""The peer's two shapes, written with Quix Streams: run by ``peer_quix`` in the Python that has
``quixstreams`` (often its own venv: it pins an older confluent-kafka than Vigie's), so this file
imports only the standard library and ``quixstreams``, never Vigie.

    python -P peer_quix_app.py '{"shape": "passthrough" | "state", "records": N, ...}'

Connection from the environment (KAFKA_BOOTSTRAP_SERVERS, QUIX_SECURITY_PROTOCOL,
QUIX_SASL_MECHANISM, QUIX_SASL_USERNAME, QUIX_SASL_PASSWORD). Prints one JSON line: records, wall seconds and process CPU seconds from the
first record processed to the run's end (its last produce flushed and offsets committed), and for
the state shape the sum over keys of the counter the state returned last (== records when no
update was lost)."""
from __future__ import annotations

import json
import os
import sys
import time

from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig


def main(spec: dict) -> dict:
    connection = ConnectionConfig(
        bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        security_protocol=os.environ.get("QUIX_SECURITY_PROTOCOL") or "plaintext",
        sasl_mechanism=os.environ.get("QUIX_SASL_MECHANISM") or None,
        sasl_username=os.environ.get("QUIX_SASL_USERNAME") or None,
        sasl_password=os.environ.get("QUIX_SASL_PASSWORD") or None)
    clock = {}

    def processed(_topic, _partition, _offset):
        if not clock:  # the span timed: from the first record to the end of the run
            clock.update(wall=time.monotonic(), cpu=time.process_time())

    app = Application(broker_address=connection, consumer_group=spec["group"],
                      auto_offset_reset="earliest", state_dir=spec["state_dir"],
                      on_message_processed=processed, loglevel="WARNING")
    source = app.topic(spec["source"], key_deserializer="bytes", value_deserializer="bytes")
    sdf = app.dataframe(source)
    last_count: dict[bytes, int] = {}
    if spec["shape"] == "passthrough":
        sdf.to_topic(app.topic(spec["sink"], key_serializer="bytes", value_serializer="bytes"))
    else:
        def count(value, key, _ts, _headers, state):  # one RocksDB state update per record
            n = state.get("n", 0) + 1
            state.set("n", n)
            last_count[key] = n
            return value

        sdf = sdf.apply(count, stateful=True, metadata=True)
    app.run(sdf, count=spec["records"], collect=False)
    out = {"records": spec["records"], "wall_s": time.monotonic() - clock["wall"],
           "cpu_s": time.process_time() - clock["cpu"]}
    if spec["shape"] == "state":
        out["state_total"] = sum(last_count.values())
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
