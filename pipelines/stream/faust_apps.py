"""The Faust apps by module path, for Faust's own command line and tools:

    faust -A pipelines.stream.faust_apps agents          # the decision worker's agents
    faust -A pipelines.stream.faust_apps:sink agents     # the lake sink's
    faust -A pipelines.stream.faust_apps worker -l info  # run it (what `vigie worker` runs)

The broker and its credentials come from the environment, as for ``vigie worker``
(``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_SASL_*``, or ``VIGIE_KAFKA_PRINCIPAL`` on the embedded
broker: docs/operations.md#faust). The apps are built on first access, not on import: building
one reads the settings and makes its state directory."""
from __future__ import annotations

from functools import lru_cache

from pipelines.stream import worker

BUILDERS = {"app": worker.build_worker_app, "sink": worker.build_sink_app}


@lru_cache(maxsize=None)
def _built(name: str):
    return BUILDERS[name]()


def __getattr__(name: str):
    if name in BUILDERS:
        return _built(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
