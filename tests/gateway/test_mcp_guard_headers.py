"""McpGuard reads Host and Origin in one pass over the raw headers (and remembers each Host
value's verdict): it must judge every request as starlette's `Headers` reading did, whitespace
around values, repeated and missing fields, and the scope the app gets included."""

import itertools

import pytest
from starlette.datastructures import Headers

from gateway.mcp.auth import AccessPolicy, McpGuard

POLICIES = {
    "loopback": AccessPolicy.from_settings({"gateway": {"host": "127.0.0.1"}}),
    "listed": AccessPolicy.from_settings({"gateway": {"host": "0.0.0.0", "mcp_allowed_hosts": ["gw.example:*"],
                                                      "mcp_allowed_origins": ["https://app.example"]}}),
    "open": AccessPolicy.from_settings({"gateway": {"host": "0.0.0.0"}}),
}
HOSTS = [None, b"127.0.0.1:8000", b"localhost", b"LOCALHOST:1", b"evil.example:8000", b"gw.example:443",
         b" 127.0.0.1:8000", b"gw.example:443\t", b"", b"127.0.0.1:x"]
ORIGINS = [None, b"http://localhost:8000", b"http://evil.example", b"https://app.example/", b"https://gw.example:443",
           b" http://localhost:8000 ", b"null"]


def _reference(policy: AccessPolicy, headers: list) -> tuple[int, list]:
    """The guard's verdict as it was written with starlette's Headers: (status or 200, headers the app sees)."""
    if any(v[:1] in (b" ", b"\t") or v[-1:] in (b" ", b"\t") for _, v in headers):
        headers = [(k, v.strip(b" \t")) for k, v in headers]
    read = Headers(scope={"type": "http", "headers": headers})
    host, origin = read.get("host"), read.get("origin")
    if origin is not None and not policy.origin_allowed(origin, host):
        return 403, headers
    if not policy.host_allowed(host):
        return 421, headers
    return 200, headers


class _App:
    """Records the headers the guard hands on, and answers 200."""

    seen: list | None = None

    async def __call__(self, scope, receive, send):
        self.seen = list(scope["headers"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _judged(guard: McpGuard, headers: list) -> tuple[int, list]:
    guard.app.seen = None
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": headers, "query_string": b"",
             "server": ("127.0.0.1", 8000), "scheme": "http"}
    await guard(scope, receive, send)
    return sent[0]["status"], guard.app.seen


def _header_sets():
    for host, origin in itertools.product(HOSTS, ORIGINS):
        headers = [(b"content-type", b"application/json")]
        if host is not None:
            headers.insert(0, (b"host", host))
        if origin is not None:
            headers.append((b"origin", origin))
        yield headers
    yield [(b"host", b"evil.example"), (b"host", b"127.0.0.1")]         # the first one counts
    yield [(b"host", b"127.0.0.1"), (b"host", b"evil.example")]
    yield [(b"host", b"127.0.0.1"), (b"origin", b"http://localhost"), (b"origin", b"http://evil.example")]
    yield [(b"host", b"127.0.0.1"), (b"origin", b"http://evil.example"), (b"origin", b"http://localhost")]
    yield [(b"x-padded", b"a "), (b"host", b"127.0.0.1 ")]


@pytest.mark.parametrize("policy", list(POLICIES))
async def test_the_guard_judges_host_and_origin_as_starlette_headers_read_them(policy):
    guard = McpGuard(_App(), POLICIES[policy])
    for _ in range(2):      # the second round on remembered Host verdicts
        for headers in _header_sets():
            status, expected_headers = _reference(POLICIES[policy], headers)
            got_status, got_headers = await _judged(guard, list(headers))
            assert got_status == status, headers
            if status == 200:
                assert got_headers == expected_headers, headers
