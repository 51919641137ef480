"""Fetch an agent's card by URL without turning the gateway into an open proxy.

    CardError(target, reason)       -- gateway.http.outbound.OutboundError
    ├── RefusedURLError    -- the URL, or an address its host resolves to, is not allowed
    ├── UnreachableError   -- no such host, connection refused, timeout, 5xx
    └── InvalidCardError   -- 4xx, not JSON, too large, not an AgentCard

Every connection goes through the outbound policy (`gateway.http.outbound`), the one the bridges
use too, so a card cannot point them at an address its URL could not reach.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from dataclasses import dataclass

import httpx
from a2a.types import a2a_pb2
from a2a.utils.constants import TransportProtocol
from a2a.utils.proto_utils import warn_on_missing_required_fields
from google.protobuf import json_format

from gateway.http.outbound import AddressPolicy, RefusedURLError, UnreachableError, guarded_client, parse_http_url
from gateway.http.outbound import OutboundError as CardError

__all__ = ["AddressPolicy", "CardError", "FetchedCard", "InvalidCardError", "RefusedURLError", "UnreachableError",
           "bridgeable_interfaces", "card_location", "fetch_card", "parse_card"]

log = logging.getLogger("topicbridge.cardfetch")

WELL_KNOWN_PATH = "/.well-known/agent-card.json"
MAX_CARD_BYTES = 256 * 1024
TIMEOUT = 5.0
BRIDGEABLE = (TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON)


class InvalidCardError(CardError):
    pass


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
    # The outbound policy's parse; a malformed card URL is a bad card, not a refused address.
    try:
        return parse_http_url(url)
    except RefusedURLError as e:
        raise InvalidCardError(e.target, e.reason) from None


async def fetch_card(url: str, policy: AddressPolicy, *, timeout: float = TIMEOUT,
                     max_bytes: int = MAX_CARD_BYTES, headers: dict[str, str] | None = None) -> FetchedCard:
    """Fetch, parse and check the card at `url` (a card URL or the agent's base URL); `headers`
    (an agent's credentials) go with the request, and then a redirect is not followed."""
    target = card_location(url)
    await policy.check_url(target)          # early and clear; every connection is checked again
    # credentials never follow a redirect (httpx drops Authorization across hosts, not an API-key header)
    async with guarded_client(policy, timeout=timeout, follow_redirects=not headers, max_redirects=3) as http:
        body = await _download(http, target, timeout, max_bytes, headers or {})
    card, legacy = parse_card(_json(target, body), target)
    for interface in bridgeable_interfaces(card):
        await policy.check_url(interface.url)
    return FetchedCard(target, card, legacy)


async def _download(http: httpx.AsyncClient, target: str, timeout: float, max_bytes: int,
                    headers: dict[str, str]) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            async with http.stream("GET", target, headers={"Accept": "application/json", **headers}) as response:
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
