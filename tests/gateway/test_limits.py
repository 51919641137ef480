"""Limits on what a client may send and how slowly: JSON nesting depth, the body read timeout,
the header deadline and size cap of `topicbridge serve`'s HTTP protocol, and their settings.

Every route family is driven over real HTTP: A2A JSON-RPC (`POST /agents/<name>/`, and
`POST /agents/` with the capability as tenant), A2A HTTP+JSON, the admin API and MCP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random

import httpx
import pytest
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http.json_depth import JsonDepth
from gateway.http.serving import MAX_HEADER_BYTES, http_protocol, uvicorn_options
from gateway.settings import ConfigError, load, schema
from tests.spawned import clean_env, free_port, spawn_serve

from .mcp_support import agents_on, until_released, wait_until
from .serving import running_gateway

A2A = {"A2A-Version": "1.0"}
MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
MCP = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
       "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "echo"}
LIMIT = 8


# ---------------------------------------------------------------- helpers

def nested(levels: int):
    """A JSON value `levels` deep (0: a number), objects and arrays in turn."""
    value = 1
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def depth_of(value) -> int:
    deepest, todo = 0, [(value, 0)]         # no recursion: the values go 500 levels deep
    while todo:
        value, level = todo.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, level + 1)
            todo.extend((v, level + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def message(text: str = "hi", metadata=None) -> dict:
    out = {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": text}]}
    if metadata is not None:
        out["metadata"] = metadata
    return out


def jsonrpc_send(params: dict) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": params}


def shape(depth: int, outer: int) -> dict:
    """Metadata that brings a request whose metadata object sits at level `outer` to `depth`."""
    return {"x": nested(depth - outer)}


# route family -> (path, headers, body of a given depth)
FAMILIES = {
    "a2a-jsonrpc": lambda d: ("/agents/echo/", A2A, jsonrpc_send({"message": message(metadata=shape(d, 4))})),
    "a2a-jsonrpc-tenant": lambda d: ("/agents/", A2A, jsonrpc_send({"tenant": "echo",
                                                                    "message": message(metadata=shape(d, 4))})),
    "a2a-rest": lambda d: ("/agents/echo/message:send", A2A, {"message": message(metadata=shape(d, 3))}),
    "admin": lambda d: ("/admin/agents", {}, {"card_url": "http://127.0.0.1:9/", "extra": nested(d - 1)}),
    "mcp": lambda d: ("/mcp", MCP, {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                    "params": {"name": "echo", "arguments": {"text": "hi", "deep": nested(d - 3)},
                                               "_meta": ENVELOPE}}),
}
JSONRPC_FAMILIES = {"a2a-jsonrpc", "a2a-jsonrpc-tenant", "mcp"}


def request_of(family: str, depth: int) -> tuple[str, dict, bytes]:
    path, headers, body = FAMILIES[family](depth)
    assert depth_of(body) == depth
    return path, headers, json.dumps(body).encode()


def assert_refused(family: str, response: httpx.Response, status: int, words: str, code: int = -32600) -> None:
    """The route's own error shape, with `words` in its message (`code`: JSON-RPC's)."""
    assert response.status_code == status, response.text
    assert response.headers["connection"] == "close"
    doc = response.json()
    if family in JSONRPC_FAMILIES:
        assert doc["jsonrpc"] == "2.0" and doc["id"] is None and doc["error"]["code"] == code
    elif family == "admin":
        assert doc["error"]["type"] in ("MalformedBodyError", "BodyTimeoutError")
    else:
        assert doc["error"]["code"] == status and doc["error"]["status"] in ("INVALID_ARGUMENT", "DEADLINE_EXCEEDED")
    assert words in doc["error"]["message"]


def assert_served(family: str, response: httpx.Response) -> None:
    """Not refused by the guard: the route itself answered."""
    doc = response.json()
    if family in ("a2a-jsonrpc", "a2a-jsonrpc-tenant"):
        assert response.status_code == 200 and doc["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    elif family == "a2a-rest":
        assert response.status_code == 200 and doc["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    elif family == "admin":         # the admin API's own verdict on the extra field
        assert response.status_code == 400 and doc["error"]["field"] == "extra", doc
    else:
        assert response.status_code == 200 and "result" in doc, doc


def gateway(uvicorn_settings: dict | None = None, **gateway_settings):
    """The gateway with the demo agents on uvicorn, 127.0.0.1, port 0, in this loop."""
    return running_gateway({"lite": {"data_dir": None, "tick": 0.005}, "gateway": {"demo": True, **gateway_settings}},
                           **(uvicorn_settings or {}))


async def still_serving(gw) -> None:
    path, headers, body = request_of("a2a-jsonrpc", 6)
    assert_served("a2a-jsonrpc", await gw.http.post(path, content=body, headers=headers))


@contextlib.asynccontextmanager
async def connection(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(10):
        return await reader.read()


def parse_response(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
async def gw():
    async with gateway(max_json_depth=LIMIT) as running:
        yield running


# ---------------------------------------------------------------- the depth reader

def reference_ok(data: bytes, limit: int) -> bool:
    """Byte by byte, as a parser reads, up to where a parser would give up."""
    depth, in_string, escaped = 0, False, False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x5C:          # a backslash outside a string: a parser stops here
            return True
        elif byte in b"[{":
            depth += 1
            if depth > limit:
                return False
        elif byte in b"]}":
            depth -= 1
            if depth < 0:           # closing what was never opened: a parser stops here
                return True
    return True


def feed(data: bytes, limit: int, cuts: list[int]) -> bool:
    meter, start = JsonDepth(limit), 0
    ends = [*cuts, len(data)]
    for i, end in enumerate(ends):
        if meter.feed(data[start:end], last=i == len(ends) - 1) is not None:
            return False
        start = end
    return True


TRICKY = [
    br'{"a": "[[[[[[[[[[[[", "b": [1]}',
    br'{"a": "\"[[[[[[[[[[[[\"", "b": [[1]]}',
    br'{"a": "\\", "b": [[[[[[[[[[1]]]]]]]]]]}',             # an escaped backslash closes no string
    br'{"a": "\\\"[[[[[[[[[[", "b": 1}',                      # backslash, then an escaped quote
    br'["\\\\\\\\", [[[[[[[[[[[1]]]]]]]]]]]]',
    br'{"k\"[": {"\\[": "{{{{{{{{{{{{{{{{"}, "z": [[[[[[[[[]]]]]]]]]}',
    br'[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[',
    br'["unterminated [[[[[[[[[[[[[[[[[[[[[[ \" [[[[[[[[[[',
]


@pytest.mark.parametrize("data", TRICKY)
@pytest.mark.parametrize("limit", [1, 3, 9, 10, 11, 64])
def test_the_depth_reader_agrees_with_a_byte_by_byte_reader_wherever_the_body_is_cut(data, limit):
    expected = reference_ok(data, limit)
    assert feed(data, limit, []) is expected
    for cut in range(len(data) + 1):
        assert feed(data, limit, [cut]) is expected, cut
    assert feed(data, limit, list(range(1, len(data)))) is expected        # a byte at a time


def random_document(rng: random.Random, levels: int):
    if levels <= 0 or rng.random() < 0.25:
        return rng.choice([1, None, True, "x", '[{"\\', '"]]}\\"[', "\\\\", "é[", "", "\\u0000"])
    if rng.random() < 0.5:
        return [random_document(rng, levels - 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "[", '"{', "\\"]) + str(i): random_document(rng, levels - 1)
            for i in range(rng.randint(0, 3))}


def test_the_depth_reader_measures_random_documents_exactly_in_random_chunks():
    rng = random.Random(2024)
    for _ in range(3000):
        document = random_document(rng, rng.randint(0, 14))
        data = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode()
        limit = rng.randint(0, 14)
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 6))))
        assert feed(data, limit, cuts) is (depth_of(document) <= limit), (data, limit, cuts)


def test_the_depth_reader_never_reads_invalid_json_shallower_than_a_parser_would():
    rng = random.Random(7)
    for _ in range(20000):
        data = bytes(rng.choice(b'[]{}"\\a') for _ in range(rng.randint(0, 30)))
        limit = rng.randint(0, 5)
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 5))))
        if feed(data, limit, cuts):
            assert reference_ok(data, limit), (data, limit, cuts)


def test_the_depth_reader_refuses_what_is_not_utf8_json():
    assert JsonDepth(64).feed('{"a": [1]}'.encode("utf-16")) == "not UTF-8 JSON (it contains NUL bytes)"
    assert JsonDepth(64).feed(b'{"a": "\x00"}', last=True) is not None
    assert JsonDepth(64).feed('\ufeff{"a": ["é"]}'.encode()) is None            # UTF-8, with or without BOM


# ---------------------------------------------------------------- depth over HTTP

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("depth", [LIMIT - 1, LIMIT])
async def test_a_body_within_the_depth_limit_reaches_the_route(gw, family, depth):
    path, headers, body = request_of(family, depth)
    assert_served(family, await gw.http.post(path, content=body, headers=headers))


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_body_one_level_too_deep_is_400_in_the_routes_shape(gw, family):
    path, headers, body = request_of(family, LIMIT + 1)
    response = await gw.http.post(path, content=body, headers=headers)
    assert_refused(family, response, 400, f"JSON nested deeper than {LIMIT} levels")
    await still_serving(gw)


@pytest.mark.parametrize("family", FAMILIES)
async def test_100000_open_brackets_are_400_not_500_and_the_gateway_keeps_serving(family):
    async with gateway() as gw:             # the default limit
        path, headers, _ = request_of(family, 6)
        brackets = 60_000 if family == "admin" else 100_000     # the admin API takes 64 KiB at most
        response = await gw.http.post(path, content=b"[" * brackets, headers=headers)
        assert_refused(family, response, 400, "JSON nested deeper than 64 levels")
        await still_serving(gw)


@pytest.mark.parametrize("family", FAMILIES)
async def test_at_the_highest_depth_limit_allowed_no_parser_behind_the_guard_fails_with_a_500(family):
    maximum = schema()["properties"]["gateway"]["properties"]["max_json_depth"]["maximum"]
    async with gateway(max_json_depth=maximum) as gw:
        path, headers, body = request_of(family, maximum)
        response = await gw.http.post(path, content=body, headers=headers)
        assert response.status_code < 500 and "nested" not in response.text, response.text[:300]
        path, headers, body = request_of(family, maximum + 1)
        assert_refused(family, await gw.http.post(path, content=body, headers=headers), 400, "nested deeper")
        await still_serving(gw)


async def test_brackets_and_escaped_quotes_inside_strings_do_not_count(gw):
    text = '[[[[[[[[[[ {{{{{{{{{{ \\" \\\\ "[[[[[[[[[[" \\\\\\" ]]]]]]]]]]]]]]]]]]]]]'
    response = await gw.http.post("/agents/echo/", json=jsonrpc_send({"message": message(text)}), headers=A2A)
    task = response.json()["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["artifacts"][0]["parts"][0]["text"] == text


async def test_a_string_ending_in_an_escaped_backslash_leaves_the_brackets_after_it_counted(gw):
    deep = "[" * (LIMIT + 1) + "1" + "]" * (LIMIT + 1)
    body = ('{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": '
            '{"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "ends in \\\\"}], '
            '"metadata": {"x": ' + deep + '}}}}').encode()
    assert_refused("a2a-jsonrpc", await gw.http.post("/agents/echo/", content=body, headers=A2A), 400,
                   "nested deeper")


async def test_a_deep_body_streamed_in_small_chunks_is_refused_as_it_arrives(gw):
    path, headers, body = request_of("a2a-rest", 5 * LIMIT)

    async def chunks():
        for i in range(0, len(body), 7):
            yield body[i:i + 7]

    response = await gw.http.post(path, content=chunks(), headers=headers | {"Content-Type": "application/json"})
    assert_refused("a2a-rest", response, 400, "nested deeper")
    await still_serving(gw)


async def test_a_utf16_body_is_refused_before_a_parser_decodes_it(gw):
    body = json.dumps(jsonrpc_send({"message": message()})).encode("utf-16")
    response = await gw.http.post("/agents/echo/", content=body, headers=A2A)
    assert_refused("a2a-jsonrpc", response, 400, "not UTF-8 JSON", code=-32700)     # not JSON text: a parse error


# ---------------------------------------------------------------- body timeout

def head(path: str, headers: dict, length: int | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             *(f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-type"),
             f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
async def impatient():
    async with gateway(body_timeout_seconds=0.3) as running:
        yield running


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_body_that_stops_arriving_gets_408_in_the_routes_shape(impatient, family):
    path, headers, body = request_of(family, 6)
    async with connection(impatient.port) as (reader, writer):
        writer.write(head(path, headers, len(body)) + body[:len(body) // 2])      # and then nothing
        await writer.drain()
        status, response_headers, payload = parse_response(await read_until_closed(reader))
    assert_refused(family, httpx.Response(status, headers=response_headers, content=payload), 408,
                   "did not arrive within 0.3 seconds")
    await still_serving(impatient)


async def test_a_chunked_body_without_its_last_chunk_gets_408(impatient):
    path, headers, body = request_of("a2a-jsonrpc", 6)
    async with connection(impatient.port) as (reader, writer):
        writer.write(head(path, headers, None) + b"%x\r\n%s\r\n" % (len(body), body))   # no 0-size chunk
        await writer.drain()
        status, _, payload = parse_response(await read_until_closed(reader))
    assert status == 408 and json.loads(payload)["error"]["code"] == -32600


async def test_a_body_trickled_a_byte_at_a_time_gets_408_while_it_trickles(impatient):
    path, headers, body = request_of("a2a-rest", 6)
    async with connection(impatient.port) as (reader, writer):
        writer.write(head(path, headers, len(body)))
        async with asyncio.timeout(10):
            for byte in body:
                writer.write(bytes([byte]))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    # sleep-ok: a byte every 50 ms is the slow client under test
                    answer = await asyncio.wait_for(reader.read(1), 0.05)
                    break
            else:
                pytest.fail("the whole body went through")
            # (the status line only: a byte sent as the server closed may reset the connection)
            status_line = answer + await reader.readuntil(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408 ")


async def test_long_responses_are_not_timed_only_bodies_are(impatient):
    async with agents_on(impatient.app.state.gateway.backend) as agents:
        await agents.serve("slow", until_released)

        async def known():
            return (await impatient.http.get("/agents/slow/.well-known/agent-card.json")).status_code == 200
        await wait_until(known)
        blocking = asyncio.create_task(impatient.http.post(
            "/agents/slow/", json=jsonrpc_send({"message": message("blocking")}), headers=A2A))
        stream_request = {**jsonrpc_send({"message": message("streaming")}), "method": "SendStreamingMessage"}
        async with impatient.http.stream("POST", "/agents/slow/", json=stream_request,
                                         headers=A2A | {"Accept": "text/event-stream"}) as stream:
            events = stream.aiter_lines()
            first = await anext(line async for line in events if line.startswith("data:"))
            assert "TASK_STATE" in first

            async def both_working():
                return len(agents.seen.get("slow", [])) == 2
            await wait_until(both_working)
            # Twice the 0.3 s body timeout, both responses open: neither may end before the release.
            done, _ = await asyncio.wait({blocking}, timeout=0.6)
            assert not done
            agents.release.set()
            rest = [line async for line in events if line.startswith("data:")]
        assert "TASK_STATE_COMPLETED" in rest[-1]
        answer = await blocking
        assert answer.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


# ---------------------------------------------------------------- headers (topicbridge serve's protocol)

PROTOCOLS = [pytest.param(HttpToolsProtocol, id="httptools"), pytest.param(H11Protocol, id="h11")]


@pytest.fixture(params=PROTOCOLS)
async def strict(request):
    async with gateway({"http": http_protocol(0.3, base=request.param),
                        "h11_max_incomplete_event_size": MAX_HEADER_BYTES}) as running:
        yield running


async def test_a_connection_that_sends_nothing_is_closed(strict):
    async with connection(strict.port) as (reader, _):
        assert await read_until_closed(reader) == b""


async def test_headers_that_stop_arriving_get_408(strict):
    async with connection(strict.port) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        assert (await read_until_closed(reader)).startswith(b"HTTP/1.1 408 ")


async def test_each_request_on_a_kept_alive_connection_has_its_own_header_deadline(strict):
    async with connection(strict.port) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            status = await reader.readuntil(b"\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 200 ")
            length = int(parse_response(status)[1]["content-length"])
            await reader.readexactly(length)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        await writer.drain()
        assert (await read_until_closed(reader)).startswith(b"HTTP/1.1 408 ")


async def test_headers_larger_than_the_cap_are_refused(strict):
    async with connection(strict.port) as (reader, writer):
        start = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
        # one byte over, no more: the cap is passed only once the server has read all that was sent
        # (closing on unread bytes would reset the connection before the answer could be read)
        writer.write(start + b"a" * (MAX_HEADER_BYTES + 1 - len(start)))
        await writer.drain()
        answer = await read_until_closed(reader)
    # httptools has no cap of its own (here: 431); h11's own (the same size, as serve sets it) may answer 400
    assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), answer[:80]


async def test_requests_within_the_deadlines_are_served_on_either_protocol(strict):
    for _ in range(3):
        assert (await strict.http.get("/healthz")).status_code == 200
    await still_serving(strict)


def test_serve_gives_uvicorn_its_limits():
    options = uvicorn_options(load(env={}))
    assert issubclass(options.pop("http"), AutoHTTPProtocol)
    assert options == {"ws": "none", "timeout_keep_alive": 5, "limit_concurrency": 4096,
                       "h11_max_incomplete_event_size": MAX_HEADER_BYTES}
    tuned = uvicorn_options(load(env={"TOPICBRIDGE_GATEWAY__KEEP_ALIVE_SECONDS": "75",
                                      "TOPICBRIDGE_GATEWAY__MAX_CONCURRENCY": "null"}))
    assert (tuned["timeout_keep_alive"], tuned["limit_concurrency"]) == (75, None)


async def test_serve_closes_a_connection_that_sends_no_request(tmp_path):
    port = free_port()
    served = spawn_serve("--port", str(port), "--data-dir", str(tmp_path / "engine"),
                         env=clean_env(gateway__header_timeout_seconds="0.5"))
    try:
        served.wait_for("Uvicorn running on")
        async with connection(port) as (reader, writer):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            await writer.drain()
            assert (await read_until_closed(reader)).startswith(b"HTTP/1.1 408 ")
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    finally:
        served.stop()


# ---------------------------------------------------------------- settings

def test_the_limits_have_defaults():
    gateway_settings = load(env={})["gateway"]
    assert {key: gateway_settings[key] for key in ("max_json_depth", "body_timeout_seconds", "header_timeout_seconds",
                                                   "keep_alive_seconds", "max_concurrency")} == {
        "max_json_depth": 64, "body_timeout_seconds": 30, "header_timeout_seconds": 10, "keep_alive_seconds": 5,
        "max_concurrency": 4096}


@pytest.mark.parametrize("key, value", [
    ("max_json_depth", "0"), ("max_json_depth", "513"), ("max_json_depth", "deep"), ("max_json_depth", "6.5"),
    ("body_timeout_seconds", "0"), ("body_timeout_seconds", "-1"), ("body_timeout_seconds", "3601"),
    ("body_timeout_seconds", "soon"), ("header_timeout_seconds", "0"), ("keep_alive_seconds", "0"),
    ("max_concurrency", "0"), ("max_concurrency", "many"),
])
def test_bad_limits_are_refused_naming_the_setting(key, value):
    var = f"TOPICBRIDGE_GATEWAY__{key.upper()}"
    with pytest.raises(ConfigError) as err:
        load(env={var: value})
    assert err.value.key == f"gateway.{key}" and err.value.source == var
    assert f"gateway.{key}" in str(err.value)


def test_limits_come_from_the_config_file(tmp_path):
    path = tmp_path / "topicbridge.toml"
    path.write_text("[gateway]\nmax_json_depth = 16\nbody_timeout_seconds = 2.5\n")
    gateway_settings = load(path, env={})["gateway"]
    assert (gateway_settings["max_json_depth"], gateway_settings["body_timeout_seconds"]) == (16, 2.5)
    path.write_text("[gateway]\nmax_json_depth = 1000\n")
    with pytest.raises(ConfigError, match="gateway.max_json_depth"):
        load(path, env={})
