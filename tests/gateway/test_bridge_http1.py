"""The bridge's own HTTP/1.1 client (gateway/http/http1.py) against real TCP servers on port 0
that answer well, badly, too much, too slowly or not at all: every failure is the httpx
exception the bridge's retry rules know, kept-alive connections are reused and dropped ones
are not, and the address policy is asked before any connection."""

import asyncio

import httpx
import pytest

from gateway.http.http1 import OriginClient
from gateway.http.outbound import AddressPolicy, RefusedURLError, ResponseTooLargeError

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


class Peer:
    """A TCP server that reads each request (head and Content-Length body) and runs `answer(writer)`."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> "Peer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/rpc"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                self.requests.append(head + await reader.readexactly(length))
                if await self.answer(writer) is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def client(url: str, **options) -> OriginClient:
    return OriginClient(AddressPolicy(), url, **{"connect_timeout": 5.0, "read_timeout": 5.0, **options})


async def answer_ok(writer) -> None:
    writer.write(OK)


async def test_a_post_sends_the_headers_and_body_and_reads_the_answer_on_one_kept_alive_connection():
    async with Peer(answer_ok) as peer:
        http = client(peer.url)
        async with asyncio.timeout(10):
            answers = [await http.post(b'{"n":%d}' % n, {"Content-Type": "application/json", "X-Key": "s3"})
                       for n in range(3)]
        await http.aclose()
    assert answers == [b'{"ok":true}'] * 3
    assert peer.connections == 1
    first = peer.requests[0]
    assert first.startswith(b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-Key: s3\r\n" in first and first.endswith(b'\r\n\r\n{"n":0}')


async def test_an_answer_that_closes_the_connection_is_read_and_the_next_post_opens_another():
    async def answer_and_close(writer):
        writer.write(OK.replace(b"Content-Length", b"Connection: close\r\nContent-Length"))
        return False

    async with Peer(answer_and_close) as peer:
        http = client(peer.url)
        async with asyncio.timeout(10):
            assert await http.post(b"{}", {}) == b'{"ok":true}'
            assert await http.post(b"{}", {}) == b'{"ok":true}'
    assert peer.connections == 2


async def test_a_connection_dropped_before_the_answer_is_a_read_error_and_is_not_reused():
    async def drop(writer):
        return False

    async with Peer(drop) as peer:
        http = client(peer.url)
        async with asyncio.timeout(10):
            with pytest.raises(httpx.ReadError, match="closed the connection before answering"):
                await http.post(b"{}", {})
            with pytest.raises(httpx.ReadError):
                await http.post(b"{}", {})
    assert peer.connections == 2


async def test_a_refused_connection_is_a_connect_error():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with asyncio.timeout(10):
        with pytest.raises(httpx.ConnectError):
            await client(f"http://127.0.0.1:{port}/").post(b"{}", {})


async def test_an_agent_silent_past_the_read_timeout_is_a_read_timeout():
    async def silent(writer):
        await asyncio.Event().wait()

    async with Peer(silent) as peer:
        async with asyncio.timeout(10):
            with pytest.raises(httpx.ReadTimeout):
                await client(peer.url, read_timeout=0.2).post(b"{}", {})


async def test_an_agent_answering_slowly_but_steadily_is_not_cut_by_the_read_timeout():
    body = b"x" * 8

    async def trickle(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for byte in body:
            await writer.drain()
            await asyncio.sleep(0.1)        # sleep-ok: the peer's pace is what is tested (each gap < the timeout)
            writer.write(b"1\r\n" + bytes([byte]) + b"\r\n")
        writer.write(b"0\r\n\r\n")

    async with Peer(trickle) as peer:
        async with asyncio.timeout(10):
            assert await client(peer.url, read_timeout=0.5).post(b"{}", {}) == body


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_an_answer_over_the_cap_is_refused_naming_the_limit(chunked):
    async def large(writer):
        if chunked:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"x" * 1024
                         + b"\r\n" + b"0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + b"x" * 1024)

    async with Peer(large) as peer:
        async with asyncio.timeout(10):
            with pytest.raises(ResponseTooLargeError) as raised:
                await client(peer.url, max_response_bytes=100, limit_setting="the test's cap").post(b"{}", {})
    assert raised.value.limit == 100 and "the test's cap" in str(raised.value)


async def test_an_error_status_is_an_http_status_error_carrying_the_status():
    async def busy(writer):
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")

    async with Peer(busy) as peer:
        async with asyncio.timeout(10):
            with pytest.raises(httpx.HTTPStatusError) as raised:
                await client(peer.url).post(b"{}", {})
    assert raised.value.response.status_code == 503


async def test_an_answer_that_is_not_http_is_a_protocol_error():
    async def garbage(writer):
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")

    async with Peer(garbage) as peer:
        async with asyncio.timeout(10):
            with pytest.raises(httpx.RemoteProtocolError, match="malformed HTTP answer"):
                await client(peer.url).post(b"{}", {})


async def test_a_host_the_policy_refuses_is_never_connected_to():
    async with Peer(answer_ok) as peer:
        http = OriginClient(AddressPolicy(["agents.example.com"]), peer.url, connect_timeout=5.0, read_timeout=5.0)
        async with asyncio.timeout(10):
            with pytest.raises(RefusedURLError, match="not in gateway.allowed_agent_hosts"):
                await http.post(b"{}", {})
    assert peer.connections == 0


async def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent():
    async with Peer(answer_ok) as peer:
        async with asyncio.timeout(10):
            with pytest.raises(httpx.LocalProtocolError, match="line break"):
                await client(peer.url).post(b"{}", {"Authorization": "Bearer x\r\nX-Injected: 1"})
    assert peer.connections == 0
