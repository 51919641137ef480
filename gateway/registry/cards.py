"""Agent cards the gateway serves.

Each capability is an A2A agent at `/agents/<name>/`: its card is the card of the capability
record with the gateway's own interfaces, streaming and push notifications switched on (the
gateway provides both, whatever the agent behind it does) and the agent's security and
signatures replaced by the gateway's own (`CardSecurity`: a bearer scheme when tokens or
OAuth are configured, and the OAuth 2.1 issuer's scheme with the scopes that grant the
capability). The gateway's own
card lists every capability as a skill whose id is the capability name; a client reaches a
skill through the gateway's interfaces by setting `tenant` to that id (A2A 1.0 tenants: several
agents behind one endpoint), which lands on the same routes as the capability's own card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from a2a.types import a2a_pb2
from a2a.utils.constants import PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0, TransportProtocol
from google.protobuf import json_format

from gateway.http.auth import OAuthSettings, open_surfaces, token_list

from .capabilities import Capability

log = logging.getLogger("topicbridge.cards")

AGENTS_PATH = "/agents"
GATEWAY_VERSION = "0.1.0"
_TEXT = ["text/plain", "application/json"]


@dataclass(frozen=True)
class CardSecurity:
    """What the gateway's A2A endpoints require, as the cards declare it."""
    bearer: bool = False
    oauth: OAuthSettings | None = None

    @classmethod
    def from_settings(cls, settings: dict) -> "CardSecurity":
        if "agents" in open_surfaces(settings):
            return cls()
        oauth = OAuthSettings.from_settings(settings)
        tokens = token_list((settings.get("gateway") or {}).get("bearer_tokens"))
        return cls(bearer=bool(tokens) or oauth is not None, oauth=oauth)

    def declare(self, card: a2a_pb2.AgentCard, capability: str | None) -> None:
        """Set `security_schemes` and `security_requirements` (alternatives: any one will do)."""
        if not self.bearer:
            return
        card.security_schemes["bearer"].http_auth_security_scheme.CopyFrom(a2a_pb2.HTTPAuthSecurityScheme(
            scheme="Bearer", bearer_format="JWT" if self.oauth else "",
            description="Authorization: Bearer <token> (a gateway token or an access token of the issuer)"))
        card.security_requirements.add().schemes["bearer"].list.extend([])
        if self.oauth is None:
            return
        scopes = [self.oauth.agents_scope] + ([self.oauth.agent_scope_prefix + capability] if capability else [])
        scheme = card.security_schemes["oauth2"].oauth2_security_scheme
        scheme.oauth2_metadata_url = self.oauth.issuer.rstrip("/") + "/.well-known/oauth-authorization-server"
        scheme.description = f"OAuth 2.1 access token (JWT) of {self.oauth.issuer} for audience {self.oauth.audience}"
        flow = scheme.flows.client_credentials
        flow.token_url = self.oauth.issuer.rstrip("/") + "/token"
        for scope in scopes:
            flow.scopes[scope] = "use this agent" if capability and scope.endswith(capability) else "use every agent"
        for scope in scopes:
            card.security_requirements.add().schemes["oauth2"].list.append(scope)


def agent_url(base_url: str, name: str) -> str:
    """The capability's endpoint: JSON-RPC is POSTed here, HTTP+JSON paths continue it."""
    return f"{base_url.rstrip('/')}{AGENTS_PATH}/{name}/"


def interfaces(url: str) -> list[a2a_pb2.AgentInterface]:
    """JSON-RPC and HTTP+JSON, each in 1.0 and in 0.3 (same URL: the routes speak both)."""
    rest = url.rstrip("/")
    return [a2a_pb2.AgentInterface(url=u, protocol_binding=binding, protocol_version=version)
            for version in (PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_0_3)
            for binding, u in ((TransportProtocol.JSONRPC.value, url), (TransportProtocol.HTTP_JSON.value, rest))]


def capability_card(capability: Capability, base_url: str, security: CardSecurity = CardSecurity()) -> a2a_pb2.AgentCard:
    card = _parse(capability)
    card.ClearField("supported_interfaces")
    card.supported_interfaces.extend(interfaces(agent_url(base_url, capability.name)))
    card.name = card.name or capability.name
    card.description = card.description or f"capability {capability.name} behind topicbridge"
    card.version = card.version or "1.0.0"
    card.capabilities.streaming = True
    card.capabilities.push_notifications = True
    card.capabilities.extended_agent_card = False
    for field in ("security_schemes", "security_requirements", "signatures"):
        card.ClearField(field)
    security.declare(card, capability.name)
    if not card.default_input_modes:
        card.default_input_modes.extend(_TEXT)
    if not card.default_output_modes:
        card.default_output_modes.extend(_TEXT)
    if not card.skills:
        card.skills.append(a2a_pb2.AgentSkill(id=capability.name, name=card.name,
                                              description=card.description, tags=[capability.name]))
    return card


def gateway_card(capabilities: list[Capability], base_url: str,
                 security: CardSecurity = CardSecurity()) -> a2a_pb2.AgentCard:
    base = base_url.rstrip("/")
    card = a2a_pb2.AgentCard(
        name="topicbridge",
        description="A gateway to agents over messaging. Each skill is an agent: call it at "
                    f"{base}{AGENTS_PATH}/<skill id>/ (its card is at .well-known/agent-card.json "
                    "there), or through these interfaces with tenant set to the skill id.",
        version=GATEWAY_VERSION,
        default_input_modes=_TEXT, default_output_modes=_TEXT)
    card.supported_interfaces.extend(
        a2a_pb2.AgentInterface(url=u, protocol_binding=b, protocol_version=PROTOCOL_VERSION_1_0)
        for b, u in ((TransportProtocol.JSONRPC.value, f"{base}{AGENTS_PATH}/"),
                     (TransportProtocol.HTTP_JSON.value, f"{base}{AGENTS_PATH}")))
    card.capabilities.streaming = True
    card.capabilities.push_notifications = True
    for capability in sorted(capabilities, key=lambda c: c.name):
        card.skills.append(_skill(capability))
    security.declare(card, None)
    return card


def _skill(capability: Capability) -> a2a_pb2.AgentSkill:
    card = _parse(capability)
    tags = {capability.name, capability.source}
    examples: list[str] = []
    for skill in card.skills:
        tags.update(skill.tags)
        examples.extend(skill.examples)
    if capability.status != "available":
        tags.add(capability.status)
    return a2a_pb2.AgentSkill(id=capability.name, name=card.name or capability.name,
                              description=card.description or capability.name,
                              tags=sorted(t for t in tags if t), examples=examples[:10])


def _parse(capability: Capability) -> a2a_pb2.AgentCard:
    card = a2a_pb2.AgentCard()
    try:
        json_format.ParseDict(capability.card or {}, card, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as e:
        # A record that slipped past validation still gets a usable card, built from its name.
        log.warning("capability %s has an unreadable card (%s); serving a minimal one", capability.name, e)
        card = a2a_pb2.AgentCard()
    return card
