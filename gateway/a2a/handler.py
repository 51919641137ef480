"""The gateway's A2A request handler: the a2a-sdk `RequestHandler` interface over TaskService.

The SDK's route factories parse, version-check and serialize; this class only maps each method
onto the task flow (DESIGN.md "How a task flows"). It keeps no per-task state of its own: a
SendMessage is `TaskService.submit` plus, unless `return_immediately`, the fold of the task's
events until it ends or needs input. The SDK's `DefaultRequestHandler` costs ~2 ms of CPU a call
in its active-task machinery and tracing; none of that is on this path.

A SendMessage whose message names a task (`task_id`) continues it (`TaskService.resume`), as A2A
1.0 multi-turn does: only a task waiting for input (INPUT_REQUIRED, AUTH_REQUIRED) takes one. A
finished task cannot be restarted and a running one takes no message (UnsupportedOperationError,
as the SDK's own handler answers); an unknown task is TaskNotFoundError; a `context_id` other
than the task's is InvalidParamsError.

Errors: task and backend errors become the SDK's A2A error classes the gateway's error table
(`gateway/errors.py`) names for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types import a2a_pb2
from a2a.utils import constants
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError, UnsupportedOperationError
from a2a.utils.task import (
    apply_history_length,
    validate_history_length,
    validate_page_size,
)
from google.api.field_behavior_pb2 import FieldBehavior, field_behavior
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from adapters.errors import BackendError

from gateway.errors import a2a_error
from gateway.registry.capabilities import Registry
from gateway.tasks import errors as task_errors
from gateway.tasks import fold
from gateway.tasks.index import PageTokenError
from gateway.tasks.service import TaskError, TaskService, Watch
from gateway.workers import call_mode
from . import access
from .push import PushService, PushUrlError

log = logging.getLogger("topicbridge.a2a")

CAPABILITY_STATE = "topicbridge.capability"   # ServerCallContext.state key set by the routes


class GatewayRequestHandler(RequestHandler):
    def __init__(self, tasks: TaskService, registry: Registry, push: PushService, *,
                 cancel_wait: float = 2.0, blocking_wait: float | None = None) -> None:
        self.tasks = tasks
        self.registry = registry
        self.push = push
        self.cancel_wait = cancel_wait     # how long CancelTask waits to report the canceled state
        # how long a blocking SendMessage waits before it answers with the task as it is then
        # (still running: the client follows it with GetTask or SubscribeToTask)
        self.blocking_wait = blocking_wait

    # ------------------------------------------------------------ messages

    async def on_message_send(self, params: a2a_pb2.SendMessageRequest,
                              context: ServerCallContext) -> a2a_pb2.Task | a2a_pb2.Message:
        """The task, or the agent's Message when it answered with one (fold.message_reply)."""
        config = params.configuration
        task, watch = await self._submit(params, context, blocking=not config.return_immediately)
        if not config.return_immediately:
            task = await self._until_settled(task, watch)
        return fold.message_reply(task) or apply_history_length(task, config)

    async def on_message_send_stream(self, params: a2a_pb2.SendMessageRequest,
                                     context: ServerCallContext) -> AsyncGenerator:
        task, watch = await self._submit(params, context)
        yield apply_history_length(task, params.configuration)
        try:
            async for event in watch.events():
                yield payload(event)
        except TaskError as e:
            raise a2a_error(e) from None

    async def _submit(self, params: a2a_pb2.SendMessageRequest, context: ServerCallContext,
                      blocking: bool = False) -> tuple[a2a_pb2.Task, Watch]:
        require_fields(params)
        validate_history_length(params.configuration)
        name = await self._capability(context)
        push = params.configuration.task_push_notification_config \
            if params.configuration.HasField("task_push_notification_config") else None
        if push is not None:
            await self._check_push_url(push.url)
        metadata = json_format.MessageToDict(params.metadata) if params.HasField("metadata") else None
        if blocking and push is None:       # nobody sees intermediate events: a bridge may skip the stream
            metadata = call_mode.mark_blocking(metadata)
        try:
            if params.message.task_id:      # a continuation (multi-turn)
                await self._own(params.message.task_id, context)
                task, watch = await self.tasks.resume(params.message.task_id, params.message, capability=name,
                                                      metadata=metadata)
            else:
                task, watch = await self.tasks.submit(name, params.message, metadata=metadata,
                                                      principal=access.principal_of(context).id)
            if push is not None:
                with self.push.holding(task.id, push) as config:    # the relay hook sees it from now on
                    folded = await self.tasks.get(task.id)          # events folded before that, if any
                    await self.push.create(config)
                    if folded is not None and folded.status.state != a2a_pb2.TASK_STATE_SUBMITTED:
                        await self.push.publish_snapshot(folded)
        except (TaskError, BackendError) as e:
            raise a2a_error(e) from None
        return task, watch

    async def _capability(self, context: ServerCallContext) -> str:
        """The capability named by the route (`/agents/<name>/`, checked by the routes) or by
        the request's tenant (the gateway's own interfaces)."""
        name = context.state.get(CAPABILITY_STATE)
        if name:
            return name         # the guard checked the caller's right to it
        if not context.tenant:
            raise InvalidParamsError(message="no capability named: call /agents/<name>/ or set tenant to a "
                                             "skill id of the gateway's card")
        try:
            found = await self.registry.get(context.tenant)
        except BackendError as e:
            raise a2a_error(e) from None
        if found is None:
            raise a2a_error(task_errors.UnknownCapabilityError(context.tenant))
        access.require_use(context, found.name)
        return found.name

    async def _check_push_url(self, url: str) -> None:
        try:
            await self.push.check_url(url)
        except PushUrlError as e:
            raise InvalidParamsError(message=str(e), data={"field": "url"}) from None

    async def _until_settled(self, task: a2a_pb2.Task, watch: Watch) -> a2a_pb2.Task:
        """Fold the watched events into `task` until it ends or needs input: the relay folds the
        same events from the same start, so this equals the indexed task without reading it."""
        try:
            async with asyncio.timeout(self.blocking_wait):
                async for event in watch.events():
                    fold.apply(task, event)
        except TaskError:           # fell behind the relay: read the indexed task instead
            return await self._task(task.id)
        except TimeoutError:        # the task runs on; this call answers with what it has
            self.tasks.unwatch(watch)
        return task

    # ------------------------------------------------------------ tasks

    async def on_get_task(self, params: a2a_pb2.GetTaskRequest, context: ServerCallContext) -> a2a_pb2.Task:
        require_fields(params)
        validate_history_length(params)
        return apply_history_length(await self._own(params.id, context), params)

    async def on_list_tasks(self, params: a2a_pb2.ListTasksRequest,
                            context: ServerCallContext) -> a2a_pb2.ListTasksResponse:
        validate_history_length(params)
        page_size = params.page_size if params.HasField("page_size") else constants.DEFAULT_LIST_TASKS_PAGE_SIZE
        validate_page_size(page_size)
        after = params.status_timestamp_after.ToNanoseconds() if params.HasField("status_timestamp_after") else None
        scope = access.list_scope(await self._capability(context), context)
        try:
            page = await self.tasks.list(context_id=params.context_id, state=params.status, page_size=page_size,
                                         page_token=params.page_token, updated_after_ns=after, scope=scope)
        except PageTokenError as e:
            raise InvalidParamsError(message=str(e)) from None
        except BackendError as e:
            raise a2a_error(e) from None
        # The index is paged, never counted: total_size is what this page holds.
        response = a2a_pb2.ListTasksResponse(page_size=page_size, total_size=len(page.tasks),
                                             next_page_token=page.next_page_token)
        for task in page.tasks:
            if not params.include_artifacts:
                task.ClearField("artifacts")
            response.tasks.append(apply_history_length(task, params))
        return response

    async def on_cancel_task(self, params: a2a_pb2.CancelTaskRequest, context: ServerCallContext) -> a2a_pb2.Task:
        require_fields(params)
        reason = ""
        if params.HasField("metadata"):
            reason = str(json_format.MessageToDict(params.metadata).get("reason", ""))[:1000]
        await self._own(params.id, context)
        try:
            task = await self.tasks.cancel(params.id, reason)
        except (TaskError, BackendError) as e:
            raise a2a_error(e) from None
        return await self._settled_within(task, self.cancel_wait)

    async def _settled_within(self, task: a2a_pb2.Task, seconds: float) -> a2a_pb2.Task:
        """The task once it ended, or as it is after `seconds` (a worker may take its time)."""
        latest = task
        with contextlib.suppress(TimeoutError, TaskError, BackendError):
            async with asyncio.timeout(seconds):
                async with contextlib.aclosing(self.tasks.subscribe(task.id)) as events:
                    async for event in events:
                        if event.HasField("task"):
                            latest = event.task
                        else:
                            fold.apply(latest, event)
        return latest

    async def on_subscribe_to_task(self, params: a2a_pb2.SubscribeToTaskRequest,
                                   context: ServerCallContext) -> AsyncGenerator:
        require_fields(params)
        await self._own(params.id, context)
        async with contextlib.aclosing(self.tasks.subscribe(params.id, follow_turns=True)) as events:
            try:
                first = await anext(events)
                if first.task.status.state in fold.TERMINAL:
                    raise a2a_error(task_errors.TaskTerminalError(params.id, (
                        f"task {params.id[:200]!r} is {a2a_pb2.TaskState.Name(first.task.status.state)}: "
                        "nothing more to stream (use GetTask)")))
                yield first.task
                async for event in events:
                    yield payload(event)
            except (TaskError, BackendError) as e:
                raise a2a_error(e) from None

    async def _own(self, task_id: str, context: ServerCallContext) -> a2a_pb2.Task:
        """The task, if the caller may see it through the capability it called (access.py)."""
        name = await self._capability(context)
        try:
            task = await self.tasks.get(task_id)
        except BackendError as e:
            raise a2a_error(e) from None
        return access.check(task, task_id, name, context)

    async def _task(self, task_id: str) -> a2a_pb2.Task:
        try:
            task = await self.tasks.get(task_id)
        except BackendError as e:
            raise a2a_error(e) from None
        if task is None:
            raise a2a_error(task_errors.TaskNotFoundError(task_id))
        return task

    # ------------------------------------------------------------ push notification configs

    async def on_create_task_push_notification_config(
            self, params: a2a_pb2.TaskPushNotificationConfig,
            context: ServerCallContext) -> a2a_pb2.TaskPushNotificationConfig:
        require_fields(params)
        await self._own(params.task_id, context)
        await self._check_push_url(params.url)
        try:
            return await self.push.create(params)
        except BackendError as e:
            raise a2a_error(e) from None

    async def on_get_task_push_notification_config(
            self, params: a2a_pb2.GetTaskPushNotificationConfigRequest,
            context: ServerCallContext) -> a2a_pb2.TaskPushNotificationConfig:
        require_fields(params)
        for config in await self._configs(params.task_id, context):
            if config.id == params.id:
                return config
        raise TaskNotFoundError(message=f"task {params.task_id[:200]!r} has no push notification config "
                                        f"{params.id[:200]!r}")

    async def on_list_task_push_notification_configs(
            self, params: a2a_pb2.ListTaskPushNotificationConfigsRequest,
            context: ServerCallContext) -> a2a_pb2.ListTaskPushNotificationConfigsResponse:
        require_fields(params)
        return a2a_pb2.ListTaskPushNotificationConfigsResponse(configs=await self._configs(params.task_id, context))

    async def on_delete_task_push_notification_config(
            self, params: a2a_pb2.DeleteTaskPushNotificationConfigRequest, context: ServerCallContext) -> None:
        require_fields(params)
        await self._own(params.task_id, context)
        try:
            await self.push.delete(params.task_id, params.id)
        except BackendError as e:
            raise a2a_error(e) from None

    async def _configs(self, task_id: str, context: ServerCallContext) -> list[a2a_pb2.TaskPushNotificationConfig]:
        await self._own(task_id, context)
        try:
            return await self.push.configs(task_id)
        except BackendError as e:
            raise a2a_error(e) from None

    async def on_get_extended_agent_card(self, params, context: ServerCallContext) -> a2a_pb2.AgentCard:
        raise UnsupportedOperationError(message="this gateway serves no extended agent cards")


def payload(event: a2a_pb2.StreamResponse):
    """The Task/Message/update inside a StreamResponse (what the SDK's routes serialize)."""
    return getattr(event, event.WhichOneof("payload"))


# ------------------------------------------------------------ required fields

def require_fields(message) -> None:
    """Raise InvalidParamsError naming every REQUIRED field (proto field_behavior) left empty.
    The same check as the SDK's `validate_proto_required_fields`, with the field options read
    once per message type instead of on every call."""
    errors = _missing(message, "")
    if errors:
        raise InvalidParamsError(message="Validation failed", data={"errors": errors})


def _missing(message, prefix: str) -> list[dict]:
    errors = []
    required, nested = _plan(message.DESCRIPTOR)
    for field in required:
        value = getattr(message, field.name)
        empty = (not value) if _repeated(field) else \
            (not message.HasField(field.name)) if field.has_presence else value == field.default_value
        if empty:
            errors.append({"field": prefix + field.name, "message": "Field is required."})
    for field in nested:
        if _repeated(field):
            for i, item in enumerate(getattr(message, field.name)):
                errors.extend(_missing(item, f"{prefix}{field.name}[{i}]."))
        elif message.HasField(field.name):
            errors.extend(_missing(getattr(message, field.name), f"{prefix}{field.name}."))
    return errors


@functools.cache
def _plan(descriptor) -> tuple[tuple, tuple]:
    required = tuple(f for f in descriptor.fields
                     if FieldBehavior.REQUIRED in f.GetOptions().Extensions[field_behavior])
    nested = tuple(f for f in descriptor.fields if f.type == FieldDescriptor.TYPE_MESSAGE
                   and not f.message_type.GetOptions().map_entry and _checks_anything(f.message_type))
    return required, nested


@functools.cache
def _checks_anything(descriptor, _seen: frozenset = frozenset()) -> bool:
    """Whether a message type has REQUIRED fields anywhere below it (skip the rest)."""
    if descriptor in _seen:
        return False
    seen = _seen | {descriptor}
    return any(FieldBehavior.REQUIRED in f.GetOptions().Extensions[field_behavior]
               or (f.type == FieldDescriptor.TYPE_MESSAGE and _checks_anything(f.message_type, seen))
               for f in descriptor.fields)


def _repeated(field) -> bool:
    return field.is_repeated
