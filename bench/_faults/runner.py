"""Run one fault kind on one backend and judge the result (see kinds.py for the expectation)."""

from __future__ import annotations

import asyncio
import tempfile
import time
import traceback
from pathlib import Path

from .kinds import KINDS, Kind, mount_small, unmount
from .rigs import InProc, Procs, clean
from .tally import Tally

FULL_DISK = "4m"          # the capped data directory of the full-data-dir kind
SEGMENT_BYTES = 1 << 20   # small segments, so a capped disk fills at a segment boundary too


def judge(kind: Kind, summary: dict) -> bool:
    bad = summary["lost"] + summary["stuck"] + summary["duplicated"] + summary["failed_no_reason"]
    if not kind.permanent:
        bad += summary["failed_with_reason"]
    if kind.expect == "completed":
        bad += summary["canceled"]
    return bad == 0 and summary["accepted"] > 0


def _rig(kind: Kind, backend: str, workdir: Path, address: str | None):
    if kind.rig == "inproc":
        return InProc(backend, workdir, address=address, gateway=dict(kind.gateway))
    if kind.name == "full-data-dir":
        return Procs(backend, workdir, env={"TOPICBRIDGE_LITE__SEGMENT_BYTES": str(SEGMENT_BYTES)},
                     engine_settings={"segment_bytes": SEGMENT_BYTES})
    return Procs(backend, workdir, env={f"TOPICBRIDGE_GATEWAY__{key.upper()}": str(value)
                                        for key, value in kind.gateway})


async def run_kind(name: str, backend: str, n: int = 20, bound: float = 30.0, *,
                   address: str | None = None, workdir: Path | None = None) -> dict:
    """One kind on one backend: the tally, `recovery_s` (from the fault's end until every accepted
    task had settled; None if some never did) and `ok`."""
    kind = KINDS[name]
    if backend not in kind.backends:
        raise ValueError(f"fault kind {name!r} does not apply to backend {backend!r} (only {kind.backends})")
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"faults-{name}-"))
    result: dict = {"kind": name, "backend": backend}
    rig = _rig(kind, backend, workdir, address)
    mounted = kind.name == "full-data-dir"
    if mounted:
        mount_small(rig.data_dir, FULL_DISK)
    tally = Tally(kind.capability)
    try:
        async with rig:
            ended = await kind.run(rig, tally, n)
            await tally.settle(rig.caller, bound)
            settled_at = time.monotonic()
    except Exception as e:      # a kind that could not even run is a result too: say why
        result |= {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=4)[-1500:],
                   "output": _tail(rig)}
        ended = settled_at = None
    finally:
        if mounted:
            unmount(rig.data_dir)
        clean(workdir)
    summary = tally.summary()
    result |= summary
    result["recovery_s"] = round(settled_at - ended, 3) if ended and not summary["stuck"] else None
    result["ok"] = "error" not in result and judge(kind, summary)
    if not result["ok"] and "output" not in result:     # what the processes said, to see why
        result["output"] = _tail(rig)
    return result


def _tail(rig) -> str:
    procs = [getattr(rig, "gateway", None), getattr(rig, "engine", None)]
    return "\n".join(f"--- {p.name}\n{p.tail(40)}" for p in procs if hasattr(p, "tail"))[-6000:]


def run_sync(name: str, backend: str, **kw) -> dict:
    return asyncio.run(run_kind(name, backend, **kw))
