"""A small HTTP/1.1 client for one origin: the bridge's blocking calls (gateway/workers/lean_call.py).

httpx spent ~45% of the gateway's CPU per bridged task (py-spy, bench.gateway_e2e at 64
connections): the client's layers, httpcore's pool and h11 around one small POST. Here one
request is one write on a kept-alive asyncio connection and the answer is parsed by httptools
(the C parser uvicorn serves with). The guards of `guarded_client` hold:

- the host is resolved once by the `AddressPolicy` and the connection goes to the address it
  checked (TLS still verifies the certificate against the host name);
- at most `max_response_bytes` of one answer are read (a declared Content-Length over it fails
  before the body; a chunked body fails once past it): `ResponseTooLargeError`;
- `connect_timeout` bounds a connection, `read_timeout` the silence while an answer comes.

Failures are httpx's exception types (ConnectError, ConnectTimeout, ReadTimeout, ReadError,
RemoteProtocolError, HTTPStatusError for a status >= 400), so the bridge's retry rules read them
as they read httpx's own. A connection is reused only after a whole answer that allows it, and
not once it idled `KEEPALIVE` seconds (servers close idle connections: uvicorn after 5 s).
"""

from __future__ import annotations

import asyncio
from collections import deque

import httptools
import httpx

from .outbound import AddressPolicy, ResponseTooLargeError, UnreachableError, parse_http_url, tls_context

KEEPALIVE = 4.0


class OriginClient:
    """POSTs to one URL's origin over at most `max_connections` kept-alive connections."""

    def __init__(self, policy: AddressPolicy, url: str, *, connect_timeout: float, read_timeout: float,
                 max_response_bytes: int | None = None, limit_setting: str = "gateway.max_agent_response_bytes",
                 max_connections: int = 64) -> None:
        parsed = parse_http_url(url)
        self.url, self.policy = url, policy
        self.host, self.https = parsed.hostname, parsed.scheme == "https"
        self.port = parsed.port or (443 if self.https else 80)
        default_port = self.port == (443 if self.https else 80)
        self.authority = (f"[{self.host}]" if ":" in self.host else self.host) + ("" if default_port else f":{self.port}")
        self.target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.limit, self.limit_setting = max_response_bytes, limit_setting
        self._ssl = tls_context() if self.https else None     # the one context of every guarded transport
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._loop: asyncio.AbstractEventLoop | None = None     # the running loop, looked up once
        self._start = f"POST {self.target} HTTP/1.1\r\nHost: {self.authority}\r\nContent-Length: "

    async def post(self, body: bytes, headers: dict[str, str]) -> bytes:
        """The body of the answer to one POST; httpx.HTTPStatusError for a status >= 400."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        head = [self._start, str(len(body)), "\r\n"]
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise httpx.LocalProtocolError(f"header {name!r}: a line break in a header would split the request")
            head.append(f"{name}: {value}\r\n")
        request = "".join(head).encode("latin-1") + b"\r\n" + body
        async with self._slots:
            connection = self._reusable() or await self._connect()
            status, content = await connection.exchange(request, self.read_timeout)
            if connection.reusable:
                self._idle.append(connection)
        if status >= 400:
            response = httpx.Response(status, content=content, request=httpx.Request("POST", self.url))
            response.raise_for_status()
        return content

    def _reusable(self) -> "_Connection | None":
        now = self._loop.time()
        while self._idle:
            connection = self._idle.pop()       # the most recent: the least likely to have been closed
            if connection.reusable and now - connection.idle_since < KEEPALIVE:
                return connection
            connection.close()
        return None

    async def _connect(self) -> "_Connection":
        try:
            addresses = await self.policy.resolve(self.host, self.port)
        except UnreachableError as e:
            raise httpx.ConnectError(e.reason) from None
        loop, error = self._loop, None
        for address in addresses:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(loop, self.url, self.limit, self.limit_setting), address, self.port,
                        ssl=self._ssl, server_hostname=self.host if self.https else None)
                return connection
            except TimeoutError:
                error = httpx.ConnectTimeout(f"connecting to {address}:{self.port} timed out")
            except OSError as e:        # ssl.SSLError too
                error = httpx.ConnectError(f"{address}:{self.port}: {e}")
        raise error

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()


class _Connection(asyncio.Protocol):
    """One connection: a request written, its answer parsed as it arrives (httptools callbacks).

    The read timeout is one timer per exchange, not an `asyncio.timeout` pushed back at every
    chunk: a chunk only notes the time (`_heard`), and the timer, when it fires, waits again for
    whatever of the silence is left. (Per exchange that saves the timeout's context manager and a
    cancelled timer plus a new one per chunk, each with a getpid() in `get_running_loop` on
    Python 3.11: ~15 us of CPU per bridged call.)"""

    def __init__(self, loop: asyncio.AbstractEventLoop, url: str, limit: int | None, setting: str) -> None:
        self._loop = loop
        self.url, self.limit, self.setting = url, limit, setting
        self.reusable = False
        self.idle_since = 0.0
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._silence: asyncio.TimerHandle | None = None    # the read timeout's timer
        self._heard = 0.0           # when the answer's last bytes came (or the request left)
        self._read_timeout = 0.0
        self._status = 0
        self._too_large: ResponseTooLargeError | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.reusable = True

    async def exchange(self, request: bytes, read_timeout: float) -> tuple[int, bytes]:
        loop = self._loop
        self.reusable, self._body, self._size, self._read_timeout = False, [], 0, read_timeout
        self._answer = loop.create_future()
        self._transport.write(request)
        self._heard = loop.time()
        self._silence = loop.call_at(self._heard + read_timeout, self._silent)
        try:
            status, body = await self._answer
        except BaseException:
            self.close()            # cancelled mid-answer: the rest of it would confuse the next request
            raise
        finally:
            self._silence.cancel()
            self._silence = self._answer = None
        self.idle_since = loop.time()
        return status, body

    def _silent(self) -> None:
        """The read timeout's timer: the answer failed if nothing came for `read_timeout` seconds."""
        if self._answer is None or self._answer.done():
            return
        deadline = self._heard + self._read_timeout
        if self._loop.time() < deadline:        # bytes came meanwhile: wait for the rest of the silence
            self._silence = self._loop.call_at(deadline, self._silent)
            return
        self._fail(httpx.ReadTimeout(f"no answer from {self.url[:200]} for {self._read_timeout:g} s"))

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.close()            # bytes nobody asked for: the connection cannot be trusted
            return
        self._heard = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:     # a callback's error too (httptools wraps it)
            self._fail(self._too_large or
                       httpx.RemoteProtocolError(f"malformed HTTP answer from {self.url[:200]}: {e}"))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.limit is not None and name.lower() == b"content-length" and value.strip().isdigit() \
                and int(value) > self.limit:
            self._refuse()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self.limit is not None and self._size > self.limit:
            self._refuse()
        self._body.append(body)

    def _refuse(self) -> None:
        """Stops the parser (a callback's exception does) with the answer refused for its size."""
        self._too_large = ResponseTooLargeError(self.url, self.limit, self.setting)
        raise self._too_large

    def on_message_complete(self) -> None:
        keep = self._parser.should_keep_alive()
        if not self._answer.done():
            self._answer.set_result((self._status, b"".join(self._body)))
        self.reusable = keep and self._transport is not None and not self._transport.is_closing()
        if not keep:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._transport = None
        self._fail(httpx.ReadError(f"{self.url[:200]} closed the connection before answering"
                                   + (f": {exc}" if exc else "")))

    def _fail(self, error: Exception) -> None:
        self.close()
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()
