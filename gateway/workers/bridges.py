"""Bridges: keeps a `Bridge` (bridge.py) running on this instance for every capability
registered by card URL, and registers, refreshes and removes such capabilities."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from adapters.base import Backend, TopicSpec
from adapters.errors import BackendError, ConflictError, InvalidRequestError, NotFoundError
from gateway.http.outbound import AddressPolicy
from gateway.registry.cardfetch import fetch_card
from gateway.registry.capabilities import Capability, Registry, derive_name
from gateway.supervisor import Supervisor
from gateway.tasks import channels

from .bridge import Bridge
from .credentials import CredentialStore, Credentials, CredentialsUnavailable, needs_card, parse as parse_credentials

log = logging.getLogger("topicbridge.bridge")
WATCH_LOOP = "bridges.watch"    # the registry watch, under the supervisor (and in /readyz)


class Bridges:
    """Keeps a Bridge running on this instance for every capability registered by card URL.

    Watches the registry (every `interval` seconds, and at once when `sync` is called after a
    registration or removal here), so a registration on any instance reaches every instance.
    """

    def __init__(self, backend: Backend, registry: Registry, policy: AddressPolicy, *, interval: float = 3.0,
                 supervisor: Supervisor | None = None, **bridge_options) -> None:
        """`supervisor` runs the watch loop and every bridge's worker loops; by default its own."""
        self.backend, self.registry, self.policy = backend, registry, policy
        self.interval = interval
        self.supervisor = supervisor or Supervisor()
        self.bridge_options = {**bridge_options, "supervisor": self.supervisor}
        self.running: dict[str, tuple[tuple, Bridge]] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.sync()
        self.supervisor.spawn(WATCH_LOOP, self._watch_loop)

    async def register(self, card_url: str, name: str | None = None, credentials: dict | None = None) -> Capability:
        """Fetch the card at `card_url`, add the capability and bridge it (ConflictError if the name
        is taken). `credentials` (credentials.py) go with the card fetch and every call."""
        if name is not None and not channels.is_capability_name(name):
            raise InvalidRequestError("name", name, "use a-z, 0-9, _ and -, at most 63 characters, "
                                                    "starting with a letter or digit")
        fetched, secret = await self._fetch_with(card_url, credentials, name or "(new)")
        name = name or derive_name(fetched.card.name)
        if await self.registry.get(name) is not None:
            raise ConflictError(f"capability {name!r} is already registered")
        capability = Capability(name, fetched.to_dict(), "a2a", fetched.url)
        await self.backend.create_topic(TopicSpec(capability.topic))
        store = CredentialStore(self.backend, self.policy)
        if secret is not None:      # before the capability: a bridge starting on any instance finds it
            await store.put(name, secret)
        else:
            await store.delete(name)    # none left over from an earlier registration of the name
        await self.registry.register(capability)
        await self._sync_soon()
        return capability

    async def refresh(self, name: str) -> Capability:
        """Fetch and validate the card of bridged capability `name` again, from the URL it was
        registered with, and bridge the new card (every instance restarts its bridge on the
        change). Name, timeout and creation time stay; health is reset by the successful fetch."""
        capability = await self.registry.get(name)
        if capability is None:
            raise NotFoundError("capability", name)
        if capability.source != "a2a" or not capability.card_url:
            raise InvalidRequestError("name", name, f"is a {capability.source} capability: its workers "
                                                    "announce its card, there is no card URL to fetch")
        secret = await CredentialStore(self.backend, self.policy).get(name)
        fetched = await fetch_card(capability.card_url, self.policy, headers=await self._headers(secret, name))
        capability.card, capability.status, capability.error = fetched.to_dict(), "available", None
        capability.last_seen = time.time()
        await self.registry.put(capability)
        await self._sync_soon()
        return capability

    async def remove(self, name: str) -> Capability:
        capability = await self.registry.get(name)
        if capability is None or not await self.registry.delete(name):
            raise NotFoundError("capability", name)
        with contextlib.suppress(BackendError):     # a leftover row only names an environment variable
            await CredentialStore(self.backend).delete(name)
        await self._sync_soon()
        return capability

    async def _fetch_with(self, card_url: str, credentials: dict | None, name: str):
        """The card, fetched with `credentials` (parsed: an API key's header may come from the card,
        then fetched without them first), and the parsed credentials."""
        if credentials is None:
            return await fetch_card(card_url, self.policy), None
        card = None
        if needs_card(credentials):     # an API key's header or an OAuth token URL taken from the card
            card = (await fetch_card(card_url, self.policy)).card
        secret = parse_credentials(credentials, card, self.policy)
        return await fetch_card(card_url, self.policy, headers=await self._headers(secret, name)), secret

    @staticmethod
    async def _headers(secret: Credentials | None, name: str) -> dict[str, str] | None:
        try:
            return await secret.headers(name) if secret is not None else None
        except CredentialsUnavailable as e:
            raise InvalidRequestError(e.field, secret.token_env, str(e)) from None

    async def _sync_soon(self) -> None:
        try:
            await self.sync()
        except BackendError as e:       # the watch loop will catch up
            log.warning("bridges did not follow the registry at once: %s", e)

    async def close(self) -> None:
        await self.supervisor.stop(WATCH_LOOP)
        async with self._lock:
            for name in list(self.running):
                await self._stop(name)

    async def sync(self) -> None:
        async with self._lock:
            wanted = {c.name: c for c in await self.registry.list() if c.source == "a2a"}
            for name, (signature, bridge) in list(self.running.items()):
                if name not in wanted or _signature(wanted[name]) != signature:
                    await self._stop(name)
                else:       # another instance may have recorded an error this one has to clear
                    bridge.health = wanted[name].status
            for name, capability in wanted.items():
                if name not in self.running:
                    await self._start(capability)

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sync()
            except BackendError as e:
                log.warning("watching the registry failed: %s", e)

    async def _start(self, capability: Capability) -> None:
        bridge = Bridge(self.backend, self.registry, capability, self.policy, **self.bridge_options)
        try:
            await bridge.start()
        except BackendError as e:
            log.warning("bridge to %s did not start (%s); retrying on the next sync", capability.name, e)
            with contextlib.suppress(Exception):
                await bridge.close()
            return
        self.running[capability.name] = (_signature(capability), bridge)
        log.info("bridging %s to %s", capability.name, bridge.url)

    async def _stop(self, name: str) -> None:
        _, bridge = self.running.pop(name)
        with contextlib.suppress(Exception):
            await bridge.close()
        log.info("stopped bridging %s", name)


def _signature(capability: Capability) -> tuple:
    return capability.card_url, capability.created, json.dumps(capability.card, sort_keys=True)
