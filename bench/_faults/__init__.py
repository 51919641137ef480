"""The fault suite's parts, shared by `bench.faults` and tests/faults/:

    faulty.py   FaultyBackend: the Backend port around a real started backend, failing or
                delaying publish, table put, poll and ack on demand
    procs.py    real processes: `topicbridge serve`, `topicbridge engine`, a native worker and
                misbehaving A2A agents, each killable with SIGKILL/SIGTERM and restartable
    client.py   the caller: A2A JSON-RPC over httpx (SendMessage, GetTask, CancelTask, streams)
    tally.py    every accepted task's end: completed, failed with a reason, lost, stuck, duplicated
    kinds.py    the fault kinds and the backends each applies to
"""
