"""What the templates show, computed from records: rows of plain values, so the templates only
lay them out."""

from __future__ import annotations

import datetime
import json

from a2a.types import a2a_pb2
from google.protobuf import json_format

from gateway.tasks import fold

ROLES = {a2a_pb2.ROLE_USER: "user", a2a_pb2.ROLE_AGENT: "agent"}


def capability_rows(capabilities, now: float) -> list[dict]:
    rows = []
    for c in sorted(capabilities, key=lambda c: c.name):
        rows.append({"name": c.name, "status": c.status, "source": c.source, "card_url": c.card_url or "",
                     "description": c.description, "workers": "—" if c.workers is None else c.workers,
                     "error": c.error or "", "seen": _ago(now - c.last_seen),
                     "skills": ", ".join(s.get("name", s.get("id", "")) for s in c.card.get("skills", [])),
                     "version": c.card.get("version", ""), "refreshable": c.source == "a2a" and bool(c.card_url)})
    return rows


def state_name(state: int) -> str:
    return a2a_pb2.TaskState.Name(state).removeprefix("TASK_STATE_").lower()


def task_view(task: a2a_pb2.Task) -> dict:
    own = json_format.MessageToDict(task.metadata).get(fold.OWN_METADATA, {}) if task.HasField("metadata") else {}
    timeline = [{"kind": "message", "who": ROLES.get(m.role, "?"), "text": parts_text(m.parts)}
                for m in task.history]
    status = task.status
    timeline.append({"kind": "status", "who": state_name(status.state), "text": parts_text(status.message.parts),
                     "when": _time(status.timestamp) if status.HasField("timestamp") else ""})
    artifacts = [{"name": a.name or a.artifact_id, "id": a.artifact_id, "text": parts_text(a.parts)}
                 for a in task.artifacts]
    return {"id": task.id, "context_id": task.context_id, "state": state_name(status.state),
            "capability": own.get("capability", ""), "updated": timeline[-1]["when"],
            "timeline": timeline, "artifacts": artifacts,
            "terminal": status.state in fold.TERMINAL}


def parts_text(parts) -> str:
    out = []
    for part in parts:
        if part.HasField("text"):
            out.append(part.text)
        elif part.HasField("data"):
            out.append(json.dumps(json_format.MessageToDict(part.data), ensure_ascii=False, indent=1))
        elif part.HasField("url"):
            out.append(part.url)
        else:
            out.append(f"<{part.media_type or 'binary'} part>")
    return "\n".join(out)


def _time(timestamp) -> str:
    return timestamp.ToDatetime(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 5400:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"
