"""The A2A 1.0 surface: one agent per capability under /agents/<name>/, and the gateway's own card."""

from __future__ import annotations


def routes(gateway) -> list:
    return []
