"""Workers: the worker SDK for native agents, and bridges that forward tasks to A2A agents.

    from gateway.workers import Worker, TaskContext
"""

from .worker import TaskContext, Worker

__all__ = ["TaskContext", "Worker"]
