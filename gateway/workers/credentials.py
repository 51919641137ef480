"""Credentials a bridged agent requires, sent on every call and card fetch to it.

Given at registration (`POST /admin/agents` "credentials", `topicbridge agents register
--token-env`), as one of

    {"type": "bearer", "token_env": "SUMMARISER_TOKEN"}                       Authorization: Bearer <token>
    {"type": "api_key", "token_env": "SUMMARISER_KEY", "header": "X-API-Key"}  X-API-Key: <key>

The secret itself is never stored: the backend table "bridge-credentials" keeps the name of the
environment variable (capability name -> the document above as JSON), and every gateway instance
reads the variable at call time, so a rotated secret needs no re-registration and the admin API
has nothing secret to return. An api_key without "header" takes the header name from the card's
API-key security scheme. A variable unset at call time fails the call with a reason naming it.

OAuth 2.0 client credentials (oauth_client.py fetches and caches the access token):

    {"type": "oauth2_client_credentials", "client_id": "gw", "client_secret_env": "SUMMARISER_SECRET",
     "scopes": ["summarise"], "token_url": "https://issuer/token"}        Authorization: Bearer <access token>

"scopes" is optional (the token endpoint's default), "token_url" defaults to the card's OAuth 2.0
client credentials flow. An agent answering 401 gets one new token and the request once more.

    CredentialsUnavailable(name, token_env)    -- the variable is unset
    └── TokenRequestFailed                     -- the token endpoint gave no token (its URL, OAuth error)
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

import httpx
from a2a.types import a2a_pb2

from adapters.base import Backend
from adapters.errors import InvalidRequestError
from gateway.http.outbound import AddressPolicy

from . import oauth_client

TABLE = "bridge-credentials"
REDACTED = "(not shown)"     # a value that may be a secret, in an error
FIELDS = {"type", "token_env", "header"}
OAUTH = "oauth2_client_credentials"
OAUTH_FIELDS = {"type", "client_id", "client_secret_env", "scopes", "token_url"}
TYPES = ("bearer", "api_key", OAUTH)
MAX_SCOPES = 64
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,256}")      # scope-token, RFC 6749 section 3.3
T = TypeVar("T")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")      # an HTTP token (RFC 9110)


class CredentialsUnavailable(Exception):
    """The environment variable holding an agent's secret is not set on this instance."""

    field = "credentials.token_env"     # what to name in a 400 at registration

    def __init__(self, name: str, token_env: str, message: str | None = None) -> None:
        self.name, self.token_env = name, token_env
        super().__init__(message or f"the credentials of agent {name!r} are read from the environment variable "
                                    f"{token_env!r}, which is not set on this gateway instance")


class TokenRequestFailed(CredentialsUnavailable):
    """The token endpoint gave no access token (refused the client, unreachable, a bad answer)."""

    field = "credentials"

    def __init__(self, name: str, token_env: str, error: oauth_client.TokenRequestError) -> None:
        self.token_url, self.error, self.status = error.token_url, error.error, error.status
        super().__init__(name, token_env, f"no access token for agent {name!r}: {error}")


@dataclass(frozen=True)
class Credentials:
    type: str           # "bearer" | "api_key"
    token_env: str
    header: str = "Authorization"

    async def headers(self, name: str) -> dict[str, str]:
        """The headers to send, read from the environment now (CredentialsUnavailable if unset)."""
        secret = _secret(name, self.token_env)
        return {self.header: f"Bearer {secret}" if self.type == "bearer" else secret}

    def refused(self, sent: dict[str, str]) -> bool:
        """The agent answered 401 to `sent`: whether asking for headers again may help (not for a
        fixed secret)."""
        return False

    def to_dict(self) -> dict:
        """What the table keeps and the admin API shows: the variable's name, never its value."""
        doc = {"type": self.type, "token_env": self.token_env}
        return doc | ({"header": self.header} if self.type == "api_key" else {})


@dataclass(frozen=True)
class OAuthCredentials:
    """OAuth 2.0 client credentials: an access token from `token_url` (oauth_client.py)."""
    client_id: str
    client_secret_env: str
    token_url: str
    scopes: tuple[str, ...] = ()
    policy: AddressPolicy | None = field(default=None, compare=False)   # the token URL is outbound too
    type: str = OAUTH

    @property
    def token_env(self) -> str:
        return self.client_secret_env

    async def headers(self, name: str) -> dict[str, str]:
        """Authorization with a fresh access token (CredentialsUnavailable, TokenRequestFailed)."""
        secret = _secret(name, self.client_secret_env)
        try:
            token = await oauth_client.access_token(self.policy, self.token_url, self.client_id, secret, self.scopes)
        except oauth_client.TokenRequestError as e:
            raise TokenRequestFailed(name, self.client_secret_env, e) from None
        return {"Authorization": f"Bearer {token}"}

    def refused(self, sent: dict[str, str]) -> bool:
        """The agent answered 401 to `sent`: its token is dropped, the next `headers` asks for another."""
        secret = os.environ.get(self.client_secret_env)
        token = sent.get("Authorization", "").removeprefix("Bearer ")
        if secret:
            oauth_client.forget(self.token_url, self.client_id, self.scopes, secret, token)
        return bool(secret)

    def to_dict(self) -> dict:
        return {"type": OAUTH, "client_id": self.client_id, "client_secret_env": self.client_secret_env,
                "token_url": self.token_url, "scopes": list(self.scopes)}


def _secret(name: str, env: str) -> str:
    secret = os.environ.get(env)
    if not secret:
        raise CredentialsUnavailable(name, env)
    return secret


class CredentialsAuth(httpx.Auth):
    """The agent's credentials on every request of an httpx client; after a 401, new ones once."""

    def __init__(self, credentials: Credentials | OAuthCredentials, name: str) -> None:
        self.credentials, self.name = credentials, name

    async def async_auth_flow(self, request: httpx.Request):
        sent = await self.credentials.headers(self.name)
        request.headers.update(sent)
        response = yield request
        if response.status_code == 401 and self.credentials.refused(sent):
            request.headers.update(await self.credentials.headers(self.name))
            yield request


async def send_with(credentials: Credentials | OAuthCredentials, name: str,
                    send: Callable[[dict[str, str]], Awaitable[T]]) -> T:
    """`send(headers)` with the agent's credentials; after a 401 (httpx.HTTPStatusError), new ones once."""
    sent = await credentials.headers(name)
    try:
        return await send(sent)
    except httpx.HTTPStatusError as e:
        if e.response.status_code != 401 or not credentials.refused(sent):
            raise
    return await send(await credentials.headers(name))


def needs_card(doc: object) -> bool:
    """Whether parsing `doc` takes something from the agent's card (fetched without credentials)."""
    return isinstance(doc, dict) and ((doc.get("type") == "api_key" and "header" not in doc)
                                      or (doc.get("type") == OAUTH and "token_url" not in doc))


def parse(doc: object, card: a2a_pb2.AgentCard | None = None,
          policy: AddressPolicy | None = None) -> Credentials | OAuthCredentials:
    """Credentials from the admin API's "credentials" field; InvalidRequestError naming the problem."""
    if not isinstance(doc, dict):
        raise InvalidRequestError("credentials", REDACTED, 'must be an object, e.g. {"type": "bearer", "token_env": "X"}')
    kind = doc.get("type")
    if kind not in TYPES:
        raise InvalidRequestError("credentials.type", kind, f"must be one of {list(TYPES)}")
    expected = OAUTH_FIELDS if kind == OAUTH else FIELDS
    unknown = sorted(set(doc) - expected)
    if unknown:
        hint = "; secrets are not stored: name the environment variable that holds it" \
            if {"token", "value", "key", "secret", "client_secret"} & set(unknown) else ""
        raise InvalidRequestError(f"credentials.{unknown[0]}", REDACTED,
                                  f"unknown field; expected {sorted(expected)}{hint}")
    if kind == OAUTH:
        return _parse_oauth(doc, card, policy)
    env, header = doc.get("token_env"), doc.get("header")
    _check_env("credentials.token_env", env)
    if kind == "bearer":
        if header is not None:
            raise InvalidRequestError("credentials.header", header, "only for api_key (bearer uses Authorization)")
        return Credentials(kind, env)
    header = header if header is not None else _card_api_key_header(card)
    if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
        raise InvalidRequestError("credentials.header", header, "must be an HTTP header name (the card declares "
                                                                "no API-key scheme in a header to take it from)")
    return Credentials(kind, env, header)


def _check_env(field_name: str, env: object) -> None:
    if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
        raise InvalidRequestError(field_name, env, "must name an environment variable "
                                                   "(letters, digits and _, not starting with a digit)")


def _parse_oauth(doc: dict, card: a2a_pb2.AgentCard | None, policy: AddressPolicy | None) -> OAuthCredentials:
    client_id, env, scopes = doc.get("client_id"), doc.get("client_secret_env"), doc.get("scopes", [])
    if not isinstance(client_id, str) or not 0 < len(client_id) <= 256 or not client_id.isprintable():
        raise InvalidRequestError("credentials.client_id", REDACTED if not isinstance(client_id, str) else client_id,
                                  "required: the OAuth client's id (1 to 256 printable characters)")
    _check_env("credentials.client_secret_env", env)
    if not isinstance(scopes, list) or len(scopes) > MAX_SCOPES or \
            not all(isinstance(s, str) and _SCOPE.fullmatch(s) for s in scopes):
        raise InvalidRequestError("credentials.scopes", scopes, f"must be a list of at most {MAX_SCOPES} OAuth "
                                                                "scope tokens (no spaces, quotes or backslashes)")
    token_url = doc.get("token_url", _card_token_url(card))
    if token_url is None:
        raise InvalidRequestError("credentials.token_url", None, "required: the agent's card declares no OAuth 2.0 "
                                                                 "client credentials flow to take it from")
    parsed = urllib.parse.urlsplit(token_url) if isinstance(token_url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.username:
        raise InvalidRequestError("credentials.token_url", token_url, "must be an http(s) URL without user info")
    return OAuthCredentials(client_id, env, token_url, tuple(scopes), policy)


def _card_token_url(card: a2a_pb2.AgentCard | None) -> str | None:
    for scheme in (card.security_schemes.values() if card is not None else ()):
        if scheme.HasField("oauth2_security_scheme"):
            flows = scheme.oauth2_security_scheme.flows
            if flows.HasField("client_credentials") and flows.client_credentials.token_url:
                return flows.client_credentials.token_url
    return None


def _card_api_key_header(card: a2a_pb2.AgentCard | None) -> str | None:
    for scheme in (card.security_schemes.values() if card is not None else ()):
        if scheme.HasField("api_key_security_scheme") and scheme.api_key_security_scheme.location.lower() == "header":
            return scheme.api_key_security_scheme.name
    return None


class CredentialStore:
    """The table of bridged agents' credentials (references to environment variables)."""

    def __init__(self, backend: Backend, policy: AddressPolicy | None = None) -> None:
        self.backend, self.policy = backend, policy     # `policy`: what an OAuth token request may reach
        self._table = None

    async def _rows(self):
        if self._table is None:
            self._table = await self.backend.table(TABLE)
        return self._table

    async def get(self, name: str) -> Credentials | OAuthCredentials | None:
        raw = await (await self._rows()).get(name)
        if not raw:
            return None
        doc = json.loads(raw)
        if doc.get("type") != OAUTH:
            return Credentials(**doc)
        return OAuthCredentials(doc["client_id"], doc["client_secret_env"], doc["token_url"],
                                tuple(doc.get("scopes", ())), self.policy)

    async def put(self, name: str, credentials: Credentials | OAuthCredentials) -> None:
        await (await self._rows()).put(name, json.dumps(credentials.to_dict()).encode())

    async def delete(self, name: str) -> None:
        await (await self._rows()).delete(name)
