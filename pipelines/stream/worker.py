"""The Faust apps, wired: ``build_worker_app`` (validation, features, decisions) and
``build_sink_app`` (the lake). ``vigie worker`` and ``vigie sink`` run them; the event -> decision
path is in the README and docs/architecture.md."""
from __future__ import annotations

from pipelines.kafka.acls import STAGES_GROUP, WORKER_APP
from pipelines.kafka.delivery import Sender
from pipelines.kafka.tables import raw_topic
from pipelines.recovery import stage as recovery
from pipelines.stream import control as control_mod, decide, entities, ingest, lake_sink
from pipelines.stream.app import make_app
from pipelines.stream.envelopes import ENTITY_EVENTS
from pipelines.stream.router import Router


def build_worker_app():
    # The broker holds a fetch of the Faust stages no longer than the ingest waits for input
    # (VIGIE_INGEST_WINDOW_MS, 20 ms), not Faust's 1.5 s: aiokafka sends one fetch at a time per
    # broker and leaves out the partitions whose records are not consumed yet, so a fetch of
    # quiet partitions held entity-events back for up to 1.2 s (docs/stream.md#fetch-wait). The
    # lake sink keeps Faust's wait: it writes every 2 s, and idle fetches would cost it CPU.
    # Meanwhile the broker waits for some data (VIGIE_FETCH_MIN_BYTES), as for the ingest.
    app = make_app(WORKER_APP, group=STAGES_GROUP, fetch_max_wait_ms=ingest.BATCH_WAIT_MS,
                   fetch_min_bytes=ingest.FETCH_MIN_BYTES)
    control = control_mod.Control(control_mod.control_table(app))
    cases = recovery.register(app)
    inputs = ingest.InputConsumer(app)
    entity_topic, clock, partitions = entities.register(app, inputs, watch=cases.watch)
    parts_topic = raw_topic(app, "transfer-parts")
    decide.register(app, control, parts_topic, adjust=cases.adjust)
    dead_letters = raw_topic(app, "dead-letters")
    ingest.register(app, inputs, Router(entity_topic, control, dead_letters, clock,
                                entities.Bundler(Sender(app, ENTITY_EVENTS), partitions)))
    return app


def build_sink_app():
    app = make_app("vigie-lake-sink")
    lake_sink.register(app)
    return app
