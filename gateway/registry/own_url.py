"""A card URL that names this gateway itself: registering it would bridge every call back into
the gateway (each call a new task on the same capability, none ever answered), so it is refused
with the reason."""

from __future__ import annotations

import socket
import urllib.parse

from gateway.http.guard import is_loopback
from gateway.http.outbound import RefusedURLError

_ANY = {"0.0.0.0", "::", ""}


def refuse_own_url(card_url: str, server: tuple[str, int] | None, host_header: str | None) -> None:
    """RefusedURLError when `card_url` reaches the server the request came in on: the same
    `Host` as the request, or the listening port on a loopback or this machine's own name.
    `server` is the ASGI scope's (host, port) of the listening socket."""
    parts = urllib.parse.urlsplit(card_url if "://" in card_url else f"http://{card_url}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return      # a bad port: the card fetch says what is wrong with it
    host = (parts.hostname or "").lower()
    if host_header and _origin(host_header, parts.scheme) == (host, port) or server and port == server[1] and (
            is_loopback(host) or host == str(server[0]).lower() or host in _own_names(server[0])):
        raise RefusedURLError(card_url, "this is the gateway's own address: registering it would send every "
                                        "call back into the gateway; register the agent's own card URL")


def _origin(host_header: str, scheme: str) -> tuple[str, int] | None:
    try:        # a Host header is the caller's: '[::1' or a bad port is not an origin
        parts = urllib.parse.urlsplit(f"{scheme or 'http'}://{host_header}")
        return (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None


def _own_names(listening: str) -> set[str]:
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    return names | ({"0.0.0.0", "::"} if listening in _ANY else set())
