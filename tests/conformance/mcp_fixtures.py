"""The native capabilities the MCP conformance scenarios call, served by the worker SDK.

Each fixture tool of `@modelcontextprotocol/conformance` is a capability here: a worker that
answers with A2A parts, which the gateway turns into MCP content (see gateway/mcp_tools.py), so
the suite exercises the gateway's mapping rather than a hand-written MCP answer.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json

from a2a.types import a2a_pb2
from google.protobuf import json_format

from gateway.mcp.tools import TOOL_EXTENSION_URI
from gateway.registry.capabilities import Capability, Registry
from gateway.workers.worker import Worker

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
WAV = base64.b64decode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=")
NO_ARGUMENTS = {"type": "object", "properties": {}}

JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                          "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                   "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                   "phone": {"type": "string"}, "email": {"type": "string"}},
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


def _card(name: str, description: str, task_support: str | None = None) -> dict:
    card = {"name": name, "description": description, "version": "1.0.0",
            "skills": [{"id": name, "name": name, "description": description, "tags": ["conformance"]}]}
    if task_support:
        card["capabilities"] = {"extensions": [{"uri": TOOL_EXTENSION_URI, "params": {"taskSupport": task_support}}]}
    return card


def _raw(data: bytes, media: str) -> a2a_pb2.Part:
    return a2a_pb2.Part(raw=data, media_type=media)


def _resource(uri: str, media: str, text: str) -> a2a_pb2.Part:
    return a2a_pb2.Part(text=text, filename=uri, media_type=media)


async def simple_text(task):
    await task.complete("This is a simple text response for testing.")


async def image(task):
    await task.complete(parts=[_raw(PNG, "image/png")])


async def audio(task):
    await task.complete(parts=[_raw(WAV, "audio/wav")])


async def embedded_resource(task):
    await task.complete(parts=[_resource("test://embedded-resource", "text/plain",
                                         "This is an embedded resource content.")])


async def mixed(task):
    await task.complete(parts=[a2a_pb2.Part(text="Multiple content types test:"), _raw(PNG, "image/png"),
                               _resource("test://mixed-content-resource", "application/json",
                                         json.dumps({"test": "data", "value": 123}))])


async def with_progress(task):
    for step in ("started", "halfway", "finishing"):
        await task.working(step)
        await asyncio.sleep(0.05)  # sleep-ok: the fixture agent's simulated work between progress steps
    await task.complete("Tool with progress executed successfully")


async def error_handling(task):
    raise RuntimeError("This tool intentionally returns an error for testing")


async def greet(task):
    await task.complete(f"Hello, {_args(task).get('name', 'World')}!")


async def slow_compute(task):
    args = _args(task)
    await task.working(f"computing {args.get('label', '')}".strip())
    await asyncio.sleep(float(args.get("seconds", 1)))  # sleep-ok: simulated work the scenario asks for
    await task.complete(f"computed {args.get('label', '')} in {args.get('seconds', 1)} s".strip())


async def failing_job(task):
    await asyncio.sleep(1.0)  # sleep-ok: simulated work before failing
    raise RuntimeError("failing_job always fails")


async def protocol_error_job(task):
    await task.status(a2a_pb2.TASK_STATE_REJECTED, "protocol_error_job cannot be served")


async def custom_headers(task):
    await task.complete(f"headers echoed: {json.dumps(_args(task), sort_keys=True)}")


def _args(task) -> dict:
    return task.data[0] if task.data else {}


# The forms the elicitation scenarios expect: the agent sends each as a JSON Schema data part of
# its INPUT_REQUIRED status, which the gateway turns into the elicitation's requestedSchema.
USER_FORM = {"type": "object", "required": ["username", "email"], "properties": {
    "username": {"type": "string", "description": "User's response"},
    "email": {"type": "string", "description": "User's email address"}}}
NAME_FORM = {"type": "object", "title": "user_name", "required": ["name"],   # title: the MRTR input request's key
             "properties": {"name": {"type": "string"}}}
DEFAULTS_FORM = {"type": "object", "properties": {
    "name": {"type": "string", "default": "John Doe"},
    "age": {"type": "integer", "default": 30},
    "score": {"type": "number", "default": 95.5},
    "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
    "verified": {"type": "boolean", "default": True}}}
ENUMS_FORM = {"type": "object", "properties": {
    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
    "titledSingle": {"type": "string", "oneOf": [{"const": "value1", "title": "First Option"},
                                                 {"const": "value2", "title": "Second Option"},
                                                 {"const": "value3", "title": "Third Option"}]},
    "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                   "enumNames": ["Option One", "Option Two", "Option Three"]},
    "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
    "titledMulti": {"type": "array", "items": {"anyOf": [{"const": "value1", "title": "First Choice"},
                                                         {"const": "value2", "title": "Second Choice"},
                                                         {"const": "value3", "title": "Third Choice"}]}}}}


def _form(title: str, field: str, kind: str = "string") -> dict:
    return {"type": "object", "title": title, "required": [field], "properties": {field: {"type": kind}}}


def asking(form: dict, question: str | None, answer: str, *more: tuple[dict, str]):
    """An agent that asks with `form` (the call's `message` argument as the question when
    `question` is None), then with each of `more` (form, question) in later turns, and completes
    with `answer` formatted with the user's last content."""
    async def handler(task):
        rounds = [(form, question), *more]
        if task.turn < len(rounds):
            part = a2a_pb2.Part(media_type="application/schema+json")
            json_format.ParseDict(rounds[task.turn][0], part.data)
            await task.status(a2a_pb2.TASK_STATE_INPUT_REQUIRED,
                              rounds[task.turn][1] or _args(task).get("message", "?"), parts=[part])
            return
        content = _args(task) or {"answer": task.text}
        await task.complete(answer.format(content=json.dumps(content)))
    return handler


CONFIRM_FORM = _form("confirm", "confirm", "boolean")


def asking_in_a_task(*forms: dict, question: str, answer: str, after: float = 1.5):
    """An agent that works `after` seconds (so a tasks-aware call has become a task by then: the
    gateway waits mcp_task_wait_seconds before making one), then asks with all `forms` at once
    (one input request each) and completes with `answer` formatted with the user's content."""
    async def handler(task):
        if task.turn == 0:
            await task.working("checking")
            await asyncio.sleep(after)  # sleep-ok: the fixture agent's work before it asks
            parts = []
            for form in forms:
                part = a2a_pb2.Part(media_type="application/schema+json")
                json_format.ParseDict(form, part.data)
                parts.append(part)
            await task.status(a2a_pb2.TASK_STATE_INPUT_REQUIRED, question.format(**_args(task)), parts=parts)
            return
        await task.complete(answer.format(content=json.dumps(_args(task))))
    return handler


_generated = itertools.count()


def trigger_tool_change(registry: Registry):
    """Each call adds or removes a generated capability, so the tool list changes."""
    async def handler(task):
        extra = [c for c in await registry.list() if c.name.startswith("conformance-generated-")]
        if extra:
            await registry.delete(extra[0].name)
        else:
            name = f"conformance-generated-{next(_generated)}"
            await registry.put(Capability(name, _card(name, "Generated to change the tool list.")))
        await task.complete("The tool list changed.")
    return handler


def fixtures(registry: Registry) -> list[tuple[str, object, dict, dict | None, str | None]]:
    """(tool name, handler, input schema, output schema, taskSupport)."""
    custom = {"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "priority": {"type": "integer", "x-mcp-header": "Priority"}}}
    return [
        ("test_simple_text", simple_text, NO_ARGUMENTS, None, None),
        ("test_image_content", image, NO_ARGUMENTS, None, None),
        ("test_audio_content", audio, NO_ARGUMENTS, None, None),
        ("test_embedded_resource", embedded_resource, NO_ARGUMENTS, None, None),
        ("test_multiple_content_types", mixed, NO_ARGUMENTS, None, None),
        ("test_tool_with_progress", with_progress, NO_ARGUMENTS, None, None),
        ("test_error_handling", error_handling, NO_ARGUMENTS, None, None),
        ("json_schema_2020_12_tool", greet, JSON_SCHEMA_2020_12, None, None),
        ("test_custom_headers", custom_headers, custom, None, None),
        ("test_trigger_tool_change", trigger_tool_change(registry), NO_ARGUMENTS, None, None),
        ("test_elicitation", asking(USER_FORM, None, "User response: action=accept, content={content}"),
         {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}, None, None),
        ("test_elicitation_sep1034_defaults", asking(DEFAULTS_FORM, "Please review your details.",
                                                     "Elicitation completed: action=accept, content={content}"),
         NO_ARGUMENTS, None, None),
        ("test_input_required_result_elicitation", asking(NAME_FORM, "What is your name?", "Hello, {content}"),
         NO_ARGUMENTS, None, None),
        ("test_input_required_result_request_state", asking(_form("confirm", "ok", "boolean"), "Please confirm",
                                                            "state-ok: {content}"), NO_ARGUMENTS, None, None),
        ("test_input_required_result_tampered_state", asking(_form("confirm", "ok", "boolean"), "Please confirm",
                                                             "state-ok: {content}"), NO_ARGUMENTS, None, None),
        ("test_input_required_result_multi_round",
         asking(_form("step1", "name"), "Step 1: What is your name?", "Done: {content}",
                (_form("step2", "color"), "Step 2: What is your favorite color?")), NO_ARGUMENTS, None, None),
        ("test_input_required_result_capabilities", asking(NAME_FORM, "What is your name?", "Hello, {content}"),
         NO_ARGUMENTS, None, None),
        ("test_elicitation_sep1330_enums", asking(ENUMS_FORM, "Please choose.",
                                                  "Elicitation completed: action=accept, content={content}"),
         NO_ARGUMENTS, None, None),
        ("greet", greet, {"type": "object", "properties": {"name": {"type": "string"}}}, None, "forbidden"),
        ("slow_compute", slow_compute, {"type": "object", "properties": {
            "seconds": {"type": "number", "minimum": 0}, "label": {"type": "string"}}}, None, "optional"),
        ("failing_job", failing_job, NO_ARGUMENTS, None, "required"),
        ("protocol_error_job", protocol_error_job, NO_ARGUMENTS, None, "required"),
        ("confirm_delete", asking_in_a_task(CONFIRM_FORM, question="Delete {filename}?", answer="delete: {content}"),
         {"type": "object", "properties": {"filename": {"type": "string"}}, "required": ["filename"]}, None,
         "optional"),
        ("multi_input", asking_in_a_task(_form("name", "name"), CONFIRM_FORM, question="Your name, and confirm?",
                                         answer="multi: {content}"), NO_ARGUMENTS, None, "optional"),
        # Asks at once, so a tasks-aware client gets the question before the task (MRTR), then the task.
        ("test_tool_with_task", asking(NAME_FORM, "What is your name?", "Hello, {content}"), NO_ARGUMENTS, None,
         "required"),
    ]


async def start_workers(backend) -> list[Worker]:
    registry = Registry(backend)
    await registry.start()
    workers = []
    for name, handler, input_schema, output_schema, task_support in fixtures(registry):
        worker = Worker(backend, name, handler, card=_card(name, f"Conformance fixture {name}.", task_support),
                        input_schema=input_schema, output_schema=output_schema)
        await worker.start()
        workers.append(worker)
    return workers
