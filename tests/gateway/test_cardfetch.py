"""Fetching agent cards: real HTTP servers on port 0, real parsing, the SSRF policy."""

import asyncio
import json

import copy

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.http.outbound import AddressPolicy, RefusedURLError, UnreachableError, guarded_client, refusal
from gateway.registry.cardfetch import InvalidCardError, card_location, fetch_card, parse_card

from .remote_agents import running_agent
from .serving import running_app

LEGACY_CARD = {  # an A2A 0.3 card, as 0.3 agents still serve them
    "name": "Old Translator", "description": "Translates between English and French", "version": "0.9",
    "url": "http://127.0.0.1:9/a2a", "preferredTransport": "JSONRPC", "protocolVersion": "0.3.0",
    "capabilities": {"streaming": False}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
    "skills": [{"id": "tr", "name": "Translate", "description": "English <-> French", "tags": ["translation"]}],
}


def card_with(**changes) -> dict:
    card = {"name": "Shaped", "description": "d", "version": "1",
            "supportedInterfaces": [{"url": "http://127.0.0.1:9/", "protocolBinding": "JSONRPC",
                                     "protocolVersion": "1.0"}],
            "capabilities": {}, "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
            "skills": [{"id": "s", "name": "S", "description": "s", "tags": ["t"]}]}
    return card | changes


async def hang(request):
    await asyncio.Event().wait()


async def stream_without_length(request):
    async def chunks():                 # 4 MiB, chunked, no Content-Length to go by
        yield b'{"name": "'
        for _ in range(64):
            yield b"x" * 65536
            await asyncio.sleep(0)  # sleep-ok: yield between chunks of the stream
        yield b'"}'
    return StreamingResponse(chunks(), media_type="application/json")


def card_server():
    """One server with a route per kind of bad (and good) card."""
    routes = [
        Route("/legacy/.well-known/agent-card.json", lambda r: JSONResponse(LEGACY_CARD)),
        Route("/text.json", lambda r: Response(b"hello", media_type="application/json")),
        Route("/html.json", lambda r: PlainTextResponse("<html></html>", media_type="text/html")),
        Route("/list.json", lambda r: JSONResponse([1, 2])),
        Route("/int-name.json", lambda r: JSONResponse(card_with(name=5))),
        Route("/no-interfaces.json", lambda r: JSONResponse({"name": "x", "skills": []})),
        Route("/grpc-only.json", lambda r: JSONResponse(card_with(supportedInterfaces=[
            {"url": "http://127.0.0.1:9", "protocolBinding": "GRPC", "protocolVersion": "1.0"}]))),
        Route("/legacy-broken.json", lambda r: JSONResponse({"url": "http://127.0.0.1:9/", "name": 3})),
        Route("/metadata-interface.json", lambda r: JSONResponse(card_with(supportedInterfaces=[
            {"url": "http://169.254.169.254/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]))),
        Route("/large.json", lambda r: JSONResponse(card_with(description="x" * 300_000))),
        Route("/endless.json", stream_without_length),
        Route("/deep.json", lambda r: Response(b"[" * 100_000 + b"]" * 100_000, media_type="application/json")),
        Route("/a2a.json", lambda r: Response(json.dumps(card_with(name="Typed")).encode(),
                                              media_type="application/a2a+json")),
        Route("/broken.json", lambda r: PlainTextResponse("boom", status_code=503)),
        Route("/slow.json", hang),
        Route("/to-metadata.json", lambda r: RedirectResponse("http://169.254.169.254/latest/meta-data")),
    ]
    return running_app(Starlette(routes=routes))


def resolver(table: dict[str, list[str]]):
    """A stand-in for DNS (nothing resolves outside this machine here): name -> addresses."""
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"[Errno -2] Name or service not known: {host!r}")
        return table[host]
    return resolve


# ---------------------------------------------------------------- where the card is

def test_a_base_url_means_its_well_known_card():
    assert card_location("http://a.example") == "http://a.example/.well-known/agent-card.json"
    assert card_location("http://a.example/") == "http://a.example/.well-known/agent-card.json"
    assert card_location("https://a.example/agents/x/") == "https://a.example/agents/x/.well-known/agent-card.json"
    assert card_location("http://a.example/card.json?v=2") == "http://a.example/card.json?v=2"


@pytest.mark.parametrize("url", ["", "   ", "ftp://a.example/card.json", "not a url", "http://", "http://h:99999/",
                                 None, 42])
def test_urls_that_are_not_http_are_invalid(url):
    with pytest.raises(InvalidCardError):
        card_location(url)


# ---------------------------------------------------------------- good cards

async def test_a_card_is_fetched_from_an_agents_base_url():
    async with running_agent(streaming=True) as agent:
        fetched = await fetch_card(agent.base_url, AddressPolicy())
    assert fetched.url == agent.card_url
    assert fetched.card.name == "PDF Summariser" and fetched.card.capabilities.streaming
    assert not fetched.legacy
    assert fetched.to_dict()["skills"][0]["tags"] == ["pdf", "summary", "documents"]


async def test_a_card_is_fetched_from_its_full_url():
    async with running_agent(streaming=False) as agent:
        fetched = await fetch_card(agent.card_url, AddressPolicy())
    assert fetched.url == agent.card_url and not fetched.card.capabilities.streaming


async def test_a_0_3_card_is_converted_to_1_0():
    async with card_server() as server:
        fetched = await fetch_card(server.base_url + "/legacy", AddressPolicy())
    assert fetched.legacy
    interface = fetched.card.supported_interfaces[0]
    assert (interface.url, interface.protocol_binding, interface.protocol_version) == \
        ("http://127.0.0.1:9/a2a", "JSONRPC", "0.3.0")
    assert fetched.card.skills[0].tags == ["translation"]


async def test_a_json_subtype_content_type_is_accepted():
    async with card_server() as server:
        fetched = await fetch_card(server.base_url + "/a2a.json", AddressPolicy())
    assert fetched.card.name == "Typed"


# ---------------------------------------------------------------- bad cards

@pytest.mark.parametrize("path, says", [
    ("/text.json", "not JSON"),
    ("/html.json", "content-type 'text/html'"),
    ("/list.json", "must be a JSON object"),
    ("/int-name.json", "not an AgentCard"),
    ("/no-interfaces.json", "neither supportedInterfaces"),
    ("/grpc-only.json", "no JSONRPC or HTTP+JSON interface"),
    ("/legacy-broken.json", "not an A2A 0.3 AgentCard"),
    ("/large.json", "limit"),
    ("/endless.json", "larger than"),
    ("/deep.json", "nested too deeply"),
    ("/missing.json", "HTTP 404"),
])
async def test_what_is_not_a_card_is_refused_with_the_reason(path, says):
    async with card_server() as server:
        with pytest.raises(InvalidCardError) as caught:
            await fetch_card(server.base_url + path, AddressPolicy())
    assert says in caught.value.reason


async def test_a_server_error_or_a_closed_port_is_unreachable():
    async with card_server() as server:
        with pytest.raises(UnreachableError, match="HTTP 503"):
            await fetch_card(server.base_url + "/broken.json", AddressPolicy())
    with pytest.raises(UnreachableError, match="ConnectError"):
        await fetch_card(server.base_url, AddressPolicy())       # the server has stopped


async def test_a_card_that_never_comes_times_out():
    async with card_server() as server:
        with pytest.raises(UnreachableError, match="no answer within 0.3s"):
            await fetch_card(server.base_url + "/slow.json", AddressPolicy(), timeout=0.3)


async def test_a_name_that_does_not_resolve_is_unreachable():
    with pytest.raises(UnreachableError, match="cannot resolve"):
        await fetch_card("http://nowhere.test/", AddressPolicy(resolver=resolver({})))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["url", "name", "id", "type", "in", "tags", "transport", "x"]), inner,
                        max_size=3), max_leaves=10)


def _paths(doc, prefix=()):
    if prefix:
        yield prefix
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield from _paths(value, prefix + (key,))


@settings(max_examples=300, suppress_health_check=list(HealthCheck), deadline=None)
@given(st.sampled_from([LEGACY_CARD, card_with()]), st.data(), JSON)
def test_any_mangled_card_is_parsed_or_refused_as_invalid(card, data, value):
    doc = copy.deepcopy(card)
    path = data.draw(st.sampled_from(list(_paths(doc))))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    try:
        parse_card(doc)
    except InvalidCardError:
        pass


# ---------------------------------------------------------------- SSRF

@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.1.1:8080/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://100.100.100.200/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.google.internal./",
    "http://0.0.0.0:8080/",
    "http://2852039166/",               # 169.254.169.254 spelt as one number, in hex, in octal
    "http://0xA9FEA9FE/",
    "http://0251.0376.0251.0376/",
])
async def test_link_local_and_metadata_addresses_are_always_refused(url):
    with pytest.raises(RefusedURLError):
        await fetch_card(url, AddressPolicy())


async def test_a_name_that_resolves_to_a_metadata_address_is_refused():
    policy = AddressPolicy(resolver=resolver({"innocent.test": ["93.184.215.14", "169.254.169.254"]}))
    with pytest.raises(RefusedURLError, match="169.254.169.254, a link-local address"):
        await fetch_card("http://innocent.test/", policy)


async def test_a_redirect_to_a_metadata_address_is_refused():
    async with card_server() as server:
        with pytest.raises(RefusedURLError):
            await fetch_card(server.base_url + "/to-metadata.json", AddressPolicy())


async def test_a_card_whose_interface_points_at_a_metadata_address_is_refused():
    async with card_server() as server:
        with pytest.raises(RefusedURLError, match="169.254.169.254"):
            await fetch_card(server.base_url + "/metadata-interface.json", AddressPolicy())


async def test_the_connection_goes_to_the_address_that_was_checked():
    # The system resolver knows no "agent.test": fetching works only because the guard connects to
    # the address it resolved and checked. The next connection resolves again, gets a metadata
    # address (rebinding) and is refused.
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])

    async def rebinding(host, port):
        return next(answers)
    async with running_agent() as agent:
        url = agent.card_url.replace("127.0.0.1", "agent.test")
        async with guarded_client(AddressPolicy(resolver=rebinding)) as http:
            first = await http.get(url, headers={"Connection": "close"})
            assert first.status_code == 200 and first.json()["name"] == "PDF Summariser"
            with pytest.raises(RefusedURLError):
                await http.get(url, headers={"Connection": "close"})


async def test_with_an_allow_list_only_listed_hosts_are_fetched():
    async with running_agent() as agent:
        with pytest.raises(RefusedURLError, match="not in gateway.allowed_agent_hosts"):
            await fetch_card(agent.base_url, AddressPolicy(["agents.example.com"]))
        assert (await fetch_card(agent.base_url, AddressPolicy(["agents.example.com", "127.0.0.1"]))).card.name
        assert (await fetch_card(agent.base_url, AddressPolicy(["127.0.0.0/8"]))).card.name


async def test_allow_list_wildcards_cover_subdomains_but_not_metadata():
    table = {"summariser.agents.test": ["127.0.0.1"], "agents.test": ["127.0.0.1"],
             "evil.agents.test": ["169.254.169.254"]}
    policy = AddressPolicy(["*.agents.test"], resolver=resolver(table))
    assert await policy.resolve("summariser.agents.test", 80) == ["127.0.0.1"]
    with pytest.raises(RefusedURLError):
        await policy.resolve("agents.test", 80)
    with pytest.raises(RefusedURLError):
        await policy.resolve("evil.agents.test", 80)


def test_the_policy_is_read_from_settings():
    assert AddressPolicy.from_settings({}).allowed_hosts is None
    assert AddressPolicy.from_settings({"gateway": {"allowed_agent_hosts": ["A.example."]}}).allowed_hosts == \
        ["a.example"]


@pytest.mark.parametrize("address, refused", [("127.0.0.1", False), ("10.0.0.5", False), ("::1", False),
                                              ("169.254.169.254", True), ("fe80::1%eth0", True),
                                              ("ff02::1", True), ("::", True)])
def test_refusal_of_single_addresses(address, refused):
    assert (refusal(address) is not None) == refused
