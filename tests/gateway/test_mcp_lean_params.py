"""The lean tools/call path's direct check of a call's params (gateway/mcp/lean.py `plain_params`)
against the two models it stands in for: the SDK's per-version surface (`validate_client_request`)
and `CallToolRequestParams`, what a handler gets. Whatever it vouches for, both models accept,
with the same name and arguments; whatever it does not, the models still judge (the request is
not refused here)."""

import itertools

import pytest
from mcp.shared.inbound import classify_inbound_request
from mcp_types import CallToolRequestParams
from mcp_types import methods as sdk_methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from gateway.mcp.lean import plain_params

MODERN = "2026-07-28"
VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
INFO_KEY = "io.modelcontextprotocol/clientInfo"
CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
MISSING = object()

NAMES = ["echo", "", "ünï", 5, None, ["echo"], True]
ARGUMENTS = [MISSING, None, {}, {"message": "hi"}, {"message": 1, "data": {"a": [1, 2.5, None]}}, [], "hi", 0, False]
CAPABILITIES = [{}, {"roots": {}}, {"roots": None}, {"roots": {"listChanged": True}}, {"roots": []}, {"roots": "x"},
                {"sampling": {}}, {"experimental": {"x": {"y": 1}}}, {"extensions": {}}, {"other": 1}, [], None, "x"]
INFOS = [MISSING, None, {"name": "c", "version": "1"}, {"name": "c", "version": "1", "title": "C", "description": None,
                                                        "websiteUrl": "https://c.example"},
         {"name": "c"}, {"version": "1"}, {"name": 1, "version": "1"}, {"name": "c", "version": 1},
         {"name": "c", "version": "1", "title": 5}, {"name": "c", "version": "1", "icons": []},
         {"name": "c", "version": "1", "icons": [{"src": "https://c.example/i.png"}]},
         {"name": "c", "version": "1", "extra": "x"}, [], "c"]


def _params(name, arguments, capabilities, info) -> dict:
    meta = {VERSION_KEY: MODERN, CAPABILITIES_KEY: capabilities}
    if info is not MISSING:
        meta[INFO_KEY] = info
    params = {"name": name, "_meta": meta}
    if arguments is not MISSING:
        params["arguments"] = arguments
    return params


def _models(params: dict) -> tuple[str, dict] | None:
    """What the lean path took from the models before plain_params: (name, arguments) or None (refused)."""
    try:
        sdk_methods.validate_client_request("tools/call", MODERN, params)
        typed = CallToolRequestParams.model_validate(params, by_name=False)
    except (KeyError, ValueError, ValidationError):
        return None
    return typed.name, typed.arguments or {}


def _route(params: dict):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    return classify_inbound_request(body, headers=None)


CASES = [*itertools.product(NAMES, ARGUMENTS[:4], CAPABILITIES[:3], INFOS[:3]),
         *[("echo", a, {}, None) for a in ARGUMENTS],
         *[("echo", {"message": "hi"}, c, None) for c in CAPABILITIES],
         *[("echo", {"message": "hi"}, {}, i) for i in INFOS]]


@pytest.mark.parametrize("name, arguments, capabilities, info", CASES)
def test_plain_params_vouch_only_for_what_both_models_accept_and_take_the_same(name, arguments, capabilities, info):
    params = _params(name, arguments, capabilities, info)
    route = _route(params)
    assert hasattr(route, "protocol_version")       # the lean path's precondition
    plain = plain_params(params, route)
    if plain is not None:
        assert plain == _models(params)
        assert type(plain[1]) is dict


def test_the_common_call_is_vouched_for_without_the_models():
    params = _params("echo", {"message": "hi"}, {}, {"name": "bench", "version": "1"})
    assert plain_params(params, _route(params)) == ("echo", {"message": "hi"})
    params = _params("echo", {"message": "hi"}, {"roots": {"listChanged": True}}, MISSING)
    assert plain_params(params, _route(params)) == ("echo", {"message": "hi"})


def test_every_modern_version_has_the_tools_call_surface_plain_params_skips():
    for version in MODERN_PROTOCOL_VERSIONS:
        assert ("tools/call", version) in sdk_methods.CLIENT_REQUESTS
        assert version in sdk_methods.KNOWN_PROTOCOL_VERSIONS
