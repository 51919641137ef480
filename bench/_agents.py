"""The echo agents the end-to-end benches serve: an a2a-sdk agent (`DefaultRequestHandler`, in-memory
task store) and the native worker handler, both answering "echo: <text>" as one artifact."""

from __future__ import annotations


def sdk_echo_app(base_url: str, *, work_s: float = 0.0, concurrency: int | None = None, streaming: bool = True,
                 name: str = "Echo Agent", description: str = "Echoes its input.", answer=None,
                 front_routes=()):
    """The a2a-sdk echo agent: a task, WORKING, one artifact, COMPLETED. With `work_s`, every task
    takes that long, `concurrency` at a time (bench.overload's slow agent: a rate bounded by design,
    not by the CPU the machine has left). `answer(text)` replaces the "echo: <text>" artifact, and
    `front_routes` go before the JSON-RPC route (the fault agents' misbehaving answers)."""
    import asyncio
    import contextlib
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import a2a_pb2
    from starlette.applications import Starlette

    slots = asyncio.Semaphore(concurrency) if concurrency else contextlib.nullcontext()

    class Echo(AgentExecutor):
        async def execute(self, context, event_queue):
            if context.current_task is None:
                await event_queue.enqueue_event(a2a_pb2.Task(
                    id=context.task_id, context_id=context.context_id, history=[context.message],
                    status=a2a_pb2.TaskStatus(state=a2a_pb2.TASK_STATE_SUBMITTED)))
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            await updater.start_work()
            if work_s:
                async with slots:
                    await asyncio.sleep(work_s)  # sleep-ok: the fixed work time of a slow bench agent
            text = answer(context.get_user_input()) if answer else f"echo: {context.get_user_input()}"
            await updater.add_artifact([a2a_pb2.Part(text=text)], name="echo")
            await updater.complete()

        async def cancel(self, context, event_queue):
            await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    card = a2a_pb2.AgentCard(
        name=name, description=description, version="1.0",
        capabilities=a2a_pb2.AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        skills=[a2a_pb2.AgentSkill(id="echo", name="echo", description="echoes", tags=["echo"])],
        supported_interfaces=[a2a_pb2.AgentInterface(url=base_url + "/", protocol_binding="JSONRPC",
                                                     protocol_version="1.0")])
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=[*create_agent_card_routes(card), *front_routes, *create_jsonrpc_routes(handler, "/")])


async def echo(task) -> None:
    await task.artifact(f"echo: {task.text}", name="echo")
    await task.complete()
