"""A fast subset of bench.faults in `make test`: each kind causes its fault from outside the code
under test (a signal to a real process, FaultyBackend around the real engine, a misbehaving A2A
agent process, a client hanging up) and every accepted task must end: COMPLETED, FAILED with a
reason where the fault is permanent, CANCELED for the cancels; none lost, stuck or duplicated.
The whole list of kinds, on every backend, is `python -m bench.faults`."""

import pytest

from bench._faults.runner import run_kind

TASKS = 6
BOUND = 20.0


async def check(kind: str, backend: str = "embedded") -> dict:
    result = await run_kind(kind, backend, n=TASKS, bound=BOUND)
    assert result["ok"], result
    assert result["lost"] == 0 and result["stuck"] == 0 and result["duplicated"] == 0
    return result


async def test_a_gateway_killed_with_sigkill_mid_send_ends_every_accepted_task_after_its_restart():
    result = await check("gateway-sigkill")
    assert result["completed"] == result["accepted"]


async def test_a_gateway_killed_with_sigkill_on_a_remote_engine_ends_every_accepted_task_after_its_restart():
    # its reply events and its workers' tasks come back at once (a reopened client id, a short
    # invisibility), not after the 30 s / 60 s they used to wait: those would be stuck at BOUND
    result = await check("gateway-sigkill", "remote")
    assert result["completed"] == result["accepted"]


async def test_an_engine_killed_with_sigkill_mid_send_ends_every_accepted_task_once_it_is_back():
    result = await check("engine-sigkill", "remote")
    assert result["completed"] == result["accepted"]


async def test_a_worker_killed_mid_task_has_its_tasks_finished_by_another_worker():
    result = await check("worker-sigkill", "remote")
    assert result["completed"] == result["accepted"]


@pytest.mark.parametrize("op", ["publish", "put", "ack"])   # poll: python -m bench.faults
async def test_a_backend_operation_failing_for_a_while_loses_no_accepted_task(op):
    result = await check(f"{op}-failing")
    assert result["completed"] == result["accepted"]


async def test_an_agent_that_is_down_fails_each_task_with_a_reason():
    result = await check("agent-down")
    assert result["failed_with_reason"] == result["accepted"]


async def test_an_agent_answering_http_500_fails_each_task_with_a_reason():
    result = await check("agent-erroring")
    assert result["failed_with_reason"] == result["accepted"]


async def test_a_client_hanging_up_mid_stream_leaves_its_task_running_to_completion():
    result = await check("client-disconnect")
    assert result["completed"] == result["accepted"]


async def test_tasks_canceled_while_waiting_for_input_end_canceled():
    result = await check("cancel-input-required")
    assert result["canceled"] == result["accepted"]


async def test_an_agent_that_never_answers_fails_its_tasks_with_a_reason_by_their_deadline():
    result = await check("agent-hanging")
    assert result["failed_with_reason"] == result["accepted"]
    assert all("deadline" in why for why in result["failure_reasons"])


async def test_an_agent_answering_megabytes_fails_its_tasks_with_a_reason():
    result = await check("agent-huge")
    assert result["failed_with_reason"] == result["accepted"]


async def test_a_log_corrupted_mid_segment_is_refused_naming_segment_and_offset_and_serves_after_repair():
    result = await check("corrupted-log")
    assert "corrupt commit log" in result["refused_start"] and "at offset" in result["refused_start"]
    assert result["repair"].startswith("repaired: ")
    # every task ends: completed, or (one the cut rolled back, whose envelope it took or whose
    # deadline passed while the gateway was down) failed by its deadline, saying so
    assert result["completed"] + result["failed_with_reason"] == result["accepted"]
    assert result["failed_with_reason"] <= result["rolled_back_by_repair"]
    assert all(why.startswith("deadline exceeded") for why in result.get("failure_reasons", {}))
