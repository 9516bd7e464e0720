"""The Faust apps, assembled: ``worker_app`` (validation, features, decisions) and
``sink_app`` (the lake). ``vigie worker`` and ``vigie sink`` run them."""
from __future__ import annotations

import logging

from pipelines.agents import ingest, lake_sink
from pipelines.app import make_app

log = logging.getLogger(__name__)


async def handle_valid(topic, event, message) -> None:
    """Where a valid input event goes next (the feature and decision stages)."""


def build_worker_app():
    app = make_app("vigie")
    ingest.register(app, handle_valid)
    return app


def build_sink_app():
    app = make_app("vigie-lake-sink")
    lake_sink.register(app)
    return app
