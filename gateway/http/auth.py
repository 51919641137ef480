"""Who is calling: static bearer tokens and OAuth 2.1 access tokens (JWT), one `Principal` each.

    Authenticator.authenticate("Bearer …") -> Principal     raises AuthError (401) when missing/invalid

Two models, either or both (settings `gateway.bearer_tokens`, `gateway.oauth`):

- A static token is a full-access principal (admin, every capability) named by a digest of the
  token, `token:<sha256[:32]>`: the token itself is never stored or logged.
- A JWT is validated as an OAuth 2.1 resource server does (RFC 9068 profile, RFC 8725 practice):
  signature by a key of the issuer's JWKS (asymmetric algorithms only), `iss`, `aud`, `exp`
  (and `nbf`, `iat`) within `leeway_seconds`. Scopes (`scope`, space separated, or `scp`, a
  list) map to rights: `admin_scope` is the admin API, `agents_scope` every capability,
  `<agent_scope_prefix><name>` one capability. The principal is `jwt:<iss>|<sub or client_id>`.

The JWKS is fetched through the one outbound policy (outbound.guarded_client) and cached for
`jwks_cache_seconds`; a token signed by a key id the cache does not know refetches it at once
(key rotation), at most once every `jwks_min_refresh_seconds`, so a stream of forged key ids
cannot turn the gateway into a JWKS flooder. Library: PyJWT (well kept, already in the tree via
mcp; its `PyJWK` parses every JWK type `cryptography` supports). Its own `PyJWKClient` fetches
with urllib, outside the outbound policy, so only the key parsing and verification are used.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field

import jwt

from .outbound import AddressPolicy, guarded_client

log = logging.getLogger("topicbridge.auth")

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
SURFACES = ("agents", "admin", "mcp")


@dataclass(frozen=True)
class Principal:
    id: str                                         # "" for the anonymous caller of an open surface
    admin: bool = False
    capabilities: frozenset[str] | None = None      # None: every capability
    scopes: frozenset[str] = frozenset()

    def may_use(self, capability: str) -> bool:
        return self.capabilities is None or capability in self.capabilities


ANONYMOUS = Principal("", admin=True)       # where no authentication is configured (or a surface is open)


class AuthError(Exception):
    """401: no credentials (`error` "") or bad ones ("invalid_token", with why)."""

    def __init__(self, error: str, description: str) -> None:
        self.error, self.description = error, description
        super().__init__(description)

    def challenge(self, extra: str = "") -> str:
        value = 'Bearer realm="topicbridge"' + (f", {extra}" if extra else "")
        if self.error:
            value += f', error="{self.error}", error_description="{self.description}"'
        return value


@dataclass
class OAuthSettings:
    issuer: str
    audience: str
    jwks_url: str = ""          # default: <issuer>/.well-known/jwks.json
    admin_scope: str = "topicbridge:admin"
    agents_scope: str = "topicbridge:agents"
    agent_scope_prefix: str = "topicbridge:agent:"
    leeway_seconds: float = 30.0
    jwks_cache_seconds: float = 300.0
    jwks_min_refresh_seconds: float = 30.0
    algorithms: tuple[str, ...] = ALGORITHMS

    @classmethod
    def from_settings(cls, settings: dict) -> "OAuthSettings | None":
        oauth = dict((settings.get("gateway") or {}).get("oauth") or {})
        if not oauth.get("issuer"):
            return None
        if not oauth.get("audience"):
            raise ValueError("gateway.oauth.audience is required with gateway.oauth.issuer")
        known = {k: v for k, v in oauth.items() if k in cls.__dataclass_fields__ and v is not None}
        if "algorithms" in known:
            known["algorithms"] = tuple(a for a in known["algorithms"] if a in ALGORITHMS)
        return cls(**known)

    @property
    def jwks(self) -> str:
        return self.jwks_url or self.issuer.rstrip("/") + "/.well-known/jwks.json"


class Jwks:
    """The issuer's signing keys by key id, fetched through the outbound policy and cached."""

    def __init__(self, settings: OAuthSettings, policy: AddressPolicy | None = None) -> None:
        self.settings = settings
        self.policy = policy or AddressPolicy(None, setting="gateway.oauth.jwks_url")
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0         # monotonic time of the last fetch attempt (0: never)
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        stale = now - self._fetched > self.settings.jwks_cache_seconds
        if stale or (self._find(kid) is None and now - self._fetched > self.settings.jwks_min_refresh_seconds):
            await self._refresh(now)
        found = self._find(kid)
        if found is None:
            raise AuthError("invalid_token", "the token's signing key is not in the issuer's key set")
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:     # a key set of one key may be used without naming it
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self, started: float) -> None:
        async with self._lock:
            if self._fetched > started:         # another caller fetched meanwhile
                return
            self._fetched = time.monotonic()
            self.fetches += 1
            try:
                async with guarded_client(self.policy, max_response_bytes=1024 * 1024) as http:
                    response = await http.get(self.settings.jwks)
                    response.raise_for_status()
                    doc = response.json()
            except Exception as e:       # httpx, OutboundError, a body that is not JSON: keep the keys we have
                log.warning("fetching the JWKS %s failed: %s", self.settings.jwks, type(e).__name__)
                return
            keys = {}
            for entry in doc.get("keys", []) if isinstance(doc, dict) else []:
                try:
                    key = jwt.PyJWK(entry)
                except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError):
                    continue        # a key type or algorithm this gateway does not verify
                if entry.get("use", "sig") == "sig":
                    keys[str(entry.get("kid", ""))] = key
            self._keys = keys


@dataclass
class Authenticator:
    tokens: list[str] = field(default_factory=list)
    oauth: OAuthSettings | None = None
    jwks: Jwks | None = None

    def __post_init__(self) -> None:
        self._tokens = [t.encode() for t in self.tokens]
        if self.oauth is not None and self.jwks is None:
            self.jwks = Jwks(self.oauth)

    @classmethod
    def from_settings(cls, settings: dict, tokens: list[str] | None = None) -> "Authenticator":
        if tokens is None:
            tokens = token_list((settings.get("gateway") or {}).get("bearer_tokens"))
        return cls(tokens, OAuthSettings.from_settings(settings))

    @property
    def enabled(self) -> bool:
        return bool(self._tokens) or self.oauth is not None

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("", "a bearer token is required")
        given = token.encode()
        # Compare against every token, so the time taken does not tell which one came close.
        if sum(hmac.compare_digest(given, t) for t in self._tokens) > 0:
            return Principal("token:" + hashlib.sha256(given).hexdigest()[:32], admin=True)
        if self.oauth is None or token.count(".") != 2:
            raise AuthError("invalid_token", "the access token is not valid")
        return await self._jwt(token)

    async def _jwt(self, token: str) -> Principal:
        oauth = self.oauth
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in oauth.algorithms:
                raise AuthError("invalid_token", "the token's algorithm is not accepted")
            key = await self.jwks.key(header.get("kid"))
            claims = jwt.decode(token, key, algorithms=list(oauth.algorithms), audience=oauth.audience,
                                issuer=oauth.issuer, leeway=oauth.leeway_seconds,
                                options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("invalid_token", "the access token has expired") from None
        except jwt.InvalidTokenError as e:
            raise AuthError("invalid_token", f"the access token is not valid ({type(e).__name__})") from None
        return self._principal(claims)

    def _principal(self, claims: dict) -> Principal:
        oauth = self.oauth
        raw = claims.get("scope", claims.get("scp", ""))
        scopes = frozenset(raw.split() if isinstance(raw, str) else [str(s) for s in raw if isinstance(s, str)]
                           if isinstance(raw, list) else [])
        subject = claims.get("sub") or claims.get("client_id") or claims.get("azp") or ""
        if not isinstance(subject, str) or not subject:
            raise AuthError("invalid_token", "the access token names no subject or client")
        capabilities = None if oauth.agents_scope in scopes else frozenset(
            s[len(oauth.agent_scope_prefix):] for s in scopes if s.startswith(oauth.agent_scope_prefix))
        return Principal(f"jwt:{claims['iss']}|{subject}", admin=oauth.admin_scope in scopes,
                         capabilities=capabilities, scopes=scopes)


def token_list(value) -> list[str]:
    """Tokens from TOML (a list) or an environment variable (a comma-separated string)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


def open_surfaces(settings: dict) -> frozenset[str]:
    """Surfaces explicitly left without authentication (`gateway.open_surfaces`)."""
    value = (settings.get("gateway") or {}).get("open_surfaces") or []
    if isinstance(value, str):
        value = value.split(",")
    return frozenset(v.strip() for v in value if v.strip() in SURFACES)


def unprotected_surfaces(settings: dict) -> list[str]:
    """The surfaces a caller reaches without credentials under `settings` (cli.py refuses a
    non-loopback listener while any is)."""
    gateway = settings.get("gateway") or {}
    if not (token_list(gateway.get("bearer_tokens")) or (gateway.get("oauth") or {}).get("issuer")):
        mcp_only = token_list(gateway.get("mcp_bearer_tokens"))
        return [s for s in SURFACES if not (s == "mcp" and mcp_only)]
    return sorted(open_surfaces(settings))
