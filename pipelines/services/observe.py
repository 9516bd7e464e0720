"""The services' Prometheus metrics: every request counted by route template and status (never
the path, which may hold a raw id), and ``GET /metrics``, for an internal token only (the
scraper authenticates like any other back-end caller: docs/security.md#metrics)."""
from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from pipelines.contracts import metrics
from pipelines.services.auth import internal


def route_of(request: web.BaseRequest) -> str:
    """The route template a request matched (``/v1/transfers/{id}``), or ``(no route)``."""
    try:
        info = request.match_info
    except (AttributeError, AssertionError):  # a request aiohttp could not parse has none
        info = None
    resource = info.route.resource if info is not None else None
    return resource.canonical if resource is not None else "(no route)"


def count_requests(service: str):
    """A middleware counting each answer; outermost, so it sees the status json_errors gave."""
    latency = metrics.HTTP_LATENCY.labels(service)

    @web.middleware
    async def counted(request: web.Request, handler):
        started, status = time.perf_counter(), 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            latency.observe(time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(service, request.method, route_of(request),
                                         str(status)).inc()
    return counted


async def serve_metrics(request: web.Request) -> web.Response:
    internal(request)  # 401 without a token, 403 for an end user's
    return web.Response(body=generate_latest(REGISTRY),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})
