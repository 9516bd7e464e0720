"""Every Prometheus metric Vigie exports, in one place (names are a contract with the
dashboards: docs/grafana/vigie.json, docs/operations.md).

Each process counts in prometheus_client's default registry: the Faust worker and the lake sink
serve it on their own port (``serve``: ``VIGIE_METRICS_PORT``, loopback), the services on their
own app's ``/metrics`` (pipelines/services/observe.py). Labels are low-cardinality only: topic,
action, reason class, route template, status; never an account, a transfer or a path.
"""
from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from pipelines.contracts import settings

log = logging.getLogger(__name__)

# Decision latencies are tens of milliseconds to tens of seconds (a batch window, a worker
# restarting); finer around the 250 ms target, where quantiles are read between bucket bounds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
                   1, 2.5, 5, 10, 30, 60, 120)
# Where a transfer is in the worker, from its event time: read by the entity stage (its
# sender's envelope), applied there (after waiting for the watermark), its parts all at the
# decide stage; then decided (vigie_decision_latency_seconds). docs/operations.md#latency
TRANSFER_POINTS = ("entity_read", "entity_applied", "parts_complete")

EVENTS_IN = Counter("vigie_events_in", "Records a Faust worker read from Kafka", ["topic"])
DEAD_LETTERS = Counter("vigie_dead_letters", "Events sent to the dead-letter topic",
                       ["reason"])
DECISIONS = Counter("vigie_decisions", "Decisions sent by the worker", ["action", "shadow"])
DECISION_LATENCY = Histogram(
    "vigie_decision_latency_seconds",
    "From the transfer's event time to its acting decision being sent (worker)",
    buckets=LATENCY_BUCKETS)
TRANSFER_PROGRESS = Histogram(
    "vigie_transfer_progress_seconds",
    "From the transfer's event time to a point on its way to a decision (worker): "
    + ", ".join(TRANSFER_POINTS), ["point"], buckets=LATENCY_BUCKETS)
PAYMENT_DECISION_WAIT = Histogram(
    "vigie_payment_decision_wait_seconds",
    "From the transfer request the payment service accepted to the decision it applied",
    buckets=LATENCY_BUCKETS)
PAYMENT_TRANSACTION_CHANGES = Histogram(
    "vigie_payment_transaction_changes",
    "Transfer changes a committed payment transaction carried (group commit: _count is the "
    "transactions, _sum the changes)", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
CONSUMER_LAG = Gauge("vigie_consumer_lag", "Records past the committed offset, per partition "
                     "this process owns", ["topic", "partition"])
FALLBACK_HOLDS = Counter("vigie_fallback_holds", "Transfers the payment service held (or "
                         "blocked) because no decision came by the payout deadline", ["fallback"])
HTTP_REQUESTS = Counter("vigie_http_requests", "HTTP requests answered, by route template",
                        ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram("vigie_http_request_seconds", "HTTP request handling time",
                         ["service"], buckets=LATENCY_BUCKETS)
ROCKSDB_MEMORY = Gauge("vigie_rocksdb_memory_bytes", "RocksDB memory of this process, all its "
                       "tables: the shared block cache (memtables included) and the memtables",
                       ["kind"])
STATE_CACHE = Gauge("vigie_state_cache", "Entity states the entity stage keeps decoded after "
                    "writing them (entities.Recent): how many, and their size as stored "
                    "(encoded bytes; decoded they take 15 to 20 times that)", ["measure"])
LAKE_ROWS = Counter("vigie_lake_rows_written", "Rows the lake sink wrote to Parquet")

DEFAULT_PORT = 9400  # `vigie run`: the worker here, the sink on the next port


def reason_class(reason: str) -> str:
    """A dead letter's reason, as one of a few classes (the reason itself holds field values).

    >>> reason_class("clock skew: ts 2027-01-15T08:15:00+00:00 is 900 s ahead")
    'clock_skew'
    >>> reason_class("Expected `int`, got `str` - at `$.amount_cents`")
    'schema'
    >>> reason_class("rule_change refused: not signed by the console")
    'refused_action'
    """
    for prefix, name in (("clock skew", "clock_skew"), ("oversized", "oversized"),
                         ("empty record", "empty"), ("JSON is malformed", "bad_json"),
                         ("Input data was truncated", "bad_json")):
        if reason.startswith(prefix):
            return name
    # the router's refusals of a control action: "<action> refused: <why>"
    return "refused_action" if "refused" in reason.partition(":")[0] else "schema"


def dead_lettered(reason: str) -> None:
    DEAD_LETTERS.labels(reason_class(reason)).inc()


def decided(decision) -> None:
    """Count one decision sent; an acting one's latency from its transfer's event time."""
    DECISIONS.labels(decision.action, str(decision.shadow).lower()).inc()
    if not decision.shadow:
        DECISION_LATENCY.observe(max(decision.latency_ms, 0.0) / 1000)


def transfer_reached(point: str, ts_ms: int, now_ms: float) -> None:
    """A transfer with event time ``ts_ms`` reached ``point`` (``TRANSFER_POINTS``) at
    ``now_ms``."""
    TRANSFER_PROGRESS.labels(point).observe(max(now_ms - ts_ms, 0.0) / 1000)


def payment_decided(requested_ms: int, now_ms: int, first: bool) -> None:
    """The payment service applies a decision: the wait since it accepted the transfer (the
    first automated decision only; a redelivered or an analyst's one is not a wait)."""
    if first:
        PAYMENT_DECISION_WAIT.observe(max(0, now_ms - requested_ms) / 1000)


def serve(port: int | None = None) -> int | None:
    """Serve this process's metrics on ``port`` (default ``VIGIE_METRICS_PORT``; unset or 0:
    none), on ``VIGIE_METRICS_HOST`` (default loopback: unauthenticated, see docs/security.md).
    A port already taken is said in the log, never fatal: metrics must not stop a worker."""
    env = settings.environment().stream
    port = (env.metrics_port or 0) if port is None else port
    if not port:
        return None
    host = env.metrics_host
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics not served on %s:%d (%s)", host, port, exc)
        return None
    log.info("metrics on http://%s:%d/metrics", host, port)
    return port
