"""Cost of a new row's key and of a page in a big table: the lite engine's tables
(lite_engine.kv.Table) and the brokers' changelog tables keep their keys sorted for paged scans.

    python -m bench.table_scale [--rows 1000000] [--ops 5000]

Per size (1,000 rows, and --rows): µs per insert of a new random key (a task id, uuid4 hex, as
the task index writes one per task), per remove, and per 50-row page. The baseline, in the same
run: `list+insort`, a plain list kept sorted with bisect.insort, what the tables used before
(each change shifts the list: O(n)). `insert_vs_insort` is the table's insert at --rows over the
baseline's; `insert_flatness` big over small (cache misses keep it above 1 for both).
"""

from __future__ import annotations

import argparse
import bisect
import json
import time
import uuid

from lite_engine.kv import Table


class InsortTable:
    """The old way, for comparison: a plain list kept sorted with bisect."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[bytes, int]] = {}      # as Table holds them
        self.keys: list[str] = []

    def set(self, key: str, value: bytes, version: int) -> None:
        if key not in self.rows:
            bisect.insort(self.keys, key)
        self.rows[key] = (value, version)

    def remove(self, key: str) -> bool:
        self.rows.pop(key)
        del self.keys[bisect.bisect_left(self.keys, key)]
        return True

    def page(self, prefix: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        keys, out = self.keys, []
        i = bisect.bisect_right(keys, after) if after >= prefix else bisect.bisect_left(keys, prefix)
        while i < len(keys) and len(out) < limit and keys[i].startswith(prefix):
            out.append((keys[i], self.rows[keys[i]][0]))
            i += 1
        return out


def measure(factory, rows: int, ops: int) -> dict:
    table = factory()
    for _ in range(rows):
        table.set(uuid.uuid4().hex, b"x", 1)
    fresh = [uuid.uuid4().hex for _ in range(ops)]
    t0 = time.perf_counter()
    for key in fresh:
        table.set(key, b"x", 1)
    t1 = time.perf_counter()
    for key in fresh:
        table.remove(key)
    t2 = time.perf_counter()
    out = {"insert_us": round((t1 - t0) / ops * 1e6, 2), "remove_us": round((t2 - t1) / ops * 1e6, 2)}
    starts = [uuid.uuid4().hex[:4] for _ in range(ops)]
    t3 = time.perf_counter()
    for after in starts:
        table.page("", after, 50)
    out["page50_us"] = round((time.perf_counter() - t3) / ops * 1e6, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ops", type=int, default=5000)
    args = parser.parse_args()
    result: dict = {"rows": args.rows, "ops": args.ops}
    for name, factory in (("table", Table), ("list+insort", InsortTable)):
        small, big = measure(factory, 1000, args.ops), measure(factory, args.rows, args.ops)
        result[name] = {"1000": small, str(args.rows): big,
                        "insert_flatness": round(big["insert_us"] / small["insert_us"], 2)}
    big = str(args.rows)
    result["insert_vs_insort"] = round(result["table"][big]["insert_us"] / result["list+insort"][big]["insert_us"], 3)
    result["remove_vs_insort"] = round(result["table"][big]["remove_us"] / result["list+insort"][big]["remove_us"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
