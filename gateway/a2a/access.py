"""Who may see which task through the A2A surface.

A task records the capability it was sent to and the principal that sent it (TaskService.submit,
`metadata["topicbridge"]`). Through A2A it is visible, cancellable and subscribable, and its
push configs are readable, only

- through its own capability's routes (`/agents/<name>/…`, or the tenant naming it), and
- by the principal that created it (gateway/http/auth.py: a token's digest, a JWT's issuer and
  subject; "" when the surface needs no authentication).

Anything else answers "task not found", exactly as for a task that does not exist, so a caller
cannot probe for other callers' task ids. ListTasks pages the caller's own tasks from their own
order rows (index.scope_key). Seeing every task is for admins, through the admin API.
"""

from __future__ import annotations

from a2a.server.context import ServerCallContext
from a2a.types import a2a_pb2

from gateway.errors import a2a_error
from gateway.http.auth import ANONYMOUS, Principal
from gateway.http.errors import ForbiddenError
from gateway.tasks import errors as task_errors
from gateway.tasks.index import scope_key
from gateway.tasks.relay import recorded
from gateway.tasks.service import recorded_principal

PRINCIPAL_STATE = "topicbridge.principal"     # ServerCallContext.state key set by the routes' builder


def principal_of(context: ServerCallContext) -> Principal:
    return context.state.get(PRINCIPAL_STATE) or ANONYMOUS


def require_use(context: ServerCallContext, capability: str) -> None:
    """The guard checked `/agents/<name>/`; a capability named by tenant is checked here."""
    if not principal_of(context).may_use(capability):
        raise a2a_error(ForbiddenError(f"capability {capability[:100]!r}"))


def visible(task: a2a_pb2.Task, capability: str, context: ServerCallContext) -> bool:
    own_capability, _ = recorded(task)
    return own_capability == capability and recorded_principal(task) == principal_of(context).id


def check(task: a2a_pb2.Task | None, task_id: str, capability: str, context: ServerCallContext) -> a2a_pb2.Task:
    """`task` when the caller may see it through `capability`; else the A2A TaskNotFoundError."""
    if task is None or not visible(task, capability, context):
        raise a2a_error(task_errors.TaskNotFoundError(task_id))
    return task


def list_scope(capability: str, context: ServerCallContext) -> str:
    return scope_key(capability, principal_of(context).id)
