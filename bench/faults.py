"""The fault suite as a benchmark: per fault kind and backend, what a client saw.

    python -m bench.faults [--kinds gateway-sigkill,agent-down] [--backend embedded,remote]
                           [--tasks 20] [--bound 30]
    python -m bench.faults --backend kafka,rocketmq        # the broker kinds (starts the brokers)

One JSON object: `results` has one entry per kind and backend with sent, accepted, refused,
completed, failed_with_reason, failed_no_reason, canceled, lost, stuck, duplicated (as seen by
the client through GetTask), recovery_s (from the fault's end until every accepted task had
settled) and ok (kinds.py says what each kind expects). Kinds that do not apply to a backend
are skipped; `failing` lists the kinds that were not ok. Faults come from outside the code under
test: signals to real processes, a capped tmpfs, bytes changed on disk, a client hanging up, and
FaultyBackend (bench/_faults/faulty.py) around the real backend for the port faults.
"""

from __future__ import annotations

import argparse
import asyncio

from ._faults.brokers import BROKER_KINDS, run_broker_kind
from ._faults.kinds import KINDS
from ._faults.runner import run_kind
from ._util import emit, environment, progress, words

BACKENDS = ("embedded", "remote", "kafka", "rocketmq")


async def main_async(args) -> dict:
    results, failing = [], []
    for backend in args.backend:
        if backend in ("kafka", "rocketmq"):
            picked = [k for k in args.kinds if k in BROKER_KINDS and backend in BROKER_KINDS[k]] \
                if args.kinds else [k for k, b in BROKER_KINDS.items() if backend in b]
            runs = [(k, run_broker_kind(k, backend, n=args.tasks, bound=args.bound)) for k in picked]
        else:
            picked = [k for k in (args.kinds or KINDS) if k in KINDS and backend in KINDS[k].backends]
            runs = [(k, run_kind(k, backend, n=args.tasks, bound=args.bound)) for k in picked]
        for name, run in runs:
            progress(f"{name} on {backend}")
            result = await run
            progress(f"  ok={result['ok']} completed={result['completed']} lost={result['lost']} "
                     f"stuck={result['stuck']} recovery_s={result['recovery_s']} {result.get('error', '')}")
            results.append(result)
            if not result["ok"]:
                failing.append(f"{name}/{backend}")
    return {"bench": "faults", "tasks_per_kind": args.tasks, "bound_s": args.bound, "environment": environment(),
            "kinds": len({r["kind"] for r in results}), "results": results, "failing": failing}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", type=words([*KINDS, *BROKER_KINDS]), default=None,
                        help="comma-separated kinds (default: every kind that applies)")
    parser.add_argument("--backend", type=words(BACKENDS), default=["embedded", "remote"])
    parser.add_argument("--tasks", type=int, default=20, help="tasks per kind (default %(default)s)")
    parser.add_argument("--bound", type=float, default=30.0,
                        help="seconds after the fault a task may take to settle before it counts as stuck")
    args = parser.parse_args()
    emit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
