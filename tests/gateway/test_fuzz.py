"""A fast slice of the fuzz suite (bench/fuzz.py runs >= 100,000 cases): hostile requests on every
HTTP surface, and hostile bytes where the bus hands the gateway envelopes and reply events. No
request may be answered 5xx, and nothing may log a traceback."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.tasks.envelope import ControlEvent, EnvelopeError, ReplyEvent, TaskEnvelope

from .fuzz_cases import SURFACES, Case, ThreadedGateway, json_values

EXAMPLES = 120          # per surface: ~60 s for the module on a loaded 2-core machine


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    settings_ = {"lite": {"data_dir": str(tmp_path_factory.mktemp("fuzz") / "engine"), "tick": 0.005},
                 "gateway": {"demo": True, "a2a_wait_seconds": 2}}
    with ThreadedGateway(settings_) as gw, httpx.Client(base_url=gw.base, timeout=30) as http:
        gw.http = http
        yield gw


def answer(gw, case: Case) -> httpx.Response:
    return gw.http.request(case.method, case.path, headers=case.headers, content=case.body)


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_no_hostile_request_gets_a_5xx_or_logs_a_traceback(gateway, surface):
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(SURFACES[surface])
    def check(case):
        response = answer(gateway, case)
        assert response.status_code < 500, (case, response.text[:300])
        assert not gateway.tracebacks, (case, gateway.tracebacks[0].getMessage())

    check()


_bus_bytes = st.binary(max_size=200) | json_values.map(lambda v: __import__("json").dumps(v).encode())


@settings(max_examples=400, deadline=None, database=None)
@given(_bus_bytes, st.sampled_from([TaskEnvelope, ReplyEvent, ControlEvent]))
def test_bytes_on_the_bus_decode_or_raise_envelope_error_only(raw, kind):
    try:
        kind.decode(raw)
    except EnvelopeError:
        pass
