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
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from a2a.types import a2a_pb2

from adapters.base import Backend
from adapters.errors import InvalidRequestError

TABLE = "bridge-credentials"
REDACTED = "(not shown)"     # a value that may be a secret, in an error
FIELDS = {"type", "token_env", "header"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")      # an HTTP token (RFC 9110)


class CredentialsUnavailable(Exception):
    """The environment variable holding an agent's secret is not set on this instance."""

    def __init__(self, name: str, token_env: str) -> None:
        self.name, self.token_env = name, token_env
        super().__init__(f"the credentials of agent {name!r} are read from the environment variable "
                         f"{token_env!r}, which is not set on this gateway instance")


@dataclass(frozen=True)
class Credentials:
    type: str           # "bearer" | "api_key"
    token_env: str
    header: str = "Authorization"

    def headers(self, name: str) -> dict[str, str]:
        """The headers to send, read from the environment now (CredentialsUnavailable if unset)."""
        secret = os.environ.get(self.token_env)
        if not secret:
            raise CredentialsUnavailable(name, self.token_env)
        return {self.header: f"Bearer {secret}" if self.type == "bearer" else secret}

    def to_dict(self) -> dict:
        """What the table keeps and the admin API shows: the variable's name, never its value."""
        doc = {"type": self.type, "token_env": self.token_env}
        return doc | ({"header": self.header} if self.type == "api_key" else {})


def parse(doc: object, card: a2a_pb2.AgentCard | None = None) -> Credentials:
    """Credentials from the admin API's "credentials" field; InvalidRequestError naming the problem."""
    if not isinstance(doc, dict):
        raise InvalidRequestError("credentials", REDACTED, 'must be an object, e.g. {"type": "bearer", "token_env": "X"}')
    unknown = sorted(set(doc) - FIELDS)
    if unknown:
        hint = "; secrets are not stored: name the environment variable that holds it in token_env" \
            if {"token", "value", "key", "secret"} & set(unknown) else ""
        raise InvalidRequestError(f"credentials.{unknown[0]}", REDACTED,
                                  f"unknown field; expected {sorted(FIELDS)}{hint}")
    kind, env, header = doc.get("type"), doc.get("token_env"), doc.get("header")
    if kind not in ("bearer", "api_key"):
        raise InvalidRequestError("credentials.type", kind, 'must be "bearer" or "api_key"')
    if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
        raise InvalidRequestError("credentials.token_env", env, "must name an environment variable "
                                                                "(letters, digits and _, not starting with a digit)")
    if kind == "bearer":
        if header is not None:
            raise InvalidRequestError("credentials.header", header, "only for api_key (bearer uses Authorization)")
        return Credentials(kind, env)
    header = header if header is not None else _card_api_key_header(card)
    if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
        raise InvalidRequestError("credentials.header", header, "must be an HTTP header name (the card declares "
                                                                "no API-key scheme in a header to take it from)")
    return Credentials(kind, env, header)


def _card_api_key_header(card: a2a_pb2.AgentCard | None) -> str | None:
    for scheme in (card.security_schemes.values() if card is not None else ()):
        if scheme.HasField("api_key_security_scheme") and scheme.api_key_security_scheme.location.lower() == "header":
            return scheme.api_key_security_scheme.name
    return None


class CredentialStore:
    """The table of bridged agents' credentials (references to environment variables)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._table = None

    async def _rows(self):
        if self._table is None:
            self._table = await self.backend.table(TABLE)
        return self._table

    async def get(self, name: str) -> Credentials | None:
        raw = await (await self._rows()).get(name)
        return None if not raw else Credentials(**json.loads(raw))

    async def put(self, name: str, credentials: Credentials) -> None:
        await (await self._rows()).put(name, json.dumps(credentials.to_dict()).encode())

    async def delete(self, name: str) -> None:
        await (await self._rows()).delete(name)
