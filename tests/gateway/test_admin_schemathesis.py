"""Schemathesis' stateless checks on the admin API, driven by its own OpenAPI 3.1 document
(/admin/openapi.json) against a real gateway with admin auth: schema-valid and schema-invalid
requests to every operation; no answer may be a 5xx, or have a status, content type, header or
body the document does not declare, or accept invalid data; nothing may log a traceback. A fast
slice; bench/fuzz.py runs longer (--schemathesis)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from .fuzz_cases import ADMIN_AUTH, ADMIN_TOKEN, NEVER_ENDS, ThreadedGateway, admin_operations, check_admin_case

EXAMPLES = 25           # per operation and mode; POST /admin/agents resolves each host it is given
OPERATIONS = ["POST /admin/agents", "GET /admin/agents", "GET /admin/agents/{name}", "DELETE /admin/agents/{name}",
              "POST /admin/agents/{name}/refresh", "GET /admin/tasks", "GET /admin/tasks/{task_id}",
              "GET /admin/tasks/{task_id}/events", "POST /admin/tasks/{task_id}/cancel"]
# (schemathesis leaves out the operation that serves the document it was loaded from)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    settings_ = {"lite": {"data_dir": str(tmp_path_factory.mktemp("schemathesis") / "engine"), "tick": 0.005},
                 "gateway": {"demo": True, "a2a_wait_seconds": 5, "bearer_tokens": [ADMIN_TOKEN]}}
    with ThreadedGateway(settings_) as gw, httpx.Client(base_url=gw.base, timeout=30, headers=ADMIN_AUTH) as http:
        message = {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "hello"}]}
        done = http.post("/agents/echo/", headers={"A2A-Version": "1.0"},
                         json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}})
        assert done.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", done.text
        gw.task_id = done.json()["result"]["task"]["id"]
        gw.operations = {op.label: op for op in admin_operations(gw.base)}
        yield gw


def test_the_document_lists_every_admin_operation_schemathesis_runs(gateway):
    assert set(gateway.operations) == set(OPERATIONS), set(gateway.operations) ^ set(OPERATIONS)
    assert NEVER_ENDS.isdisjoint(gateway.operations)


def test_the_admin_api_refuses_a_caller_without_the_token_as_its_document_says(gateway):
    case = gateway.operations["GET /admin/agents"].Case()
    response = case.call(headers={"Authorization": "Bearer not-the-token-at-all"})
    assert response.status_code == 401 and response.json()["error"]["type"]
    case.validate_response(response)


# A task id is any non-empty string: there is no invalid one to send in a path.
NOTHING_TO_NEGATE = {"GET /admin/tasks/{task_id}", "GET /admin/tasks/{task_id}/events",
                     "POST /admin/tasks/{task_id}/cancel"}
RUNS = [(op, mode) for op in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if not (mode is GenerationMode.NEGATIVE and op in NOTHING_TO_NEGATE)]


def test_a_card_url_the_standard_library_cannot_split_is_a_400_naming_the_field(gateway):
    # schemathesis found it: urlsplit raises ValueError on an unclosed IPv6 bracket, which was a 500
    for url in ("http://[", "http://[::1", "[::1"):
        response = httpx.post(f"{gateway.base}/admin/agents", headers=ADMIN_AUTH, json={"card_url": url})
        assert response.status_code == 400, response.text
        assert "card_url" in response.json()["error"]["message"]
    assert not gateway.tracebacks


def test_a_host_header_the_standard_library_cannot_split_does_not_break_registering(gateway):
    response = httpx.post(f"{gateway.base}/admin/agents", headers=ADMIN_AUTH | {"Host": "[::1"},
                          json={"card_url": "http://127.0.0.1:9/"})
    assert response.status_code < 500, response.text
    assert not gateway.tracebacks


@pytest.mark.parametrize("operation", sorted(NOTHING_TO_NEGATE))
def test_the_answers_about_a_real_task_conform_to_the_document(gateway, operation):
    # generated ids name no task (404): the 200 answers, the event stream's included, need a real one
    case = gateway.operations[operation].Case(path_parameters={"task_id": gateway.task_id})
    response = case.call(headers=ADMIN_AUTH, timeout=30)
    assert response.status_code == (409 if operation.endswith("/cancel") else 200), response.text
    if operation.endswith("/events"):
        assert response.text.startswith("event: event\n") and response.text.endswith("event: end\ndata: {}\n\n")
    check_admin_case(case)
    assert not gateway.tracebacks


@pytest.mark.parametrize(("operation", "mode"), RUNS, ids=[f"{op}-{mode.value}" for op, mode in RUNS])
def test_every_answer_conforms_to_the_document_and_none_is_a_5xx(gateway, operation, mode):
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(gateway.operations[operation].as_strategy(generation_mode=mode))
    def check(case):
        check_admin_case(case)
        assert not gateway.tracebacks, gateway.tracebacks[0].getMessage()

    check()
