"""Every accepted task's end, as the client sees it through GetTask.

    completed            COMPLETED
    failed_with_reason   FAILED (or REJECTED) with a status message saying why
    failed_no_reason     FAILED without one: a defect, counted apart
    canceled             CANCELED (the expected end of the cancel kinds)
    input_required       waiting for the caller's answer: settled, not stuck
    lost                 GetTask says the task does not exist although SendMessage accepted it
    stuck                not settled within the bound (GetTask still answers SUBMITTED/WORKING,
                         or keeps failing)
    duplicated           a task whose answer shows up more than once (two artifacts where the
                         agent sends one)

`refused` counts sends the gateway did not accept (an error answer or no answer during a fault):
they are not tasks, but a kind reports them so a reader sees how many calls the fault cost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from .client import TASK_NOT_FOUND, TERMINAL, Caller, Refused, reason, state

SETTLED = TERMINAL | {"TASK_STATE_INPUT_REQUIRED"}


@dataclass
class Tally:
    capability: str
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    ends: dict[str, dict] = field(default_factory=dict)     # task id -> final task (or marker)
    notes: dict[str, object] = field(default_factory=dict)  # what a kind reports besides the counts

    def sent(self, result: dict | Refused | str) -> str | None:
        """Record a send's outcome; the task id if the gateway accepted it."""
        if isinstance(result, Refused):
            self.refused += 1
            key = result.reason[:80]
            self.refusals[key] = self.refusals.get(key, 0) + 1
            return None
        task_id = result if isinstance(result, str) else result.get("id")
        if task_id:
            self.accepted.append(task_id)
        return task_id

    async def settle(self, caller: Caller, bound: float) -> float:
        """Follow every accepted task until it settles or `bound` seconds pass; the seconds taken."""
        start = time.monotonic()
        pending = set(self.accepted) - set(self.ends)
        last: dict[str, dict | Refused] = {}
        while pending and time.monotonic() - start < bound:
            results = await asyncio.gather(*(caller.get(self.capability, t) for t in pending))
            for task_id, result in zip(list(pending), results):
                last[task_id] = result
                if isinstance(result, Refused) and result.code == TASK_NOT_FOUND:
                    self.ends[task_id] = {"lost": result.reason}
                elif isinstance(result, dict) and state(result) in SETTLED:
                    self.ends[task_id] = result
            pending -= set(self.ends)
            if pending:
                await asyncio.sleep(0.1)    # sleep-ok: GetTask polling is what a client would do
        for task_id in pending:
            result = last.get(task_id)
            self.ends[task_id] = {"stuck": state(result) if isinstance(result, dict) else getattr(result, "reason", "")}
        return time.monotonic() - start

    def summary(self) -> dict:
        counts = dict.fromkeys(("completed", "failed_with_reason", "failed_no_reason", "canceled",
                                "input_required", "lost", "stuck", "duplicated"), 0)
        reasons: dict[str, int] = {}
        stuck_states: dict[str, int] = {}
        for task in self.ends.values():
            if "lost" in task:
                counts["lost"] += 1
                continue
            if "stuck" in task:
                counts["stuck"] += 1
                stuck_states[task["stuck"]] = stuck_states.get(task["stuck"], 0) + 1
                continue
            s = state(task)
            if len(task.get("artifacts", [])) > 1:
                counts["duplicated"] += 1
            if s == "TASK_STATE_COMPLETED":
                counts["completed"] += 1
            elif s in ("TASK_STATE_FAILED", "TASK_STATE_REJECTED"):
                why = reason(task)
                counts["failed_with_reason" if why else "failed_no_reason"] += 1
                if why:
                    reasons[why[:100]] = reasons.get(why[:100], 0) + 1
            elif s == "TASK_STATE_CANCELED":
                counts["canceled"] += 1
            else:
                counts["input_required"] += 1
        out = {"sent": len(self.accepted) + self.refused, "accepted": len(self.accepted),
               "refused": self.refused, **counts}
        if reasons:
            out["failure_reasons"] = reasons
        if self.refusals:
            out["refusals"] = self.refusals
        if stuck_states:
            out["stuck_states"] = stuck_states
        return out | self.notes
