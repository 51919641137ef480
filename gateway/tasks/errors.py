"""What can go wrong with a task, one class per case. The protocol layers map each class to
their own error through the one table in `gateway/errors.py`; they never look at messages.

    TaskError
     ├── TaskNotFoundError          no such task (or not visible to this caller)
     ├── UnknownCapabilityError     the capability a call addresses is not registered
     ├── NoLiveWorkerError          the capability has no live worker to take a new task now
     ├── TaskTerminalError          the task has ended: it cannot be continued
     ├── TaskRunningError           the task does not wait for input: it cannot be continued
     ├── ContextMismatchError       the message names another context than the task's
     ├── WrongCapabilityError       the task belongs to another capability than the one addressed
     ├── NotCancelableError         the task has ended: it cannot be canceled
     └── SubscriberTooSlowError     a watcher fell too far behind and was cut off
"""

from __future__ import annotations


class TaskError(Exception):
    """A task-level problem; `task_id` names the task (or the capability, for an unknown one)."""

    def __init__(self, task_id: str, reason: str) -> None:
        self.task_id, self.reason = task_id, reason
        super().__init__(reason)

    def to_dict(self) -> dict:
        data = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"type": type(self).__name__, "message": str(self), **data}


class TaskNotFoundError(TaskError):
    def __init__(self, task_id: str) -> None:
        super().__init__(task_id, f"task {task_id[:200]!r} not found")


class UnknownCapabilityError(TaskError):
    def __init__(self, capability: str) -> None:
        self.capability = capability
        super().__init__("", f"capability {capability[:200]!r} is not registered")


class NoLiveWorkerError(TaskError):
    def __init__(self, capability: str, why: str, retry_after: float = 5.0) -> None:
        self.capability, self.retry_after = capability, retry_after
        super().__init__("", f"capability {capability[:200]!r} has no worker online to take the task ({why}); "
                             f"start one, or retry after {retry_after:g} s")


class TaskTerminalError(TaskError):
    pass


class TaskRunningError(TaskError):
    pass


class ContextMismatchError(TaskError):
    pass


class WrongCapabilityError(TaskError):
    pass


class NotCancelableError(TaskError):
    pass


class SubscriberTooSlowError(TaskError):
    def __init__(self, task_id: str) -> None:
        super().__init__(task_id, "subscriber too slow; re-subscribe to continue")
