"""OAuth 2.0 client credentials (RFC 6749 section 4.4): the access token a bridged agent requires.

    CredentialsUnavailable (credentials.py)
    └── TokenRequestFailed(token_url, client_id, error, status)  -- no token from the token endpoint

One POST of `grant_type=client_credentials` (and `scope`), the client authenticated with HTTP
Basic (section 2.3.1: id and secret form-encoded first), through the gateway's guarded outbound
client: the token URL is an outbound address like any other. Tokens are kept in a small
process-wide cache keyed by (token URL, client, scopes, a digest of the secret), so the
registration, every bridge call and every card refresh on this instance share one token, and
a rotated secret gets a new one. A token is used until shortly before its `expires_in`.

Written on httpx rather than with authlib: the request is ~30 lines, authlib would be a new
dependency that still has to be handed the guarded transport, and its per-client token store
would not be shared across a bridge's connection pools and the card fetch.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.parse
from dataclasses import dataclass

import httpx

from gateway.http.outbound import AddressPolicy, OutboundError, guarded_client

TIMEOUT = 10.0
LIFETIME = 300.0        # seconds a token without expires_in is used before asking again
MARGIN = 30.0           # renew this long before expiry (at most a tenth of a short lifetime)
MAX_ANSWER = 64 * 1024  # bytes read from the token endpoint
MAX_CACHED = 1024
clock = time.monotonic  # replaced by the tests to make a token expire

_tokens: dict[tuple, "Token"] = {}
_fetching: dict[tuple, asyncio.Future] = {}     # one request in flight per key, shared by its callers


@dataclass(frozen=True)
class Token:
    value: str
    renew_at: float     # clock() time after which it is not used again


class TokenRequestError(Exception):
    """Raised here, wrapped by credentials.py into a TokenRequestFailed naming the agent."""

    def __init__(self, token_url: str, client_id: str, error: str, status: int | None, detail: str) -> None:
        self.token_url, self.client_id, self.error, self.status, self.detail = token_url, client_id, error, status, detail
        answered = f"answered HTTP {status} {error}" if status is not None else f"failed: {error}"
        super().__init__(f"the token endpoint {token_url} {answered} for client {client_id!r}"
                         + (f" ({detail})" if detail else ""))


def _key(token_url: str, client_id: str, scopes: tuple[str, ...], secret: str) -> tuple:
    return token_url, client_id, scopes, hashlib.sha256(secret.encode()).hexdigest()


async def access_token(policy: AddressPolicy, token_url: str, client_id: str, secret: str,
                       scopes: tuple[str, ...]) -> str:
    """A token for the client, from the cache while it is fresh, else from the token endpoint
    (concurrent callers wait on the same request); TokenRequestError if none is given."""
    key = _key(token_url, client_id, scopes, secret)
    token = _tokens.get(key)
    if token is not None and clock() < token.renew_at:
        return token.value
    pending = _fetching.get(key)
    if pending is None:
        pending = _fetching[key] = asyncio.ensure_future(_request(policy, token_url, client_id, secret, scopes))
        pending.add_done_callback(lambda _: _fetching.pop(key, None))
    token = await asyncio.shield(pending)
    if len(_tokens) >= MAX_CACHED:
        _tokens.pop(next(iter(_tokens)))
    _tokens[key] = token
    return token.value


def forget(token_url: str, client_id: str, scopes: tuple[str, ...], secret: str, value: str) -> None:
    """Drop the cached token if it is still `value` (an agent refused it; another call may have
    replaced it already)."""
    key = _key(token_url, client_id, scopes, secret)
    token = _tokens.get(key)
    if token is not None and token.value == value:
        del _tokens[key]


async def _request(policy: AddressPolicy, token_url: str, client_id: str, secret: str,
                   scopes: tuple[str, ...]) -> Token:
    form = {"grant_type": "client_credentials", **({"scope": " ".join(scopes)} if scopes else {})}
    basic = (_form_encode(client_id), _form_encode(secret))
    started = clock()
    try:
        async with guarded_client(policy, timeout=TIMEOUT, max_response_bytes=MAX_ANSWER,
                                  limit_setting="the token endpoint's answer") as http:
            response = await http.post(token_url, data=form, auth=basic, headers={"Accept": "application/json"})
    except OutboundError as e:
        raise TokenRequestError(token_url, client_id, "address refused", None, e.reason) from None
    except httpx.HTTPError as e:
        raise TokenRequestError(token_url, client_id, type(e).__name__, None, str(e)[:200]) from None
    return _token(response, token_url, client_id, secret, started)


def _token(response: httpx.Response, token_url: str, client_id: str, secret: str, started: float) -> Token:
    """The token in a section 5.1 answer; TokenRequestError for a section 5.2 error or anything else."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    if response.status_code != 200:
        error = doc.get("error") if isinstance(doc.get("error"), str) else "no OAuth error code"
        detail = doc.get("error_description") if isinstance(doc.get("error_description"), str) else ""
        raise TokenRequestError(token_url, client_id, error[:64], response.status_code,
                                detail[:200].replace(secret, "(not shown)"))
    value, kind, expires = doc.get("access_token"), doc.get("token_type"), doc.get("expires_in")
    if not isinstance(value, str) or not value or not isinstance(kind, str) or kind.lower() != "bearer":
        raise TokenRequestError(token_url, client_id, "invalid token response", 200,
                                "expected access_token and token_type Bearer (RFC 6749 section 5.1)")
    lifetime = float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else LIFETIME
    return Token(value, started + lifetime - min(MARGIN, max(lifetime, 0) / 10))


def _form_encode(value: str) -> str:
    return urllib.parse.quote_plus(value, safe="")
