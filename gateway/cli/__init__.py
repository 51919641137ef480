"""`topicbridge`: the console script (main.py: serve, engine, mcp-stdio) and the admin commands
against a running gateway (admin.py: agents, tasks; http.py: their calls; render.py: tables)."""

from .main import main

__all__ = ["main"]
