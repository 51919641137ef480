"""Who may call the admin API and the agent endpoints, and how much and how slowly they may send.

`GatewayGuard` is a pure ASGI middleware in front of the whole app:

- `/admin/*` and `/agents/*` need `Authorization: Bearer <token>` when `gateway.bearer_tokens`
  is set (401 with `WWW-Authenticate: Bearer` otherwise). Cards stay public, so clients can
  discover what to call and how: `/.well-known/agent-card.json` and
  `/agents/<name>/.well-known/agent-card.json`. `/healthz`, `/readyz` and `/mcp` (which has its
  own guard, `mcp_auth.py`) need no token here.
- A request body to `/agents/*` larger than `gateway.max_body_bytes` gets 413, whether it
  announces its length or streams it.
- A request body to `/agents/*`, `/admin/*` or `/mcp` whose JSON nests deeper than
  `gateway.max_json_depth`, or that is not UTF-8 (NUL bytes: UTF-16/32, which `json.loads`
  would otherwise decode), gets 400 before any handler parses it (`JsonDepth` below reads each
  chunk as it arrives, without building Python objects). With the depth bounded, no parser
  behind the guard can recurse into a RecursionError.
- A body on those routes that has not fully arrived `gateway.body_timeout_seconds` after its
  headers gets 408. Only the body is timed: a response may take as long as it takes (SSE
  streams, a blocking SendMessage).

Refusals are in the shape of the route: a JSON-RPC error (`id` null) for `POST /agents/`,
`POST /agents/<name>/` and `POST /mcp`, `{"error": {"code", "status", "message"}}` for the A2A
HTTP+JSON routes, the admin API's `{"error": {"type", "message", ...}}` under `/admin`, each with
`Connection: close`. The app then sees the body end in a byte no JSON parser accepts, so it
answers (unheard) a parse error instead of acting on a partial body, and logs no traceback.

`uvicorn_options` adds what uvicorn itself lacks for a server facing the network: a deadline
and a size cap for request headers (`GatewayHttpProtocol`), a keep-alive timeout and a cap on
concurrent connections and requests.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.errors import InvalidRequestError, MessageTooLargeError, status_of

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 64
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEP_ALIVE = 5.0
DEFAULT_MAX_CONCURRENCY = 4096
MAX_HEADER_BYTES = 64 * 1024            # request line and headers of one request

_PROTECTED = re.compile(r"^/(admin|agents)(/|$)")
_MCP = re.compile(r"^/mcp/?$")
_PUBLIC_CARD = re.compile(r"^/agents/[^/]+/\.well-known/agent-card\.json$")
_JSONRPC_ENDPOINT = re.compile(r"^/(agents/([^/]+/)?|mcp/?)$")
_INVALID_REQUEST = -32600               # JSON-RPC: the request is not acceptable as a whole
# What the app reads last once a body has been refused: a NUL is never valid JSON, so whatever
# was passed on before it cannot parse, and nothing acts on a partial body.
_UNPARSABLE = b"\x00"


def token_list(value) -> list[str]:
    """Tokens from TOML (a list) or an environment variable (a comma-separated string)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class GatewayGuard:
    def __init__(self, app: ASGIApp, tokens: list[str] | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens or []]
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.body_timeout = body_timeout

    @classmethod
    def settings_kwargs(cls, settings: dict) -> dict:
        gateway = settings.get("gateway", {})
        return {"tokens": token_list(gateway.get("bearer_tokens")),
                "max_body_bytes": gateway.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES,
                "max_json_depth": gateway.get("max_json_depth") or DEFAULT_MAX_JSON_DEPTH,
                "body_timeout": float(gateway.get("body_timeout_seconds") or DEFAULT_BODY_TIMEOUT)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if _PROTECTED.match(path):
            if self.tokens and not _PUBLIC_CARD.match(path) and not self._authorized(scope["headers"]):
                await _send_json(send, 401, {"error": {"type": "Unauthorized", "message":
                                                       "a valid bearer token is required"}},
                                 [(b"www-authenticate", b'Bearer realm="topicbridge"')])
                return
        elif not _MCP.match(path):
            await self.app(scope, receive, send)
            return
        await self._guarded(scope, receive, send, self.max_body_bytes if path.startswith("/agents") else None)

    def _authorized(self, headers: list) -> bool:
        value = next((v for k, v in headers if k.lower() == b"authorization"), b"")
        scheme, _, token = value.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = token.strip().encode()
        # Compare against every token, so the time taken does not tell which one came close.
        return sum(hmac.compare_digest(given, t) for t in self.tokens) > 0

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, size_limit: int | None) -> None:
        if size_limit is not None:
            declared = next((v for k, v in scope["headers"] if k.lower() == b"content-length"), b"")
            if declared.isdigit() and int(declared) > size_limit:
                await _refuse(scope, send, MessageTooLargeError(int(declared), size_limit))
                return
        meter = JsonDepth(self.max_json_depth)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        received = 0
        complete = started = refused = expired = False
        timer: asyncio.TimerHandle | None = None       # armed at the first read of the body
        reader: asyncio.Task | None = None              # the task waiting for the body, while one is

        def on_deadline() -> None:
            # One timer per request rather than asyncio.timeout per read: this is on every request.
            nonlocal expired
            expired = True
            if reader is not None:
                reader.cancel()

        async def read() -> Message | None:
            """The next message of the body, or None once the deadline has passed."""
            nonlocal timer, reader
            if expired:
                return None
            if timer is None:
                timer = loop.call_at(deadline, on_deadline)
            reader = asyncio.current_task()
            cancelling = reader.cancelling()
            try:
                return await receive()
            except asyncio.CancelledError:
                if not expired or reader.uncancel() > cancelling:      # not (only) the deadline
                    raise
                return None
            finally:
                reader = None

        async def refuse(error: Exception, more: bool = False) -> Message:
            nonlocal complete, refused, received
            complete = True
            # A bad body that is still arriving is read on (and dropped) within the size limit and
            # the deadline, so that the client, which may not read before it has sent all, gets
            # the answer rather than a connection reset.
            while more and received <= self.max_body_bytes:
                message = await read()
                if message is None or message["type"] != "http.request":
                    break
                received += len(message.get("body", b""))
                more = message.get("more_body", False)
            if timer is not None:
                timer.cancel()
            if not started and not refused:
                refused = True
                await _refuse(scope, send, error)
            return {"type": "http.request", "body": _UNPARSABLE, "more_body": False}

        async def guarded_receive() -> Message:
            nonlocal complete, received
            if complete:                # past the body: disconnect watching, never timed
                return await receive()
            message = await read()
            if message is None:
                return await refuse(BodyTimeoutError(self.body_timeout))
            if message["type"] != "http.request":
                complete = True
                timer.cancel()
                return message
            more = message.get("more_body", False)
            if not more:
                complete = True
                timer.cancel()
            body = message.get("body", b"")
            if body:
                received += len(body)
                if size_limit is not None and received > size_limit:
                    return await refuse(MessageTooLargeError(received, size_limit))
                problem = meter.feed(body, last=not more)
                if problem is not None:
                    return await refuse(InvalidRequestError("body", f"<{received} bytes>", problem), more)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if refused:             # the app answers the unparsable body too: the refusal stands
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, watching_send)
        finally:
            if timer is not None:
                timer.cancel()


class BodyTimeoutError(Exception):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"the request body did not arrive within {seconds:g} seconds")


async def _refuse(scope: Scope, send: Send, error: Exception) -> None:
    """Answer for the app, in the shape of the route the request was for."""
    if isinstance(error, BodyTimeoutError):
        http, code, grpc_status = 408, _INVALID_REQUEST, "DEADLINE_EXCEEDED"
        admin = {"type": "RequestTimeout", "message": str(error), "seconds": error.seconds}
    else:
        http, code, grpc_status = status_of(error)
        if not isinstance(error, MessageTooLargeError):
            code = _INVALID_REQUEST
        admin = error.to_dict()
    path = scope["path"]
    if path.startswith("/admin"):
        body = {"error": admin}
    elif scope["method"] == "POST" and _JSONRPC_ENDPOINT.match(path):
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": str(error)}}
    else:
        body = {"error": {"code": http, "status": grpc_status, "message": str(error)}}
    await _send_json(send, http, body, [(b"connection", b"close")])


async def _send_json(send: Send, status: int, doc: dict, headers: list) -> None:
    body = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- JSON nesting depth

_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")     # opening +1, closing -1 (as signed bytes)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _eight_step_table() -> dict[int, tuple[int, int]]:
    """Every run of 8 steps, read as one little-endian 64-bit word -> (net change, highest point)."""
    table = {}
    for steps in itertools.product((1, -1), repeat=8):
        heights = list(itertools.accumulate(steps))
        table[int.from_bytes(bytes(s & 0xFF for s in steps), "little")] = (heights[-1], max(heights))
    return table


_EIGHT_STEPS = _eight_step_table()


class JsonDepth:
    """How deep the JSON read so far nests, chunk by chunk, at C speed for all but deep bodies.

    Per chunk: escapes go first (`\\\\` pairs, then `\\"`: backslashes only occur inside strings in
    valid JSON, and pairing them from the left is how a parser reads them), so every quote left
    opens or closes a string; splitting on quotes and keeping every other piece leaves what is
    outside strings; `bytes.translate` keeps only its brackets, as +1/-1 steps. When the depth at
    the start of the chunk plus every opening bracket in it stays within the limit, that is all
    (a typical body: a couple of microseconds). Otherwise the steps are walked eight at a time
    through a table of (net change, highest point), stopping as soon as the limit is passed.

    State carried between chunks: the depth, whether a string is open, and a backslash the
    chunk ended on. Invalid JSON is measured as if it were JSON up to where a parser would stop
    reading it (depth never goes below 0), which is all that matters: nothing parses past it.
    """

    __slots__ = ("limit", "depth", "in_string", "backslash")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = False
        self.backslash = False

    def feed(self, chunk: bytes, last: bool = False) -> str | None:
        """None while the body is acceptable, else why it is not. `last`: no chunk follows, so
        when even every bracket in it, strings and all, stays within the limit, that is all."""
        if b"\x00" in chunk:
            return "not UTF-8 JSON (it contains NUL bytes)"
        if last and self.depth + chunk.count(b"[") + chunk.count(b"{") <= self.limit:
            return None
        if self.backslash:
            chunk = b"\\" + chunk
            self.backslash = False
        if b"\\" in chunk:
            if (len(chunk) - len(chunk.rstrip(b"\\"))) & 1:     # ends inside an escape: finish it next time
                self.backslash = True
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\\\\", b"").replace(b'\\"', b"")
        pieces = chunk.split(b'"')
        if len(pieces) > 1:
            outside = b"".join(pieces[self.in_string::2])
            self.in_string ^= (len(pieces) - 1) & 1
        elif self.in_string:
            return None
        else:
            outside = chunk
        steps = outside.translate(_STEPS, _NOT_BRACKETS)
        if not steps:
            return None
        opens = steps.count(1)
        depth, limit = self.depth, self.limit
        if depth + opens <= limit:
            self.depth = max(depth + 2 * opens - len(steps), 0)
            return None
        whole = len(steps) & ~7
        for word in memoryview(steps[:whole]).cast("Q"):
            net, top = _EIGHT_STEPS[word]
            if depth + top > limit:
                return self._too_deep()
            depth = max(depth + net, 0)
        for step in memoryview(steps[whole:]).cast("b"):
            depth = max(depth + step, 0)
            if depth > limit:
                return self._too_deep()
        self.depth = depth
        return None

    def _too_deep(self) -> str:
        return f"JSON nested deeper than {self.limit} levels"


# ---------------------------------------------------------------- uvicorn

def uvicorn_options(settings: dict) -> dict:
    """`uvicorn.run` keyword arguments for `topicbridge serve`."""
    gateway = settings.get("gateway", {})
    return {"http": http_protocol(float(gateway.get("header_timeout_seconds") or DEFAULT_HEADER_TIMEOUT)),
            "ws": "none",                   # no WebSocket routes: upgrades are plain requests
            "timeout_keep_alive": gateway.get("keep_alive_seconds") or DEFAULT_KEEP_ALIVE,
            "limit_concurrency": gateway.get("max_concurrency", DEFAULT_MAX_CONCURRENCY),
            "h11_max_incomplete_event_size": MAX_HEADER_BYTES}


def http_protocol(header_timeout: float, max_header_bytes: int = MAX_HEADER_BYTES, base: type | None = None) -> type:
    """uvicorn's HTTP/1.1 protocol (httptools, else h11) with what it lacks: a deadline for each
    request's headers, and a cap on their size (httptools has none).

    uvicorn times only idle keep-alive connections, and only until the first byte of the next
    request: a client that connects and sends nothing, or trickles a header line every few
    seconds, holds its connection for ever. Here the headers of a request must be complete
    `header_timeout` seconds after the connection opened or their first byte arrived (408 and
    close if some arrived, else just close), and within `max_header_bytes` (431 and close).
    The body is the app's concern (GatewayGuard's body timeout). `base`: uvicorn's protocol class
    to extend (default: the one uvicorn picks, httptools if installed)."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol as base

    class GatewayHttpProtocol(base):
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if not self._awaiting_headers():
                super().data_received(data)
                return
            super().data_received(data)
            if not self._awaiting_headers():            # these bytes completed the headers
                self._header_bytes = 0
                self._disarm()
                return
            if self._header_timer is None:  # armed only for headers that take more than one read
                self._arm()
            self._header_bytes += len(data)
            if self._header_bytes > max_header_bytes:
                self._close_with(b"431 Request Header Fields Too Large")

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._header_bytes = 0

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _awaiting_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self._awaiting_headers() or self.transport.is_closing():
                return
            if self._header_bytes:
                self._close_with(b"408 Request Timeout")
            else:
                self.transport.close()

        def _close_with(self, status: bytes) -> None:
            if self.transport.is_closing():
                return
            self._disarm()
            text = status[4:] + b"\n"
            self.transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                 b"connection: close\r\ncontent-length: " + str(len(text)).encode() +
                                 b"\r\n\r\n" + text)
            self.transport.close()

    return GatewayHttpProtocol
