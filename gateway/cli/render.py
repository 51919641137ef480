"""What the CLI prints for people: tables of agents and tasks, one task's details, and the live
view of `tasks watch` (rich). With --json the commands print the gateway's JSON instead."""

from __future__ import annotations

import datetime
import json
import time

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

STATE_STYLES = {"completed": "green", "working": "cyan", "submitted": "cyan", "failed": "red", "rejected": "red",
                "canceled": "yellow", "input_required": "yellow", "auth_required": "yellow",
                "available": "green", "unavailable": "yellow", "error": "red"}
ENDED = {"completed", "failed", "canceled", "rejected"}
LIVE_ROWS = 15          # events the watch view keeps on screen


def console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def state(text: str) -> Text:
    return Text(text or "?", style=STATE_STYLES.get(text, ""))


def print_json(doc) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False))


def agents_table(agents: list[dict]) -> Table:
    scored = any("score" in a for a in agents)
    table = Table(title=f"{len(agents)} capabilit{'y' if len(agents) == 1 else 'ies'}", title_justify="left")
    for column in ("NAME", "HEALTH", "WORKERS", "SOURCE", "DESCRIPTION", "LAST ERROR") + (("SCORE",) if scored else ()):
        table.add_column(column, overflow="fold")
    for a in agents:
        workers = "-" if a.get("workers") is None else str(a["workers"])
        source = a.get("source", "") + (f" {a['card_url']}" if a.get("card_url") else "")
        row = [a.get("name", ""), state(a.get("status", "")), workers, source,
               (a.get("card") or {}).get("description", ""), a.get("error") or ""]
        table.add_row(*row, *((f"{a.get('score', 0):.2f}",) if scored else ()))
    return table


def agent_details(agent: dict) -> Table:
    card = agent.get("card") or {}
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    skills = ", ".join(s.get("name") or s.get("id", "") for s in card.get("skills", []))
    for label, value in (("name", agent.get("name")), ("health", state(agent.get("status", ""))),
                         ("error", agent.get("error")), ("source", agent.get("source")),
                         ("card url", agent.get("card_url")), ("topic", agent.get("topic")),
                         ("workers", agent.get("workers")), ("timeout", agent.get("timeout_seconds")),
                         ("agent", f"{card.get('name', '')} {card.get('version', '')}".strip()),
                         ("description", card.get("description")), ("skills", skills)):
        if value not in (None, ""):
            table.add_row(label, value if isinstance(value, Text) else str(value))
    return table


def tasks_table(tasks: list[dict]) -> Table:
    table = Table(title=f"{len(tasks)} task{'s' * (len(tasks) != 1)}, newest first", title_justify="left")
    for column in ("TASK", "CAPABILITY", "STATE", "UPDATED", "ARTIFACTS", "MESSAGE"):
        table.add_column(column, overflow="fold")
    for t in tasks:
        table.add_row(t["id"], t.get("capability", ""), state(t.get("state", "")), _when(t.get("updated")),
                      str(t.get("artifacts", 0)), t.get("message", ""))
    return table


def task_details(doc: dict) -> Group:
    summary, task = doc["summary"], doc["task"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    for label, value in (("task", summary["id"]), ("capability", summary.get("capability")),
                         ("context", summary.get("context_id")), ("state", state(summary["state"])),
                         ("updated", _when(summary.get("updated"))), ("message", summary.get("message"))):
        if value:
            facts.add_row(label, value)
    history = Table(title="history", title_justify="left", show_header=False)
    history.add_column("WHO", style="bold")
    history.add_column("TEXT", overflow="fold")
    for message in task.get("history", []):
        history.add_row("user" if message.get("role") == "ROLE_USER" else "agent", parts_text(message.get("parts")))
    artifacts = Table(title="artifacts", title_justify="left", show_header=False)
    artifacts.add_column("NAME", style="bold")
    artifacts.add_column("CONTENT", overflow="fold")
    for artifact in task.get("artifacts", []):
        artifacts.add_row(artifact.get("name") or artifact.get("artifactId", ""), parts_text(artifact.get("parts")))
    return Group(facts, history, artifacts)


def parts_text(parts) -> str:
    out = []
    for part in parts or []:
        if "text" in part:
            out.append(part["text"])
        elif "data" in part:
            out.append(json.dumps(part["data"], ensure_ascii=False))
        else:
            out.append(part.get("url") or f"<{part.get('mediaType', 'binary')} part>")
    return "\n".join(out)


def describe(event: dict) -> tuple[str, str, str]:
    """(kind, state or name, text) of one A2A StreamResponse (ProtoJSON)."""
    if "task" in event:
        status = event["task"].get("status", {})
        return "task", _state(status.get("state")), parts_text(status.get("message", {}).get("parts"))
    if "statusUpdate" in event:
        status = event["statusUpdate"].get("status", {})
        return "status", _state(status.get("state")), parts_text(status.get("message", {}).get("parts"))
    if "artifactUpdate" in event:
        artifact = event["artifactUpdate"].get("artifact", {})
        return "artifact", artifact.get("name") or artifact.get("artifactId", ""), parts_text(artifact.get("parts"))
    if "message" in event:
        return "message", "agent", parts_text(event["message"].get("parts"))
    return "event", "?", json.dumps(event)[:200]


class WatchView:
    """The live view of one task: its state (a spinner while it runs) over its latest events."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.state = "connecting"
        self.capability = ""
        self.rows: list[tuple[str, str, Text, str]] = []
        self.started = time.monotonic()

    def add(self, event: dict) -> None:
        kind, name, text = describe(event)
        if kind == "task":
            meta = event["task"].get("metadata", {}).get("topicbridge", {})
            self.capability = meta.get("capability", self.capability)
        if kind in ("task", "status"):
            self.state = name
        label = state(name) if kind in ("task", "status") else Text(name)
        at = f"{time.monotonic() - self.started:6.2f}s"
        self.rows.append((at, kind, label, text))
        for artifact in event["task"].get("artifacts", []) if kind == "task" else ():   # what it made so far
            self.rows.append((at, "artifact", Text(artifact.get("name") or artifact.get("artifactId", "")),
                              parts_text(artifact.get("parts"))))

    def __rich__(self) -> Group:
        title = Text.assemble(("task ", "bold"), self.task_id, "  ", self.capability, "  ", state(self.state))
        head = title if self.state in ENDED else Spinner("dots", text=title)
        table = Table(expand=False)
        for column in ("AT", "EVENT", "STATE / NAME", "TEXT"):
            table.add_column(column, overflow="fold")
        for row in self.rows[-LIVE_ROWS:]:
            table.add_row(*row)
        return Group(head, table)


def live(view: WatchView) -> Live:
    return Live(view, console=console(), refresh_per_second=8, transient=False)


def _state(raw) -> str:
    return str(raw or "").removeprefix("TASK_STATE_").lower()


def _when(stamp: str | None) -> str:
    if not stamp:
        return ""
    try:
        moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
