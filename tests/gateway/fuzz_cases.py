"""Hostile requests for every surface of the gateway, as hypothesis strategies, and a gateway in a
thread to throw them at (so hypothesis' synchronous `@given` can drive real HTTP).

    SURFACES                    name -> strategy of `Case` (method, path, headers, body)
    ThreadedGateway(settings)   context manager: .base, .tracebacks (log records that carry one)
    admin_operations(base)      schemathesis' operations of /admin/openapi.json, fetched with ADMIN_TOKEN
    check_admin_case(case)      one schemathesis case sent, its answer checked by SCHEMA_CHECKS

Used by tests/gateway/test_fuzz.py and test_admin_schemathesis.py (fast slices) and bench/fuzz.py
(>= 100,000 cases, and a longer schemathesis run). A case
is valid-looking often enough to reach the handlers (templates of real requests with one part
replaced), and garbage the rest of the time (random JSON, NaN, wrong types, bytes that are not
UTF-8, bodies without or with a wrong content type).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass, field

from hypothesis import strategies as st

from .serving import running_gateway

A2A_METHODS = ["SendMessage", "SendStreamingMessage", "GetTask", "ListTasks", "CancelTask", "SubscribeToTask",
               "CreateTaskPushNotificationConfig", "GetTaskPushNotificationConfig",
               "ListTaskPushNotificationConfigs", "DeleteTaskPushNotificationConfig", "GetExtendedAgentCard",
               "message/send", "tasks/get", "tasks/cancel"]
MCP_METHODS = ["initialize", "tools/list", "tools/call", "tasks/get", "tasks/list", "tasks/cancel", "tasks/result",
               "ping", "resources/list", "prompts/list", "notifications/initialized", "server/discover"]
MCP_ERAS = ["2025-06-18", "2025-11-25"]


@dataclass(frozen=True)
class Case:
    surface: str
    method: str
    path: str
    headers: dict
    body: bytes | None = None


# ------------------------------------------------------------------ values

_scalars = (st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _mutated(template: dict) -> st.SearchStrategy[dict]:
    """The template with one key (possibly nested once) set to a random value, or removed."""
    keys = sorted(template)

    def mutate(key, value, remove):
        doc = json.loads(json.dumps(template))
        if remove:
            doc.pop(key, None)
        elif isinstance(doc.get(key), dict) and doc[key] and isinstance(value, list) and value == []:
            doc[key] = {}
        else:
            doc[key] = value
        return doc
    return st.builds(mutate, st.sampled_from(keys), json_values, st.booleans())


MESSAGE = {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "hello"}]}
_garbage = (json_values.map(_dumps) | st.binary(max_size=64)
            | st.sampled_from([b"", b"{", b"[]", b"NaN", b'{"a": NaN}', b"\xff\xfe", b"\xc3\x28", b'"\xed\xa0\x80"',
                               b"null", b'{"jsonrpc": "2.0"}', b"1e999999", b"-0", b'{"":{"":{"":[]}}}']))


def _bodies(templates: list[dict]) -> st.SearchStrategy[bytes]:
    valid = st.sampled_from(templates)
    return (valid.map(_dumps) | valid.flatmap(_mutated).map(_dumps) | _garbage)


def _headers(extra: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    content_type = st.sampled_from([None, "application/json", "text/plain", "application/octet-stream",
                                    "application/json; charset=latin-1", "multipart/form-data"])

    def build(ct, more):
        return ({"content-type": ct} if ct else {}) | more
    return st.builds(build, content_type, extra)


# ------------------------------------------------------------------ surfaces

def _a2a_jsonrpc() -> st.SearchStrategy[Case]:
    params = [{"message": MESSAGE}, {"message": MESSAGE, "configuration": {"returnImmediately": True}},
              {"id": "no-such-task"}, {"pageSize": 5}, {"taskId": "t", "url": "http://127.0.0.1:9/"},
              {"message": MESSAGE, "tenant": "echo"}]
    requests = st.builds(lambda method, p, request_id: {"jsonrpc": "2.0", "id": request_id, "method": method,
                                                        "params": p},
                         st.sampled_from(A2A_METHODS) | st.text(max_size=20), st.sampled_from(params),
                         st.integers() | st.text(max_size=8) | st.none() | st.floats())
    templates = requests.flatmap(lambda doc: st.just(doc) | _mutated(doc))
    body = templates.map(_dumps) | _garbage
    version = st.sampled_from([{"A2A-Version": "1.0"}, {"A2A-Version": "0.3"}, {}, {"A2A-Version": "9"}])
    path = st.sampled_from(["/agents/echo/", "/agents/", "/agents/no-such-agent/"])
    return st.builds(lambda p, h, b: Case("a2a-jsonrpc", "POST", p, h, b), path, _headers(version), body)


def _a2a_rest() -> st.SearchStrategy[Case]:
    routes = st.sampled_from([("POST", "/agents/echo/message:send"), ("POST", "/agents/echo/message:stream"),
                              ("GET", "/agents/echo/tasks/no-such-task"), ("GET", "/agents/echo/tasks"),
                              ("POST", "/agents/echo/tasks/no-such-task:cancel"),
                              ("POST", "/agents/echo/tasks/x/pushNotificationConfigs"),
                              ("GET", "/agents/echo/tasks?pageSize=-1&historyLength=abc"),
                              ("POST", "/agents/echo/v1/message:send"), ("GET", "/agents/echo/v1/tasks/zz"),
                              ("POST", "/agents/no-such/message:send")])
    body = _bodies([{"message": MESSAGE}, {"message": MESSAGE, "configuration": {"returnImmediately": True}},
                    {"url": "http://127.0.0.1:9/"}])
    version = st.sampled_from([{"A2A-Version": "1.0"}, {}, {"A2A-Version": "0.3"}])
    return st.builds(lambda r, h, b: Case("a2a-rest", r[0], r[1], h, b if r[0] == "POST" else None),
                     routes, _headers(version), body)


def _mcp(era: str) -> st.SearchStrategy[Case]:
    params = [{"protocolVersion": era, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}},
              {"name": "echo", "arguments": {"message": "hi"}}, {"name": "echo", "arguments": {"message": "hi"},
                                                                   "task": {"ttl": 1000}},
              {"taskId": "no-such-task"}, {}, {"cursor": "!!"}]
    requests = st.builds(lambda method, p, request_id: {"jsonrpc": "2.0", "id": request_id, "method": method,
                                                        "params": p},
                         st.sampled_from(MCP_METHODS) | st.text(max_size=16), st.sampled_from(params),
                         st.integers() | st.text(max_size=8) | st.none())
    body = requests.flatmap(lambda doc: st.just(doc) | _mutated(doc)).map(_dumps) | _garbage
    headers = st.builds(lambda accept, session: {"accept": accept, "mcp-protocol-version": era} | session,
                        st.sampled_from(["application/json, text/event-stream", "application/json", "*/*", ""]),
                        st.sampled_from([{}, {"mcp-session-id": "nope"}]))
    return st.builds(lambda h, b: Case(f"mcp-{era}", "POST", "/mcp", h | {"content-type": "application/json"}, b),
                     headers, body)


def _admin() -> st.SearchStrategy[Case]:
    body = _bodies([{"name": "fuzzed", "card": {"name": "fuzzed", "skills": []}},
                    {"name": "fuzzed", "url": "http://127.0.0.1:9/"}, {"name": "x" * 300}])
    post = st.builds(lambda h, b: Case("admin", "POST", "/admin/agents", h, b), _headers(st.just({})), body)
    paths = st.builds(lambda m, p: Case("admin", m, p, {}), st.sampled_from(["GET", "DELETE"]),
                      st.sampled_from(["/admin/agents/no-such", "/admin/agents/%00", "/admin/agents/..%2f"])
                      | st.text(max_size=10).map(lambda q: "/admin/agents?limit=" + q.encode().hex()[:8]))
    return post | paths


SURFACES = {"a2a-jsonrpc": _a2a_jsonrpc(), "a2a-rest": _a2a_rest(), "mcp-2025-06-18": _mcp("2025-06-18"),
            "mcp-2025-11-25": _mcp("2025-11-25"), "admin": _admin()}


# ------------------------------------------------------------------ schemathesis on the admin API

ADMIN_TOKEN = "fuzz-admin-token-0123"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NEVER_ENDS = {"GET /admin/tasks/live"}     # an endless event stream: a client closes it, no answer to check


def _schema_checks() -> list:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                                   response_headers_conformance, response_schema_conformance,
                                                   status_code_conformance)
    # Not positive_data_acceptance: a schema-valid card URL of a host that does not exist is
    # rightly answered 422, which that check counts as a failure.
    return [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
            response_headers_conformance, negative_data_rejection]


def admin_operations(base: str) -> list:
    import schemathesis
    schema = schemathesis.openapi.from_url(f"{base}/admin/openapi.json", headers=ADMIN_AUTH, timeout=30)
    return [op for op in (result.ok() for result in schema.get_all_operations()) if op.label not in NEVER_ENDS]


def check_admin_case(case) -> None:
    """Raises schemathesis' FailureGroup naming every check the answer failed."""
    case.call_and_validate(headers=ADMIN_AUTH, checks=_schema_checks(), timeout=30)


# ------------------------------------------------------------------ a gateway in a thread

_WATCHED = ("", "uvicorn")     # the root, and uvicorn's own tree (it does not propagate to the root)


class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        if record.exc_info or record.exc_text or record.stack_info:
            self.records.append(record)


@dataclass
class ThreadedGateway:
    settings: dict
    base: str = ""
    handler: _Tracebacks = field(default_factory=_Tracebacks)

    def __enter__(self) -> "ThreadedGateway":
        self._ready, self._failed = threading.Event(), []
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or self._failed:
            raise RuntimeError(f"the gateway did not start: {self._failed}")
        for name in _WATCHED:       # after uvicorn configured its loggers (which drops their handlers)
            logging.getLogger(name).addHandler(self.handler)
        return self

    async def _serve(self) -> None:
        try:
            async with running_gateway(self.settings) as gw:
                self.base = gw.base
                self._stop = asyncio.Event()
                self._loop = asyncio.get_running_loop()
                self._ready.set()
                await self._stop.wait()
        except Exception as e:      # reported to __enter__
            self._failed.append(repr(e))
            self._ready.set()

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        for name in _WATCHED:
            logging.getLogger(name).removeHandler(self.handler)

    @property
    def tracebacks(self) -> list[logging.LogRecord]:
        return self.handler.records
