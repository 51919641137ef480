"""Fetch an agent's card by URL without turning the gateway into an open proxy.

    CardError(target, reason)
    ├── RefusedURLError    -- the URL, or an address its host resolves to, is not allowed
    ├── UnreachableError   -- no such host, connection refused, timeout, 5xx
    └── InvalidCardError   -- 4xx, not JSON, too large, not an AgentCard

Every connection goes through `GuardedNetworkBackend`: it resolves the host once, checks every
address against the `AddressPolicy` and connects to the address it checked, so a DNS answer
that changes between the check and the connection (rebinding) cannot slip through. TLS still
verifies the certificate against the host name. The bridges use the same guarded client, so a
card cannot point them at an address its URL could not reach.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable

import httpcore
import httpx
from a2a.types import a2a_pb2
from a2a.utils.constants import TransportProtocol
from a2a.utils.proto_utils import warn_on_missing_required_fields
from google.protobuf import json_format

log = logging.getLogger("topicbridge.cardfetch")

WELL_KNOWN_PATH = "/.well-known/agent-card.json"
MAX_CARD_BYTES = 256 * 1024
TIMEOUT = 5.0
BRIDGEABLE = (TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON)

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
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], Awaitable[list[str]]]


class CardError(Exception):
    def __init__(self, target: str, reason: str) -> None:
        self.target, self.reason = target, reason
        super().__init__(f"{target}: {reason}")

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, "message": str(self), "target": self.target, "reason": self.reason}


class RefusedURLError(CardError):
    pass


class UnreachableError(CardError):
    pass


class InvalidCardError(CardError):
    pass


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
        if ip in network:
            return why
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "not a unicast address"
    return None


class AddressPolicy:
    """Which hosts the gateway may contact on an agent's behalf.

    Link-local and cloud metadata addresses are always refused. `allowed_hosts` (the setting
    `gateway.allowed_agent_hosts`), when set, admits only hosts that match an entry: a name
    (`agents.example.com`), a wildcard for subdomains (`*.example.com`), an address or a network
    (`10.0.0.0/8`, which admits a host when every address it resolves to is inside). Unset, any
    other host is allowed, loopback and private networks included.
    """

    def __init__(self, allowed_hosts: Iterable[str] | None = None, *, resolver: Resolver = system_resolver,
                 resolve_timeout: float = TIMEOUT) -> None:
        self.allowed_hosts = None if allowed_hosts is None else [_normalise(h) for h in allowed_hosts]
        self._networks = [n for n in map(_network, self.allowed_hosts or []) if n is not None]
        self._resolver = resolver
        self._resolve_timeout = resolve_timeout

    @classmethod
    def from_settings(cls, settings: dict, **kwargs) -> "AddressPolicy":
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
            raise RefusedURLError(host, "host is not in gateway.allowed_agent_hosts")
        return addresses

    async def check_url(self, url: str) -> None:
        parsed = _parse_url(url)
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


class GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: AddressPolicy, *, limits: httpx.Limits = httpx.Limits(max_connections=100)) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx has no public hook for the network backend: give it a pool built on ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(policy))


def guarded_client(policy: AddressPolicy, *, timeout: httpx.Timeout | float = TIMEOUT, **kwargs) -> httpx.AsyncClient:
    """An httpx client that only reaches what `policy` allows (environment proxies are ignored)."""
    return httpx.AsyncClient(transport=GuardedTransport(policy), timeout=timeout, trust_env=False, **kwargs)


# ---------------------------------------------------------------- fetching


@dataclass(frozen=True)
class FetchedCard:
    url: str                        # where the card was read
    card: a2a_pb2.AgentCard         # A2A 1.0, also when the agent serves a 0.3 card
    legacy: bool                    # the agent served a 0.3 card

    def to_dict(self) -> dict:
        return json_format.MessageToDict(self.card)


def card_location(url: object) -> str:
    """The card's URL: `url` itself when it names a .json document, else its well-known path."""
    parsed = _parse_url(url)
    if parsed.path.endswith(".json"):
        return parsed.geturl()
    return parsed._replace(path=parsed.path.rstrip("/") + WELL_KNOWN_PATH).geturl()


def _parse_url(url: object) -> urllib.parse.ParseResult:
    if not isinstance(url, str) or not url.strip():
        raise InvalidCardError(repr(url), "card_url must be a non-empty string")
    try:
        parsed = urllib.parse.urlparse(url.strip())
        parsed.port
    except ValueError as e:
        raise InvalidCardError(url, f"not a valid URL: {e}") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidCardError(url, f"scheme must be http or https, got {parsed.scheme!r}")
    if not parsed.hostname:
        raise InvalidCardError(url, "URL has no host")
    return parsed._replace(fragment="")


async def fetch_card(url: str, policy: AddressPolicy, *, timeout: float = TIMEOUT,
                     max_bytes: int = MAX_CARD_BYTES) -> FetchedCard:
    """Fetch, parse and check the card at `url` (a card URL or the agent's base URL)."""
    target = card_location(url)
    await policy.check_url(target)          # early and clear; every connection is checked again
    async with guarded_client(policy, timeout=timeout, follow_redirects=True, max_redirects=3) as http:
        body = await _download(http, target, timeout, max_bytes)
    card, legacy = parse_card(_json(target, body), target)
    for interface in bridgeable_interfaces(card):
        await policy.check_url(interface.url)
    return FetchedCard(target, card, legacy)


async def _download(http: httpx.AsyncClient, target: str, timeout: float, max_bytes: int) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            async with http.stream("GET", target, headers={"Accept": "application/json"}) as response:
                _check_response(target, response, max_bytes)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise InvalidCardError(target, f"card is larger than {max_bytes} bytes")
                return bytes(body)
    except (TimeoutError, httpx.TimeoutException):
        raise UnreachableError(target, f"no answer within {timeout:g}s") from None
    except httpx.TooManyRedirects:
        raise InvalidCardError(target, "too many redirects") from None
    except httpx.HTTPError as e:
        raise UnreachableError(target, f"{type(e).__name__}: {e}") from None
    except ValueError as e:             # httpx's own URL parsing (e.g. an octal-looking host)
        raise InvalidCardError(target, f"not a valid URL: {e}") from None


def _check_response(target: str, response: httpx.Response, max_bytes: int) -> None:
    if response.status_code >= 500:
        raise UnreachableError(target, f"HTTP {response.status_code} from the agent")
    if response.status_code != 200:
        raise InvalidCardError(target, f"HTTP {response.status_code}: no agent card here")
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise InvalidCardError(target, f"content-type {media or '(none)'!r} is not JSON")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise InvalidCardError(target, f"card is {declared} bytes, the limit is {max_bytes}")


def _json(target: str, body: bytes) -> object:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidCardError(target, f"not JSON: {e}") from None
    except RecursionError:
        raise InvalidCardError(target, "not JSON: nested too deeply") from None


def parse_card(doc: object, target: str = "card") -> tuple[a2a_pb2.AgentCard, bool]:
    """An A2A 1.0 AgentCard from ProtoJSON, or from a 0.3 card through the SDK's conversion."""
    if not isinstance(doc, dict):
        raise InvalidCardError(target, f"card must be a JSON object, got {type(doc).__name__}")
    legacy = "supportedInterfaces" not in doc and "url" in doc
    if legacy:
        card = _parse_legacy(doc, target)
    elif "supportedInterfaces" in doc:
        try:
            card = json_format.ParseDict(doc, a2a_pb2.AgentCard(), ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError) as e:
            raise InvalidCardError(target, f"not an AgentCard: {e}") from None
    else:
        raise InvalidCardError(target, "not an AgentCard: neither supportedInterfaces (A2A 1.0) nor url (A2A 0.3)")
    if not card.name.strip():
        raise InvalidCardError(target, "not an AgentCard: name is empty")
    if not bridgeable_interfaces(card):
        raise InvalidCardError(target, "card has no JSONRPC or HTTP+JSON interface with an http(s) URL")
    warn_on_missing_required_fields(card, f"card at {target}:")
    return card, legacy


def _parse_legacy(doc: dict, target: str) -> a2a_pb2.AgentCard:
    from pydantic import ValidationError

    from a2a.compat.v0_3 import conversions, types as v03
    try:
        return conversions.to_core_agent_card(v03.AgentCard.model_validate(doc))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}" for err in e.errors()[:5])
        raise InvalidCardError(target, f"not an A2A 0.3 AgentCard: {problems}") from None
    except Exception as e:     # a valid 0.3 card the SDK cannot convert
        raise InvalidCardError(target, f"cannot convert the A2A 0.3 card: {type(e).__name__}: {e}") from None


def bridgeable_interfaces(card: a2a_pb2.AgentCard) -> list[a2a_pb2.AgentInterface]:
    """The interfaces a bridge can use: JSON-RPC or HTTP+JSON at a well-formed http(s) URL."""
    return [i for i in card.supported_interfaces if i.protocol_binding in BRIDGEABLE and _is_http_url(i.url)]


def _is_http_url(url: str) -> bool:
    try:
        _parse_url(url)
    except InvalidCardError:
        return False
    return True
