"""The one policy for calls the gateway makes on someone else's behalf: agent cards, bridged
agents, push notification receivers.

    OutboundError(target, reason)
    ├── RefusedURLError      -- the URL, or an address its host resolves to, is not allowed
    └── UnreachableError     -- no such host, no address
    ResponseTooLargeError(url, limit)   -- an httpx.DecodingError: a body over the cap

Every connection goes through `GuardedNetworkBackend`: it resolves the host once, checks every
address against the `AddressPolicy` and connects to the address it checked, so a DNS answer
that changes between the check and the connection (rebinding) cannot slip through. TLS still
verifies the certificate against the host name. `guarded_client` builds an httpx client on it,
optionally capping the bytes read from any response (for an event stream, the bytes of one
event), so a remote peer cannot make the gateway buffer an unbounded body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import urllib.parse
from typing import AsyncIterator, Awaitable, Callable, Iterable

import httpcore
import httpx

TIMEOUT = 5.0

# Cloud instance metadata services. Their link-local addresses are refused anyway; these are the
# names and the addresses outside 169.254.0.0/16 and fe80::/10.
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata",
                            "instance-data", "instance-data.ec2.internal", "metadata.azure.internal",
                            "metadata.tencentyun.com"})
_REFUSED_NETWORKS = (
    (ipaddress.ip_network("169.254.0.0/16"), "link-local"),
    (ipaddress.ip_network("fe80::/10"), "link-local"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "cloud metadata (AWS IPv6)"),
    (ipaddress.ip_network("100.100.100.200/32"), "cloud metadata (Alibaba)"),
    (ipaddress.ip_network("240.0.0.0/4"), "reserved (class E)"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], Awaitable[list[str]]]


class OutboundError(Exception):
    def __init__(self, target: str, reason: str) -> None:
        self.target, self.reason = target, reason
        super().__init__(f"{target}: {reason}")

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, "message": str(self), "target": self.target, "reason": self.reason}


class RefusedURLError(OutboundError):
    pass


class UnreachableError(OutboundError):
    pass


class ResponseTooLargeError(httpx.DecodingError):
    """Not a transport error: reading the same answer again would fail the same way."""

    def __init__(self, url: str, limit: int, setting: str = "gateway.max_agent_response_bytes") -> None:
        self.url, self.limit, self.setting = url, limit, setting
        super().__init__(f"the answer from {url[:200]} is larger than {limit} bytes ({setting})")


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal(address: str) -> str | None:
    """Why `address` may never be contacted, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6:
        embedded = ip.ipv4_mapped or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            ip = embedded
    for network, why in _REFUSED_NETWORKS:
        if ip.version == network.version and ip in network:
            return why
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "not a unicast address"
    return None


class AddressPolicy:
    """Which hosts the gateway may contact.

    Link-local, reserved and cloud metadata addresses are always refused. `allowed_hosts`, when
    set, admits only hosts that match an entry: a name (`agents.example.com`), a wildcard for
    subdomains (`*.example.com`), an address or a network (`10.0.0.0/8`, which admits a host
    when every address it resolves to is inside). Unset, any other host is allowed, loopback and
    private networks included. `setting` names where the list came from, for refusals.
    """

    def __init__(self, allowed_hosts: Iterable[str] | None = None, *, resolver: Resolver = system_resolver,
                 resolve_timeout: float = TIMEOUT, setting: str = "gateway.allowed_agent_hosts") -> None:
        self.allowed_hosts = None if allowed_hosts is None else [_normalise(h) for h in allowed_hosts]
        self.setting = setting
        self._networks = [n for n in map(_network, self.allowed_hosts or []) if n is not None]
        self._resolver = resolver
        self._resolve_timeout = resolve_timeout

    @classmethod
    def from_settings(cls, settings: dict, **kwargs) -> "AddressPolicy":
        """The policy for agents (card fetch, bridges)."""
        return cls((settings.get("gateway") or {}).get("allowed_agent_hosts"), **kwargs)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of `host` the gateway may connect to; raises if any is refused."""
        name = _normalise(host)
        if name in METADATA_HOSTS:
            raise RefusedURLError(host, "cloud metadata host")
        addresses = [name] if _is_address(name) else await self._lookup(name, port)
        for address in addresses:
            why = refusal(address)
            if why is not None:
                raise RefusedURLError(host, f"resolves to {address}, a {why} address")
        if self.allowed_hosts is not None and not self._admits(name, addresses):
            raise RefusedURLError(host, f"host is not in {self.setting}")
        return addresses

    async def check_url(self, url: str) -> None:
        """Raises RefusedURLError for a URL that is not absolute http(s) or names a refused host."""
        parsed = parse_http_url(url)
        await self.resolve(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))

    async def _lookup(self, host: str, port: int) -> list[str]:
        try:
            async with asyncio.timeout(self._resolve_timeout):
                addresses = await self._resolver(host, port)
        except (OSError, TimeoutError) as e:
            raise UnreachableError(host, f"cannot resolve host: {e or 'timed out'}") from None
        if not addresses:
            raise UnreachableError(host, "host has no addresses")
        return addresses

    def _admits(self, name: str, addresses: list[str]) -> bool:
        for entry in self.allowed_hosts:
            if name == entry or entry.startswith("*.") and name.endswith(entry[1:]):
                return True
        ips = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
        return bool(self._networks) and all(any(ip in n for n in self._networks) for ip in ips)


def parse_http_url(url: object) -> urllib.parse.ParseResult:
    """`url` parsed, without its fragment; RefusedURLError unless it is an absolute http(s) URL."""
    if not isinstance(url, str) or not url.strip():
        raise RefusedURLError(repr(url), "the URL must be a non-empty string")
    try:
        parsed = urllib.parse.urlparse(url.strip())
        parsed.port
    except ValueError as e:
        raise RefusedURLError(url[:200], f"not a valid URL: {e}") from None
    if parsed.scheme not in ("http", "https"):
        raise RefusedURLError(url[:200], f"scheme must be http or https, got {parsed.scheme!r}")
    if not parsed.hostname:
        raise RefusedURLError(url[:200], "URL has no host")
    return parsed._replace(fragment="")


def _normalise(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry.split("%", 1)[0], strict=False)
    except ValueError:
        return None


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend behind the policy: resolve once, check, connect to that address."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.policy.resolve(host, port)
        except UnreachableError as e:
            raise httpcore.ConnectError(e.reason) from None
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                error = e
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise RefusedURLError(path, "unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_tls: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The one TLS client context of every guarded transport. Loading the CA bundle costs ~10-20
    ms of CPU: a bridge opens a pool per 8 connections of its concurrency, and each transport
    built two contexts, so starting one bridge loaded it 16 times."""
    global _tls
    if _tls is None:
        _tls = httpx.create_ssl_context(trust_env=False)
    return _tls


class GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: AddressPolicy, *, limits: httpx.Limits = httpx.Limits(max_connections=100),
                 max_response_bytes: int | None = None, limit_setting: str = "gateway.max_agent_response_bytes") -> None:
        super().__init__(verify=tls_context(), limits=limits, trust_env=False)
        self.max_response_bytes, self.limit_setting = max_response_bytes, limit_setting
        # httpx has no public hook for the network backend: give it a pool built on ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls_context(), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(policy))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        limit = self.max_response_bytes
        if limit is None:
            return response
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await response.aclose()
            raise ResponseTooLargeError(str(request.url), limit, self.limit_setting)
        events = response.headers.get("content-type", "").startswith("text/event-stream")
        response.stream = _CappedStream(response.stream, str(request.url), limit, self.limit_setting,
                                        per_event=events)
        return response


class _CappedStream(httpx.AsyncByteStream):
    """Raises ResponseTooLargeError once more than `limit` bytes came (since the last blank line
    of an event stream, so a long stream of small events lives on)."""

    def __init__(self, inner: httpx.AsyncByteStream, url: str, limit: int, setting: str, *, per_event: bool) -> None:
        self._inner, self._url, self._limit, self._setting, self._per_event = inner, url, limit, setting, per_event

    async def __aiter__(self) -> AsyncIterator[bytes]:
        count = 0
        async for chunk in self._inner:
            count += len(chunk)
            if self._per_event:
                end = max(chunk.rfind(b"\n\n"), chunk.rfind(b"\r\n\r\n"))
                if end >= 0:
                    count = len(chunk) - end
            if count > self._limit:
                raise ResponseTooLargeError(self._url, self._limit, self._setting)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(policy: AddressPolicy, *, timeout: httpx.Timeout | float = TIMEOUT,
                   limits: httpx.Limits = httpx.Limits(max_connections=100), max_response_bytes: int | None = None,
                   limit_setting: str = "gateway.max_agent_response_bytes", **kwargs) -> httpx.AsyncClient:
    """An httpx client that only reaches what `policy` allows (environment proxies are ignored)
    and, given `max_response_bytes`, reads no more than that from one answer (`limit_setting`
    names where that limit comes from, in the error)."""
    transport = GuardedTransport(policy, limits=limits, max_response_bytes=max_response_bytes,
                                 limit_setting=limit_setting)
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False, **kwargs)
