"""The services' API reference (``/openapi.json``) and metrics endpoint (``/metrics``), on each
service's real app without its start-up (no broker needed: the two answer from the router and
the process's counters)."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from service_support import aio, as_internal, as_user

from pipelines.services import assistant, auth, messaging, openapi, payment

SERVICES = {"payment": payment, "messaging": messaging, "assistant": assistant}


def bare_app(module):
    """The service's app with its routes and middlewares, without the start-up that rebuilds
    its state from the broker."""
    app = module.build_app()
    app.on_startup.clear()
    app.on_cleanup.clear()
    return app


async def client_of(module) -> TestClient:
    auth.ensure_keys()
    client = TestClient(TestServer(bare_app(module)))
    await client.start_server()
    return client


@pytest.mark.parametrize("name", SERVICES)
def test_every_route_is_in_the_spec_and_every_operation_is_a_route(name):
    app = bare_app(SERVICES[name])
    document = openapi.spec(app, name)
    served = {(m.upper(), path) for path, ops in document["paths"].items() for m in ops}
    routed = {(method, path) for method, path, _ in openapi.routes(app)}
    assert served == routed
    for method, path in routed:
        op = document["paths"][path][method.lower()]
        # a route that takes a body says which; its schema is the struct the handler decodes
        if method in ("POST", "PUT") and (method, path) not in openapi.NO_BODY:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in document["components"]["schemas"], (method, path)
        for name_ in openapi._path_params(path):
            assert {"name": name_, "in": "path", "required": True,
                    "schema": {"type": "string"}} in op["parameters"]
        assert ("security" in op) == (path in auth.OPEN_PATHS)


def test_every_documented_body_and_query_belongs_to_a_route():
    routed = {(m, p) for module in SERVICES.values()
              for m, p, _ in openapi.routes(bare_app(module))}
    assert set(openapi.bodies()) <= routed, set(openapi.bodies()) - routed
    assert set(openapi.queries()) <= routed, set(openapi.queries()) - routed
    assert openapi.NO_BODY <= routed and not openapi.NO_BODY & set(openapi.bodies())


@aio
async def test_openapi_is_public_and_describes_the_transfer_request():
    client = await client_of(payment)
    try:
        resp = await client.get("/openapi.json")  # no token
        assert resp.status == 200
        document = await resp.json()
        assert document["openapi"].startswith("3.1")
        transfer = document["components"]["schemas"]["TransferRequest"]
        assert {"sender", "recipient", "amount_cents"} <= set(transfer["properties"])
        assert transfer["additionalProperties"] is False  # unknown fields are refused (400)
    finally:
        await client.close()


def samples(text: str, name: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name]


@aio
async def test_metrics_want_an_internal_token_and_count_requests_by_route_template():
    client = await client_of(messaging)
    try:
        raw = "someone-raw-id-12345"
        assert (await client.get(f"/v1/notifications/{raw}")).status == 401
        assert (await client.get("/metrics")).status == 401
        assert (await client.get("/metrics", headers=as_user(raw))).status == 403
        resp = await client.get("/metrics", headers=as_internal("prometheus"))
        assert resp.status == 200 and resp.content_type == "text/plain"
        text = await resp.text()
        counted = {(s.labels["route"], s.labels["status"]): s.value
                   for s in samples(text, "vigie_http_requests_total")
                   if s.labels["service"] == "messaging"}
        assert counted[("/v1/notifications/{account}", "401")] >= 1
        assert counted[("/metrics", "403")] >= 1
        assert raw not in text  # the route template, never the path
    finally:
        await client.close()
