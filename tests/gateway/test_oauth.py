"""The gateway as an OAuth 2.1 resource server: JWTs signed by keys of a real JWKS endpoint (a
Starlette app on a free port), checked for issuer, audience, expiry and signature; scopes mapped
to capabilities and admin; key rotation; /mcp and the A2A routes alike; RFC 9728 metadata and
the cards' security declarations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.http.auth import unprotected_surfaces

from .serving import running_app, running_gateway

ISSUER = "https://issuer.test"
AUDIENCE = "topicbridge-gw"
V1 = {"A2A-Version": "1.0"}
SEND = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
        "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}


class Issuer:
    """Signing keys and the JWKS document its endpoint serves (mutable: rotation)."""

    def __init__(self) -> None:
        self.keys: dict[str, object] = {}
        self.served: list[str] = []         # key ids in the JWKS
        self.requests = 0
        self.add("k1")

    def add(self, kid: str, *, curve: bool = False) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1()) if curve else \
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.served.append(kid)

    def jwks(self) -> dict:
        keys = []
        for kid in self.served:
            key = self.keys[kid]
            algorithm = ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
            keys.append({**algorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"})
        return {"keys": keys}

    def token(self, *, kid: str = "k1", scope: str = "topicbridge:agents", sub: str = "alice", **claims) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300, "scope": scope, **claims}
        key = self.keys[kid]
        alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
async def issuer():
    keys = Issuer()

    async def jwks(request):
        keys.requests += 1
        return JSONResponse(keys.jwks())

    async with running_app(Starlette(routes=[Route("/jwks.json", jwks)])) as server:
        keys.url = f"{server.base_url}/jwks.json"
        yield keys


@pytest.fixture
async def gw(tmp_path, issuer):
    oauth = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": issuer.url, "jwks_min_refresh_seconds": 0}
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                                "gateway": {"demo": True, "oauth": oauth}}) as gw:
        yield gw


def bearer(token: str) -> dict:
    return V1 | {"Authorization": f"Bearer {token}"}


async def test_a_valid_access_token_calls_an_agent(gw, issuer):
    sent = await gw.http.post("/agents/echo/", json=SEND, headers=bearer(issuer.token()))
    assert sent.status_code == 200 and "result" in sent.json(), sent.text


@pytest.mark.parametrize("claims, why", [
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"aud": "someone-else"}, "InvalidAudience"),
    ({"iss": "https://evil.test"}, "InvalidIssuer"),
])
async def test_a_token_with_wrong_claims_is_401_invalid_token(gw, issuer, claims, why):
    answer = await gw.http.post("/agents/echo/", json=SEND, headers=bearer(issuer.token(**claims)))
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge and why in challenge and "resource_metadata=" in challenge


async def test_forged_tokens_are_refused(gw, issuer):
    stranger = Issuer()          # same key id, a key the issuer never published
    public_pem = issuer.keys["k1"].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 300,
              "scope": "topicbridge:admin"}
    for token in (stranger.token(scope="topicbridge:admin"), _hs256(claims, public_pem), _none_alg(claims),
                  "not.a.jwt", "a" * 5000):
        answer = await gw.http.get("/admin/agents", headers=bearer(token))
        assert answer.status_code == 401, token[:40]


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _hs256(claims: dict, secret: bytes) -> str:
    """An HS256 token keyed with the RSA public key (the algorithm-confusion attack)."""
    signing = _b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode()) + b"." + _b64(json.dumps(claims).encode())
    return (signing + b"." + _b64(hmac.new(secret, signing, hashlib.sha256).digest())).decode()


def _none_alg(claims: dict) -> str:
    return (_b64(json.dumps({"alg": "none", "kid": "k1"}).encode()) + b"." + _b64(json.dumps(claims).encode())
            + b".").decode()


async def test_scopes_grant_one_capability_and_admin(gw, issuer):
    echo_only = issuer.token(scope="topicbridge:agent:echo")
    assert (await gw.http.post("/agents/echo/", json=SEND, headers=bearer(echo_only))).status_code == 200
    other = await gw.http.post("/agents/word-stats/", json=SEND, headers=bearer(echo_only))
    assert other.status_code == 403
    tenant = await gw.http.post("/agents/", json={**SEND, "params": {**SEND["params"], "tenant": "word-stats"}},
                                headers=bearer(echo_only))
    assert "error" in tenant.json() and "word-stats" in tenant.json()["error"]["message"]
    assert (await gw.http.get("/admin/agents", headers=bearer(echo_only))).status_code == 403
    assert (await gw.http.get("/admin/agents", headers=bearer(issuer.token(scope="topicbridge:admin")))).status_code == 200


async def test_a_rotated_key_is_fetched_when_a_token_names_it(gw, issuer):
    assert (await gw.http.get("/agents/echo/tasks", headers=bearer(issuer.token()))).status_code == 200
    issuer.add("k2", curve=True)
    issuer.served.remove("k1")
    fetched = issuer.requests
    assert (await gw.http.get("/agents/echo/tasks", headers=bearer(issuer.token(kid="k2")))).status_code == 200
    assert issuer.requests == fetched + 1
    # the retired key is gone from the cache with the refetch
    assert (await gw.http.get("/agents/echo/tasks", headers=bearer(issuer.token(kid="k1")))).status_code == 401


async def test_subjects_see_only_their_own_tasks(gw, issuer):
    alice, bob = issuer.token(sub="alice"), issuer.token(sub="bob")
    task_id = (await gw.http.post("/agents/echo/", json=SEND, headers=bearer(alice))).json()["result"]["task"]["id"]
    assert (await gw.http.get(f"/agents/echo/tasks/{task_id}", headers=bearer(alice))).status_code == 200
    assert (await gw.http.get(f"/agents/echo/tasks/{task_id}", headers=bearer(bob))).status_code == 404


async def test_mcp_takes_the_same_access_tokens(gw, issuer):
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
    refused = await gw.http.post("/mcp", json=call, headers=headers)
    assert refused.status_code == 401 and "oauth-protected-resource/mcp" in refused.headers["www-authenticate"]
    expired = issuer.token(exp=int(time.time()) - 3600)
    assert (await gw.http.post("/mcp", json=call, headers=headers | bearer(expired))).status_code == 401
    accepted = await gw.http.post("/mcp", json=call, headers=headers | bearer(issuer.token()))
    assert accepted.status_code != 401 and "session" in accepted.text, accepted.text   # past the guard


async def test_protected_resource_metadata_names_the_issuer(gw):
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        doc = (await gw.http.get(path)).json()
        assert doc["authorization_servers"] == [ISSUER] and "topicbridge:admin" in doc["scopes_supported"]


async def test_cards_declare_their_security(gw):
    card = (await gw.http.get("/agents/echo/.well-known/agent-card.json")).json()
    assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    flow = card["securitySchemes"]["oauth2"]["oauth2SecurityScheme"]["flows"]["clientCredentials"]
    assert set(flow["scopes"]) == {"topicbridge:agents", "topicbridge:agent:echo"}
    assert {"bearer"} <= {k for requirement in card["securityRequirements"] for k in requirement["schemes"]}
    gateway_card = (await gw.http.get("/.well-known/agent-card.json")).json()
    assert "bearer" in gateway_card["securitySchemes"]


@pytest.mark.parametrize("gateway, unprotected", [
    ({}, ["agents", "admin", "mcp"]),
    ({"mcp_bearer_tokens": ["m" * 20]}, ["agents", "admin"]),
    ({"bearer_tokens": ["t" * 20]}, []),
    ({"oauth": {"issuer": ISSUER, "audience": AUDIENCE}}, []),
    ({"bearer_tokens": ["t" * 20], "open_surfaces": ["mcp"]}, ["mcp"]),
])
def test_surfaces_left_unprotected(gateway, unprotected):
    assert unprotected_surfaces({"gateway": gateway}) == unprotected
