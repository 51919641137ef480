"""Admin REST API: register A2A agents by card URL, list/search/show/remove capabilities.

    POST   /admin/agents          {"card_url": ..., "name"?: ..., "timeout_seconds"?: ...}  -> 201 capability
    GET    /admin/agents[?q=&limit=&status=]                       -> {"agents": [...]} (ranked, with scores, for q)
    GET    /admin/agents/{name}                                    -> capability
    DELETE /admin/agents/{name}                                    -> {"removed": capability}
    POST   /admin/agents/{name}/refresh                            -> capability (its card fetched and validated again)
    /admin/tasks...                                                every task: list, live, show, events, cancel (tasks.py)
    GET    /admin/openapi.json                                     -> this API in OpenAPI 3.1

Errors are `{"error": {"type", "message", ...}}` with the HTTP status of the gateway's error table
(gateway/errors.py).
"""

from __future__ import annotations

import functools
import json
import logging
import urllib.parse

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.errors import BackendError, InvalidRequestError, MessageTooLargeError, NotFoundError

from gateway.errors import codes_of, error_data
from gateway.registry import discovery
from gateway.registry.capabilities import MAX_TIMEOUT, check_timeout
from gateway.registry.cardfetch import CardError
from gateway.registry.own_url import refuse_own_url
from . import tasks as task_admin

log = logging.getLogger("topicbridge.admin")

MAX_BODY_BYTES = 64 * 1024
MAX_LIMIT = 1000
STATUSES = ("available", "unavailable", "error")
REGISTER_FIELDS = {"card_url", "name", "timeout_seconds", "credentials"}


def routes(gateway) -> list:
    api = AdminAPI(gateway)
    return [Route("/admin/agents", api.register, methods=["POST"]),
            Route("/admin/agents", api.list_agents, methods=["GET"]),
            Route("/admin/agents/{name}", api.show, methods=["GET"]),
            Route("/admin/agents/{name}", api.remove, methods=["DELETE"]),
            Route("/admin/agents/{name}/refresh", api.refresh, methods=["POST"]),
            Route("/admin/openapi.json", api.openapi, methods=["GET"]), *task_admin.routes(gateway)]


def error_response(error: Exception) -> JSONResponse:
    return JSONResponse({"error": error_data(error)}, status_code=codes_of(error).http)


def _handles_errors(endpoint):
    @functools.wraps(endpoint)
    async def wrapped(self, request: Request) -> Response:
        try:
            return await endpoint(self, request)
        except (BackendError, CardError) as e:
            return error_response(e)
    return wrapped


class AdminAPI:
    def __init__(self, gateway) -> None:
        self.gateway = gateway

    @_handles_errors
    async def register(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise InvalidRequestError("body", type(body).__name__, "must be a JSON object")
        unknown = sorted(set(body) - REGISTER_FIELDS)
        if unknown:
            raise InvalidRequestError(unknown[0], body[unknown[0]], f"unknown field; expected {sorted(REGISTER_FIELDS)}")
        card_url, name = body.get("card_url"), body.get("name")
        if not isinstance(card_url, str) or not card_url.strip():
            raise InvalidRequestError("card_url", card_url, "required: the agent's card URL or base URL")
        _check_url(card_url.strip())
        if name is not None and not isinstance(name, str):
            raise InvalidRequestError("name", name, "must be a string")
        try:
            timeout = check_timeout(body.get("timeout_seconds"))
        except ValueError as e:
            raise InvalidRequestError("timeout_seconds", body.get("timeout_seconds"), str(e)) from None
        refuse_own_url(card_url.strip(), request.scope.get("server"), request.headers.get("host"))
        capability = await self.gateway.bridges.register(card_url.strip(), name, body.get("credentials"))
        if timeout is not None:
            await self.gateway.registry.set_timeout(capability.name, timeout)
            capability.timeout_seconds = timeout
        return JSONResponse(capability.to_json(), status_code=201,
                            headers={"Location": f"/admin/agents/{capability.name}"})

    @_handles_errors
    async def list_agents(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        limit = _limit(request.query_params.get("limit"))
        status = request.query_params.get("status")
        if status is not None and status not in STATUSES:
            raise InvalidRequestError("status", status, f"must be one of {', '.join(STATUSES)}")
        capabilities = [c for c in await self.gateway.registry.list() if status is None or c.status == status]
        if query:
            hits = discovery.search(capabilities, query, limit=limit)
            return JSONResponse({"query": query, "agents": [h.capability.to_json() | {"score": h.score}
                                                            for h in hits]})
        capabilities.sort(key=lambda c: c.name)
        return JSONResponse({"agents": [c.to_json() for c in capabilities[:limit]]})

    @_handles_errors
    async def show(self, request: Request) -> Response:
        name = request.path_params["name"]
        capability = await self.gateway.registry.get(name)
        if capability is None:
            raise NotFoundError("capability", name)
        return JSONResponse(capability.to_json())

    @_handles_errors
    async def remove(self, request: Request) -> Response:
        capability = await self.gateway.bridges.remove(request.path_params["name"])
        return JSONResponse({"removed": capability.to_json()})

    @_handles_errors
    async def refresh(self, request: Request) -> Response:
        capability = await self.gateway.bridges.refresh(request.path_params["name"])
        return JSONResponse(capability.to_json())

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI)


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> object:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise MessageTooLargeError(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise MessageTooLargeError(len(body), limit)
    try:
        return json.loads(body, parse_constant=_no_constant)
    except ValueError as e:         # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise InvalidRequestError("body", bytes(body[:80]).decode("utf-8", "replace"), f"not JSON: {e}") from None
    except RecursionError:
        raise InvalidRequestError("body", f"<{len(body)} bytes>", "JSON nested too deeply") from None


def _check_url(url: str) -> None:
    """A URL the standard library cannot split ('http://[', a bad port) is the caller's mistake."""
    try:
        urllib.parse.urlsplit(url if "://" in url else f"http://{url}").port
    except ValueError as e:
        raise InvalidRequestError("card_url", url[:200], f"not a URL: {e}") from None


def _no_constant(name: str) -> None:
    """NaN and ±Infinity are not JSON (RFC 8259 §6); accepted, they could not be answered back."""
    raise ValueError(f"{name} is not a JSON number")


def _limit(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequestError("limit", raw, f"must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


# ---------------------------------------------------------------- OpenAPI 3.1

def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json_body(ref: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


_NAME_PARAM = {"name": "name", "in": "path", "required": True, "description": "The capability's name.",
               "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}}

def _guarded(paths: dict) -> dict:
    """Every operation may also be refused by the guard (gateway/http/guard.py), in the same shape."""
    refusals = {"401": _error("No or a wrong bearer token (gateway.bearer_tokens, gateway.oauth)."),
                "403": _error("The token has no admin right."),
                "429": {**_error("Past gateway.rate_limit; retry after Retry-After seconds."),
                        "headers": {"Retry-After": {"schema": {"type": "string"}}}}}
    for item in paths.values():
        for method, operation in item.items():
            if method != "parameters":
                operation["responses"] = {**operation["responses"], **refusals}
                if method == "post":
                    operation["responses"].setdefault("413", _error("Body too large."))
    return paths


OPENAPI: dict = {
    "openapi": "3.1.0",
    "info": {"title": "topicbridge admin API", "version": "1.0.0",
             "description": "Register A2A agents by card URL; list, search, show and remove capabilities; "
                            "list, follow, show and cancel tasks."},
    "security": [{"bearer": []}, {}],
    "paths": _guarded({
        "/admin/agents": {
            "post": {
                "operationId": "registerAgent",
                "summary": "Register an A2A agent by its card URL and bridge it",
                "description": "Fetches the card (a base URL means <base>/.well-known/agent-card.json), "
                               "validates it, derives the capability name from the card's name unless one is "
                               "given, and starts bridging tasks to the agent on every gateway instance.",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/RegisterRequest"}}}},
                "responses": {
                    "201": {**_json_body("#/components/schemas/Capability", "Registered."),
                            "headers": {"Location": {"description": "The new capability's URL.",
                                                     "schema": {"type": "string"}}}},
                    "400": _error("Malformed body, or the URL serves no valid agent card."),
                    "409": _error("A capability with that name exists."),
                    "413": _error("Body too large."),
                    "422": _error("The URL is refused (link-local, cloud metadata, not in "
                                  "gateway.allowed_agent_hosts) or unreachable."),
                },
            },
            "get": {
                "operationId": "listAgents",
                "summary": "List capabilities, or search them by relevance",
                "parameters": [
                    {"name": "q", "in": "query", "required": False,
                     "description": "Words describing the task, e.g. 'summarise a PDF'. Results are ranked "
                                    "(BM25 over name, description, skills, tags and examples) and carry a score.",
                     "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
                    {"name": "status", "in": "query", "required": False,
                     "description": "Only capabilities in this state, e.g. available ones for routing.",
                     "schema": {"enum": list(STATUSES)}},
                ],
                "responses": {
                    "200": _json_body("#/components/schemas/AgentList", "Capabilities, by name or by score."),
                    "400": _error("Bad parameter."),
                },
            },
        },
        "/admin/agents/{name}": {
            "parameters": [_NAME_PARAM],
            "get": {
                "operationId": "getAgent",
                "summary": "Show one capability",
                "responses": {"200": _json_body("#/components/schemas/Capability", "The capability."),
                              "404": _error("No such capability.")},
            },
            "delete": {
                "operationId": "removeAgent",
                "summary": "Remove a capability and stop bridging it",
                "description": "A native capability whose workers still run is announced again by their "
                               "next heartbeat.",
                "responses": {"200": _json_body("#/components/schemas/Removed", "Removed."),
                              "404": _error("No such capability.")},
            },
        },
        "/admin/agents/{name}/refresh": {
            "parameters": [_NAME_PARAM],
            "post": {
                "operationId": "refreshAgent",
                "summary": "Fetch and validate a bridged agent's card again, and bridge the new card",
                "responses": {"200": _json_body("#/components/schemas/Capability", "Refreshed."),
                              "400": _error("A native capability (no card URL), or the URL no longer serves "
                                            "a valid agent card."),
                              "404": _error("No such capability."),
                              "422": _error("The URL is refused or unreachable.")},
            },
        },
        **task_admin.OPENAPI_PATHS,
        "/admin/openapi.json": {
            "get": {"operationId": "getOpenAPI", "summary": "This description",
                    "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                          "content": {"application/json": {"schema": {"type": "object"}}}}}},
        },
    }),
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                  "description": "Unneeded where no authentication is set."}},
                   "schemas": {
        "RegisterRequest": {
            "type": "object", "required": ["card_url"], "additionalProperties": False,
            "properties": {
                "card_url": {"type": "string", "format": "uri",
                             "description": "The agent card's URL, or the agent's base URL."},
                "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$",
                         "description": "Capability name to use instead of the one derived from the card."},
                "credentials": {"description": "What the agent requires, sent on every call and card fetch: "
                                               "the name of an environment variable of the gateway holding "
                                               "the secret (read at call time; the secret is never stored "
                                               "or returned).",
                                "oneOf": [{"$ref": "#/components/schemas/SecretCredentials"},
                                          {"$ref": "#/components/schemas/OAuthClientCredentials"}]},
                "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT,
                                    "description": "How long one turn of a task may run before the gateway "
                                                   "fails it and cancels it at the agent; default "
                                                   "gateway.task_timeout_seconds."},
            },
        },
        "SecretCredentials": {
            "type": "object", "required": ["type", "token_env"], "additionalProperties": False,
            "properties": {"type": {"enum": ["bearer", "api_key"]},
                           "token_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                           "header": {"type": "string", "description": "api_key: the header "
                                      "(default: the card's API-key scheme's)"}}},
        "OAuthClientCredentials": {
            "type": "object", "required": ["type", "client_id", "client_secret_env"], "additionalProperties": False,
            "description": "OAuth 2.0 client credentials (RFC 6749 section 4.4): the gateway gets an access token "
                           "(HTTP Basic client authentication), caches it until shortly before it expires and "
                           "sends it as Authorization: Bearer; an agent's 401 gets one new token and a retry.",
            "properties": {"type": {"const": "oauth2_client_credentials"},
                           "client_id": {"type": "string", "minLength": 1, "maxLength": 256},
                           "client_secret_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                           "scopes": {"type": "array", "maxItems": 64,
                                      "items": {"type": "string", "pattern": "^[\\x21\\x23-\\x5b\\x5d-\\x7e]+$"}},
                           "token_url": {"type": "string", "format": "uri", "description": "default: the "
                                         "token URL of the card's OAuth 2.0 client credentials flow"}}},
        "Capability": {
            "type": "object",
            "required": ["name", "card", "source", "status", "topic"],
            "properties": {
                "name": {"type": "string"},
                "card": {"type": "object", "description": "The A2A 1.0 AgentCard (ProtoJSON)."},
                "source": {"enum": ["native", "a2a"]},
                "card_url": {"type": ["string", "null"]},
                "input_schema": {"type": ["object", "null"]},
                "output_schema": {"type": ["object", "null"]},
                "created": {"type": "number", "description": "Unix time."},
                "status": {"enum": ["available", "unavailable", "error"]},
                "error": {"type": ["string", "null"]},
                "last_seen": {"type": "number", "description": "Unix time."},
                "heartbeat": {"type": ["number", "null"],
                              "description": "Seconds a native worker may stay silent; null if not tracked."},
                "workers": {"type": "integer", "description": "Live native workers."},
                "timeout_seconds": {"type": ["number", "null"],
                                    "description": "A turn's time limit; null: gateway.task_timeout_seconds."},
                "topic": {"type": "string"},
                "score": {"type": "number", "description": "Relevance, in search results only."},
            },
        },
        "AgentList": {
            "type": "object", "required": ["agents"],
            "properties": {"query": {"type": "string"},
                           "agents": {"type": "array", "items": {"$ref": "#/components/schemas/Capability"}}},
        },
        "Removed": {"type": "object", "required": ["removed"],
                    "properties": {"removed": {"$ref": "#/components/schemas/Capability"}}},
        **task_admin.OPENAPI_SCHEMAS,
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["type", "message"],
                                     "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                                     "additionalProperties": True}},
        },
    }},
}
