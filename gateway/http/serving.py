"""How `topicbridge serve` runs uvicorn on a network: what uvicorn lacks for a server facing it
(a deadline and a size cap for request headers), a keep-alive timeout, and a cap on concurrent
connections and requests."""

from __future__ import annotations

import asyncio

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEP_ALIVE = 5.0
DEFAULT_MAX_CONCURRENCY = 4096
MAX_HEADER_BYTES = 64 * 1024            # request line and headers of one request


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
            self.transport = CoalescingTransport(transport, self.loop)     # what each request's cycle writes to
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


class CoalescingTransport:
    """A response's head and body in one send() call rather than two.

    uvicorn writes the status line and headers at `http.response.start` and the body at
    `http.response.body`, and uvloop sends each write at once when nothing is queued: two
    system calls (and two TCP segments) per answer, the head's write ~3% of the gateway's
    CPU per native task at 64 connections (py-spy). Here a write is held until the end of the
    loop iteration (`call_soon`); a second write in the same iteration (the body, sent right
    after the head) goes out with it at once. A large write goes straight through. Everything
    else is the transport's own."""

    __slots__ = ("_transport", "_loop", "_held", "_flush_due")
    HOLD_MAX = 64 * 1024

    def __init__(self, transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: bytes | None = None
        self._flush_due = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= self.HOLD_MAX:      # one buffer: uvloop's fast path (a list of them allocates)
                self._transport.write(held + data)
            else:                               # not copied: one writev
                self._transport.writelines((held, data))
        elif len(data) > self.HOLD_MAX:
            self._transport.write(data)
        elif data:
            self._held = bytes(data)
            if not self._flush_due:
                self._flush_due = True
                self._loop.call_soon(self._flush)

    def writelines(self, lines) -> None:
        self.write(b"".join(lines))

    def _flush(self) -> None:
        self._flush_due = False
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str):
        return getattr(self._transport, name)
