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
