"""`topicbridge serve`'s protocol sends a response's head and body in one write
(gateway/http/serving.py, CoalescingTransport), and holds nothing past the loop iteration."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http.serving import CoalescingTransport, http_protocol

from .serving import running_app

PROTOCOLS = [pytest.param(HttpToolsProtocol, id="httptools"), pytest.param(H11Protocol, id="h11")]


class Recorded:
    """A real socket transport, with the calls that send data written down."""

    def __init__(self, transport) -> None:
        self.transport, self.sends = transport, []

    def write(self, data) -> None:
        self.sends.append([bytes(data)])
        self.transport.write(data)

    def writelines(self, lines) -> None:
        self.sends.append([bytes(line) for line in lines])
        self.transport.writelines(lines)

    def __getattr__(self, name):
        return getattr(self.transport, name)


@contextlib.asynccontextmanager
async def connected():
    """(a CoalescingTransport over a Recorded client socket, the server side's reader)."""
    accepted: asyncio.Queue = asyncio.Queue()
    server = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)), "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, *server.sockets[0].getsockname()[:2])
    async with asyncio.timeout(10):
        reader, writer = await accepted.get()
    recorded = Recorded(transport)
    try:
        yield CoalescingTransport(recorded, loop), recorded, reader
    finally:
        transport.close()
        writer.close()
        server.close()


async def read(reader: asyncio.StreamReader, size: int) -> bytes:
    async with asyncio.timeout(10):
        return await reader.readexactly(size)


async def test_a_head_and_a_body_written_in_one_loop_iteration_leave_in_one_send():
    async with connected() as (coalescing, recorded, reader):
        coalescing.write(b"HEAD\r\n\r\n")
        coalescing.write(b"body")
        assert recorded.sends == [[b"HEAD\r\n\r\nbody"]]
        assert await read(reader, 12) == b"HEAD\r\n\r\nbody"


async def test_a_lone_write_goes_out_at_the_end_of_the_iteration():
    async with connected() as (coalescing, recorded, reader):
        coalescing.write(b"HEAD\r\n\r\n")
        assert recorded.sends == []
        assert await read(reader, 8) == b"HEAD\r\n\r\n"
        assert recorded.sends == [[b"HEAD\r\n\r\n"]]
        coalescing.write(b"later")          # the next response starts its own hold
        assert await read(reader, 5) == b"later"


async def test_a_large_write_is_not_held():
    async with connected() as (coalescing, recorded, reader):
        big = b"x" * (CoalescingTransport.HOLD_MAX + 1)
        coalescing.write(big)
        assert recorded.sends == [[big]]
        assert await read(reader, len(big)) == big


async def test_a_head_followed_by_a_large_body_leaves_in_one_send_without_a_copy():
    async with connected() as (coalescing, recorded, reader):
        big = b"x" * (CoalescingTransport.HOLD_MAX + 1)
        coalescing.write(b"HEAD\r\n\r\n")
        coalescing.write(big)
        assert recorded.sends == [[b"HEAD\r\n\r\n", big]]
        assert await read(reader, 8 + len(big)) == b"HEAD\r\n\r\n" + big


async def test_closing_sends_what_is_held_first():
    async with connected() as (coalescing, recorded, reader):
        coalescing.write(b"last words")
        coalescing.close()
        async with asyncio.timeout(10):
            assert await reader.read() == b"last words"


async def test_an_aborted_connection_drops_what_is_held():
    async with connected() as (coalescing, recorded, reader):
        coalescing.write(b"never")
        coalescing.abort()
        async with asyncio.timeout(10):
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read() == b""
        assert recorded.sends == []


@pytest.mark.parametrize("base", PROTOCOLS)
async def test_a_streamed_response_head_reaches_the_client_before_its_body_is_sent(base):
    head_seen = asyncio.Event()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        async with asyncio.timeout(10):
            await head_seen.wait()          # the body only once the client has the head
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})

    async with running_app(app, http=http_protocol(10.0, base=base)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 ")
                head_seen.set()
                assert b"data: 1" in await reader.readuntil(b"data: 1\n\n")
        finally:
            writer.close()


@pytest.mark.parametrize("base", PROTOCOLS)
async def test_kept_alive_requests_each_get_their_whole_answer(base):
    async def app(scope, receive, send):
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    async with running_app(app, http=http_protocol(10.0, base=base)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            for path in (b"/one", b"/two", b"/three"):
                writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                async with asyncio.timeout(10):
                    await reader.readuntil(b"\r\n\r\n")
                    assert await reader.readexactly(len(path)) == path
        finally:
            writer.close()
