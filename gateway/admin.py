"""Admin REST API: register A2A agents by card URL, list/search/show/remove capabilities."""

from __future__ import annotations


def routes(gateway) -> list:
    return []
