"""The HTTP API reference of each service: an OpenAPI 3.1 document built from the app's own
routes and the msgspec structs the handlers decode (``msgspec.json.schema_components``), served
at ``GET /openapi.json`` without a token (it describes the API, it holds no data).

A route that reads a body or a query must have its struct in ``bodies``/``queries``, and a
POST that reads none is named in ``NO_BODY`` (tests/services/test_openapi.py checks both ways)."""
from __future__ import annotations

import msgspec
from aiohttp import web

from pipelines.services import requests as rq
from pipelines.services.auth import OPEN_PATHS

ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def bodies() -> dict[tuple[str, str], type]:
    """(method, route template) -> the struct its handler decodes from the JSON body."""
    return {
        ("POST", "/v1/messages"): rq.MessageRequest,
        ("POST", "/v1/account-events"): rq.AccountEventRequest,
        ("POST", "/v1/reports"): rq.ScamReportRequest,
        ("POST", "/v1/takeover-reports"): rq.TakeoverReportRequest,
        ("POST", "/v1/recovery/{case_id}/answer"): rq.RecoveryAnswerRequest,
        ("POST", "/v1/transfers"): rq.TransferRequest,
        ("POST", "/v1/chargebacks"): rq.ChargebackRequest,
        ("POST", "/v1/suggestions/{id}/response"): rq.SuggestionResponseRequest,
        ("PUT", "/v1/users/{user}/assistant"): rq.Switch,
    }


# POSTs whose path says everything: the action on the resource it names.
NO_BODY = {("POST", "/v1/transfers/{id}/cancel")}


def queries() -> dict[tuple[str, str], type]:
    """(method, route template) -> the struct its query string is validated as."""
    return {("GET", "/v1/suggestions"): rq.SuggestionsQuery}


def routes(app: web.Application) -> list[tuple[str, str, object]]:
    """(method, route template, handler) of every route of ``app`` (aiohttp's implicit HEAD
    of a GET left out)."""
    return [(r.method, r.resource.canonical, r.handler) for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None]


def _operation(method: str, path: str, handler, refs: dict) -> dict:
    doc = (getattr(handler, "__doc__", None) or "").strip().split("\n\n")[0]
    op: dict = {"summary": " ".join(doc.split()) or f"{method} {path}",
                "responses": {"200": {"description": "OK"},
                              "4XX": {"description": "refused, with the reason",
                                      "content": {"application/json": {"schema": ERROR}}}}}
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in _path_params(path)]
    query = queries().get((method, path))
    if query is not None:
        params += [{"name": f.encode_name, "in": "query", "required": f.required,
                    "schema": {"type": "string"}} for f in msgspec.structs.fields(query)]
    if params:
        op["parameters"] = params
    body = bodies().get((method, path))
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": refs[body]}}}
    if path in OPEN_PATHS:
        op["security"] = []
    return op


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def spec(app: web.Application, title: str) -> dict:
    found = routes(app)
    structs = sorted({bodies()[(m, p)] for m, p, _ in found if (m, p) in bodies()},
                     key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}")
    paths: dict = {}
    for method, path, handler in found:
        paths.setdefault(path, {})[method.lower()] = _operation(
            method, path, handler, dict(zip(structs, refs)))
    return {"openapi": "3.1.0",
            "info": {"title": f"Vigie {title} service", "version": "1"},
            "components": {"schemas": components, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA)"}}},
            "security": [{"bearer": []}], "paths": paths}


def handler(service: str):
    """``GET /openapi.json`` of ``service``'s app."""
    async def serve(request: web.Request) -> web.Response:
        return web.json_response(spec(request.app, service))
    return serve
