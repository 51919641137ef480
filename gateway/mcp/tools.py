"""Capabilities as MCP tools.

A `Catalog` is a snapshot of the registry seen as tools: one tool per capability (name from the
capability, title and description from its card's skills and examples, input schema from the
capability or `DEFAULT_INPUT_SCHEMA`), plus the gateway's own tools `find_capabilities` and
`get_task_result`. The module also turns tool arguments into the A2A message of a task
envelope; the way back, a folded A2A task into an MCP `CallToolResult`, is results.py.

A capability says how it wants to be called through the A2A card extension
`TOOL_EXTENSION_URI`: `{"uri": TOOL_EXTENSION_URI, "params": {"taskSupport": "required"}}` under
`capabilities.extensions`. `taskSupport` is MCP's vocabulary: `forbidden` (always answered in
the call), `optional` (the default: a call that outlives its wait becomes a task) and
`required` (clients that speak tasks get one at once; others are refused).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property

import jsonschema
from a2a.types import a2a_pb2
from google.protobuf import json_format
from mcp.shared.inbound import X_MCP_HEADER_KEY

from gateway.registry import discovery
from gateway.registry.capabilities import Capability

log = logging.getLogger("topicbridge.mcp")

TOOL_EXTENSION_URI = "https://topicbridge.dev/extensions/mcp-tool/v1"
FIND_CAPABILITIES = "find_capabilities"
GET_TASK_RESULT = "get_task_result"
TASK_SUPPORT = ("forbidden", "optional", "required")
DESCRIPTION_LIMIT = 4000
PAGE_SIZE = 500

DEFAULT_INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "description": "What you ask the agent to do, in plain words."},
        "data": {"type": "object", "description": "Optional structured input for the agent."},
        "context_id": {"type": "string",
                       "description": "Continue an earlier conversation: the context_id a previous result gave."},
        "task_id": {"type": "string",
                    "description": "Answer a task that asked for more input: the task_id that result gave. "
                                   "`message` is the answer."},
    },
    "required": ["message"],
    "additionalProperties": False,
}

_FIND_INPUT = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1,
                  "description": "What you need done, in plain words (e.g. \"summarise a PDF\")."},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
    },
    "required": ["query"],
    "additionalProperties": False,
}
_FIND_OUTPUT = {
    "type": "object",
    "properties": {"capabilities": {"type": "array", "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                       "status": {"type": "string"}, "score": {"type": "number"}},
        "required": ["name", "description", "status", "score"]}}},
    "required": ["capabilities"],
}
_GET_RESULT_INPUT = {
    "type": "object",
    "properties": {
        "task_id": {"type": "string", "minLength": 1, "maxLength": 128,
                    "description": "The task id a previous call returned."},
        "wait_seconds": {"type": "number", "minimum": 0,
                         "description": "How long to wait for the task to finish before answering."},
    },
    "required": ["task_id"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class ToolEntry:
    name: str
    wire: dict                              # the tool as tools/list shows it (without `execution`)
    validator: jsonschema.Draft202012Validator
    capability: Capability | None = None    # None for the gateway's own tools
    output_schema: dict | None = None
    task_support: str = "forbidden"
    default_input: bool = False

    @property
    def input_schema(self) -> dict:
        return self.wire["inputSchema"]

    @cached_property
    def param_headers(self) -> bool:
        """Whether the input schema declares `x-mcp-header` anywhere (`Mcp-Param-*` headers to check)."""
        return _mentions(self.input_schema, X_MCP_HEADER_KEY)

    def invalid_arguments(self, arguments: dict) -> str | None:
        """Why `arguments` fail the input schema, or None."""
        if self.default_input and _plainly_valid_default_input(arguments):
            return None                     # what the validator would say, without running it
        if self.validator.is_valid(arguments):
            return None
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(arguments)"
        return f"invalid arguments for {self.name!r} at {where}: {error.message}"


@dataclass
class Catalog:
    """The registry as tools. Immutable once built; `fingerprint` changes when a listed tool does."""

    capabilities: list[Capability] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.entries: dict[str, ToolEntry] = {e.name: e for e in _builtin_entries()}
        for capability in sorted(self.capabilities, key=lambda c: c.name):
            if capability.name in self.entries:
                log.warning("capability %r has the name of a gateway tool; it is not offered as a tool",
                            capability.name)
                continue
            try:
                self.entries[capability.name] = _capability_entry(capability)
            except Exception as e:      # one odd record must not hide every other tool
                log.warning("capability %r cannot be offered as a tool: %r", capability.name, e)
        digest = hashlib.sha256()
        for entry in self.entries.values():
            digest.update(json.dumps([entry.wire, entry.task_support], sort_keys=True).encode())
        self.fingerprint = digest.hexdigest()
        self._names = list(self.entries)

    def get(self, name: str) -> ToolEntry | None:
        return self.entries.get(name)

    def page(self, cursor: str | None, *, legacy: bool, allowed=None) -> tuple[list[dict], str | None]:
        """One page of tools/list; the cursor is an offset. `allowed(capability name)` (a caller's
        scopes) hides the capabilities it refuses; the gateway's own tools are always listed."""
        start = int(cursor) if cursor and cursor.isdigit() else 0
        names = self._names if allowed is None else [
            n for n in self._names if self.entries[n].capability is None or allowed(n)]
        tools = [_wire_for(self.entries[n], legacy) for n in names[start:start + PAGE_SIZE]]
        following = start + PAGE_SIZE
        return tools, (str(following) if following < len(names) else None)

    def find(self, query: str, limit: int, allowed=None) -> dict:
        """The `find_capabilities` answer as structured content (only what `allowed` lets through)."""
        offered = [c for c in self.capabilities if c.name in self.entries and (allowed is None or allowed(c.name))]
        hits = discovery.search(offered, query, limit=limit)
        return {"capabilities": [{"name": h.capability.name, "description": h.capability.description,
                                  "status": h.capability.status, "score": h.score} for h in hits]}


def _wire_for(entry: ToolEntry, legacy: bool) -> dict:
    if not legacy or entry.capability is None:
        return entry.wire
    return {**entry.wire, "execution": {"taskSupport": entry.task_support}}


def _builtin_entries() -> list[ToolEntry]:
    find = {"name": FIND_CAPABILITIES, "title": "Find capabilities",
            "description": "Search the agents registered at this gateway by what they can do, best match "
                           "first. Each result's name is also the name of the tool that calls it.",
            "inputSchema": _FIND_INPUT, "outputSchema": _FIND_OUTPUT,
            "annotations": {"readOnlyHint": True, "openWorldHint": False}}
    get = {"name": GET_TASK_RESULT, "title": "Get a task's result",
           "description": "Fetch the result of a call that was still running when it returned a task id. "
                          "Waits up to wait_seconds for the task to finish.",
           "inputSchema": _GET_RESULT_INPUT, "annotations": {"readOnlyHint": True, "openWorldHint": False}}
    return [ToolEntry(FIND_CAPABILITIES, find, _validator(_FIND_INPUT), output_schema=_FIND_OUTPUT),
            ToolEntry(GET_TASK_RESULT, get, _validator(_GET_RESULT_INPUT))]


def _capability_entry(capability: Capability) -> ToolEntry:
    card = capability.card if isinstance(capability.card, dict) else {}
    input_schema = _object_schema(capability.input_schema, capability.name, "input")
    output_schema = _object_schema(capability.output_schema, capability.name, "output")
    wire = {"name": capability.name, "description": describe(capability),
            "inputSchema": input_schema or DEFAULT_INPUT_SCHEMA}
    if isinstance(card.get("name"), str) and card["name"]:
        wire["title"] = card["name"]
    if output_schema:
        wire["outputSchema"] = output_schema
    return ToolEntry(capability.name, wire, _validator(wire["inputSchema"]), capability, output_schema,
                     task_support(card), default_input=input_schema is None)


def _object_schema(schema, name: str, kind: str) -> dict | None:
    """MCP wants an object schema at the root; anything else falls back (input) or is dropped (output)."""
    if schema is None:
        return None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        log.warning("capability %r declares a non-object %s schema; MCP tools need type object", name, kind)
        return None
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        log.warning("capability %r declares an invalid %s schema: %s", name, kind, e.message)
        return None
    return schema


_DEFAULT_INPUT_KEYS = frozenset(DEFAULT_INPUT_SCHEMA["properties"])


def _plainly_valid_default_input(arguments) -> bool:
    """True when `arguments` (decoded JSON) certainly satisfy DEFAULT_INPUT_SCHEMA: an object with a
    string `message`, an optional object `data`, optional strings `context_id` and `task_id`, nothing else."""
    return (isinstance(arguments, dict) and isinstance(arguments.get("message"), str)
            and arguments.keys() <= _DEFAULT_INPUT_KEYS
            and isinstance(arguments.get("data", {}), dict) and isinstance(arguments.get("context_id", ""), str)
            and isinstance(arguments.get("task_id", ""), str))


def _mentions(value, key: str) -> bool:
    """Whether `key` is a key of any object anywhere in the JSON value."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if key in node:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _validator(schema: dict) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


def task_support(card: dict) -> str:
    capabilities = card.get("capabilities")
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    for extension in extensions if isinstance(extensions, list) else []:
        if isinstance(extension, dict) and extension.get("uri") == TOOL_EXTENSION_URI:
            value = (extension.get("params") or {}).get("taskSupport", "optional")
            return value if value in TASK_SUPPORT else "optional"
    return "optional"


def describe(capability: Capability) -> str:
    """The tool description an LLM reads: the card's description, then its skills with examples."""
    card = capability.card if isinstance(capability.card, dict) else {}
    first = card.get("description") or card.get("name")
    lines = [first if isinstance(first, str) else f"The {capability.name} agent."]
    skills = card.get("skills")
    skills = [s for s in skills if isinstance(s, dict)] if isinstance(skills, list) else []
    if skills:
        lines.append("Skills:")
    for skill in skills:
        text = "- " + ": ".join(x for x in (skill.get("name"), skill.get("description")) if isinstance(x, str) and x)
        examples = skill.get("examples")
        examples = [e for e in examples if isinstance(e, str)][:3] if isinstance(examples, list) else []
        if examples:
            text += " (e.g. " + "; ".join(f"\"{e}\"" for e in examples) + ")"
        lines.append(text)
    if capability.status != "available":
        lines.append(f"Currently {capability.status}" + (f": {capability.error}" if capability.error else "")
                     + "; calls wait until a worker serves it.")
    text = "\n".join(lines)
    return text if len(text) <= DESCRIPTION_LIMIT else text[:DESCRIPTION_LIMIT - 1] + "…"


# ---------------------------------------------------------------- arguments -> A2A message

def to_message(entry: ToolEntry, arguments: dict) -> a2a_pb2.Message:
    """The user message of the task: text and data parts for the default schema, else one data part."""
    message = a2a_pb2.Message(message_id=os.urandom(16).hex(), role=a2a_pb2.ROLE_USER)
    if entry.default_input:
        message.parts.append(a2a_pb2.Part(text=arguments["message"]))
        if arguments.get("data") is not None:
            message.parts.append(_data_part(arguments["data"]))
        message.context_id = arguments.get("context_id", "")
    else:
        message.parts.append(_data_part(arguments))
    return message


def _data_part(value) -> a2a_pb2.Part:
    part = a2a_pb2.Part(media_type="application/json")
    json_format.ParseDict(value, part.data)
    return part
