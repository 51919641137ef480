"""Inputs that used to get a 5xx or a traceback: NaN in the admin API, bodies that are not UTF-8,
and malformed JSON-RPC (one log line at most, rate-limited: gateway/http/quiet.py)."""

from __future__ import annotations

import logging

import pytest

from gateway.http.quiet import QuietRequestErrors

from .serving import running_gateway

V1 = {"A2A-Version": "1.0"}


@pytest.fixture
async def gw(tmp_path):
    async with running_gateway({"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                                "gateway": {"demo": True}}) as gw:
        yield gw


@pytest.mark.parametrize("body", [b'{"name": "x", "card": NaN}', b'{"name": "x", "url": Infinity}',
                                  b'{"name": -Infinity}'])
async def test_nan_or_infinity_in_an_admin_body_is_a_400_naming_it(gw, body):
    answer = await gw.http.post("/admin/agents", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and "not a JSON number" in answer.json()["error"]["message"]


@pytest.mark.parametrize("path, headers", [("/agents/echo/message:send", V1),
                                           ("/agents/echo/message:send", V1 | {"content-type": "text/plain"}),
                                           ("/agents/echo/", V1), ("/admin/agents", {})])
async def test_a_body_that_is_not_utf8_is_a_400(gw, path, headers):
    answer = await gw.http.post(path, content=b'{"message": "\xff\xfe"}', headers=headers)
    assert answer.status_code == 400 and "not UTF-8" in answer.text


async def test_a_utf8_sequence_split_across_chunks_passes_and_a_cut_one_does_not(gw):
    text = "caf\u00e9".encode()          # the last character is two bytes

    async def split(body: bytes, at: int):
        yield body[:at]
        yield body[at:]

    doc = b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"messageId": "m", ' \
          b'"role": "ROLE_USER", "parts": [{"text": "' + text + b'"}]}}}'
    whole = await gw.http.post("/agents/echo/", content=split(doc, doc.index(text) + len(text) - 1), headers=V1)
    assert whole.status_code == 200 and "result" in whole.json(), whole.text
    cut = await gw.http.post("/agents/echo/", content=split(b'{"a": "' + text[:-1], 3), headers=V1)
    assert cut.status_code == 400 and "not UTF-8" in cut.text


async def test_malformed_jsonrpc_logs_no_traceback_and_few_lines(gw, caplog):
    caplog.set_level(logging.INFO, logger="a2a")
    bodies = [b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": "x"}', b"[1, 2]",
              b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": 5}}']
    for i in range(60):
        answer = await gw.http.post("/agents/echo/", content=bodies[i % 3], headers=V1)
        assert answer.status_code == 200 and "error" in answer.json()
    logged = [r for r in caplog.records if r.name.startswith("a2a")]
    assert not [r for r in logged if r.exc_info or r.exc_text]
    assert len(logged) <= 10, [r.getMessage() for r in logged]


def test_the_quiet_filter_keeps_the_exception_type_and_counts_what_it_left_out():
    now = [0.0]
    quiet = QuietRequestErrors(per_window=3, window=60, clock=lambda: now[0])

    def record(i: int) -> logging.LogRecord:
        try:
            raise ValueError(f"bad {i}")
        except ValueError:
            import sys
            return logging.LogRecord("a2a.x", logging.ERROR, __file__, 1, "Failed %s", (i,), sys.exc_info())

    passed = [r for r in (record(i) for i in range(10)) if quiet.filter(r)]
    assert [r.getMessage() for r in passed] == [f"Failed {i} (ValueError: bad {i})" for i in range(3)]
    assert all(r.exc_info is None for r in passed)
    now[0] = 61
    later = record(10)
    assert quiet.filter(later) and "7 similar lines left out" in later.getMessage()
