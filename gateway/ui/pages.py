"""The admin UI's pages, under /admin/ui (behind the admin guard, like the admin API).

    GET  /admin/ui                           capabilities: health, workers, source, last error; register form
    POST /admin/ui/agents                    register an agent by card URL (form), then back to the list
    POST /admin/ui/agents/{name}/refresh     fetch its card again
    POST /admin/ui/agents/{name}/remove      remove it
    GET  /admin/ui/tasks                     live tasks (SSE from /admin/tasks/live), by capability and state
    GET  /admin/ui/tasks/{task_id}           a task: its timeline (history, status, live events) and artifacts
    GET  /admin/ui/playground                send a message to a capability, see the stream; the MCP tools
    GET  /admin/ui/status                    backend, engine, loops and (when served) the metrics
    GET  /admin/ui/login, POST               a token form when gateway.bearer_tokens is set (a cookie, guard.py)

Forms post back here and redirect (post/redirect/get), so every action works without scripts;
the script (static/ui.js) adds what needs the browser: live lists, the playground's stream, the
MCP client. Its cookie is SameSite=Strict and POSTs from another origin are refused, so another
site cannot act through a logged-in browser.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from adapters.errors import BackendError, MessageTooLargeError, NotFoundError

from gateway.errors import codes_of
from gateway.registry.cardfetch import CardError
from gateway.tasks import fold
from gateway.tasks.errors import TaskError
from .session import UI_COOKIE, auth_on
from .views import capability_rows, task_view

HERE = Path(__file__).resolve().parent
PREFIX = "/admin/ui"
MAX_FORM_BYTES = 16 * 1024
STATE_NAMES = ("submitted", "working", "input_required", "auth_required", "completed", "failed", "canceled",
               "rejected")


def routes(gateway) -> list:
    ui = AdminUI(gateway)
    return [Route(PREFIX, ui.capabilities, methods=["GET"]),
            Route(PREFIX + "/", ui.capabilities, methods=["GET"]),
            Route(PREFIX + "/agents", ui.register, methods=["POST"]),
            Route(PREFIX + "/agents/{name}/refresh", ui.refresh, methods=["POST"]),
            Route(PREFIX + "/agents/{name}/remove", ui.remove, methods=["POST"]),
            Route(PREFIX + "/tasks", ui.tasks, methods=["GET"]),
            Route(PREFIX + "/tasks/{task_id}", ui.task, methods=["GET"]),
            Route(PREFIX + "/playground", ui.playground, methods=["GET"]),
            Route(PREFIX + "/status", ui.status, methods=["GET"]),
            Route(PREFIX + "/login", ui.login_form, methods=["GET"]),
            Route(PREFIX + "/login", ui.login, methods=["POST"]),
            Route(PREFIX + "/logout", ui.logout, methods=["POST"]),
            Mount(PREFIX + "/static", app=StaticFiles(directory=HERE / "static"), name="ui-static")]


def public_app(gateway) -> Starlette:
    """What a browser reaches before it logs in: the login form, the style sheet and the script."""
    ui = AdminUI(gateway)
    return Starlette(routes=[Route(PREFIX + "/login", ui.login_form, methods=["GET"]),
                             Route(PREFIX + "/login", ui.login, methods=["POST"]),
                             Mount(PREFIX + "/static", app=StaticFiles(directory=HERE / "static"), name="ui-static")])


def root_redirect(request: Request) -> Response:
    """`/`: the UI."""
    return RedirectResponse(PREFIX + "/", status_code=307)


class AdminUI:
    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.templates = Jinja2Templates(directory=HERE / "templates")

    def _page(self, request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("notice", request.query_params.get("notice", "")[:300])
        context.setdefault("problem", request.query_params.get("problem", "")[:500])
        context["auth"] = auth_on(self.gateway.settings)
        return self.templates.TemplateResponse(request, template, context, status_code=status,
                                               headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------ capabilities

    async def capabilities(self, request: Request) -> Response:
        try:
            capabilities = await self.gateway.registry.list()
        except BackendError as e:
            return self._page(request, "capabilities.html", codes_of(e).http, rows=[], problem=str(e))
        return self._page(request, "capabilities.html", rows=capability_rows(capabilities, time.time()))

    async def register(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        card_url, name = form.get("card_url", "").strip(), form.get("name", "").strip() or None
        if not card_url:
            return _back("problem", "Give the agent's card URL or base URL.")
        try:
            capability = await self.gateway.bridges.register(card_url, name)
        except (BackendError, CardError) as e:
            return _back("problem", f"Could not register {card_url}: {e}")
        return _back("notice", f"Registered {capability.name}.")

    async def refresh(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        name = request.path_params["name"]
        try:
            await self.gateway.bridges.refresh(name)
        except (BackendError, CardError) as e:
            return _back("problem", f"Could not refresh {name}: {e}")
        return _back("notice", f"Refreshed the card of {name}.")

    async def remove(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        name = request.path_params["name"]
        try:
            await self.gateway.bridges.remove(name)
        except BackendError as e:
            return _back("problem", f"Could not remove {name}: {e}")
        return _back("notice", f"Removed {name}.")

    async def _form(self, request: Request) -> dict[str, str] | Response:
        """The urlencoded form of a POST from this origin, or the response refusing it."""
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
            return HTMLResponse(f"refused: a form from {origin[:200]!r}, not from this gateway", status_code=403)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                error = MessageTooLargeError(len(body), MAX_FORM_BYTES)
                return HTMLResponse(str(error), status_code=413)
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError) as e:
            return HTMLResponse(f"not a form: {e}", status_code=400)
        return {k: v[0] for k, v in fields.items()}

    # ------------------------------------------------------------ tasks

    async def tasks(self, request: Request) -> Response:
        names = await self._names()
        return self._page(request, "tasks.html", names=names, states=STATE_NAMES,
                          capability=request.query_params.get("capability", ""),
                          state=request.query_params.get("state", ""))

    async def task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            task = await self.gateway.tasks.get(task_id)
        except (BackendError, TaskError) as e:
            return self._page(request, "task.html", codes_of(e).http, task=None, task_id=task_id, problem=str(e))
        if task is None:
            error = NotFoundError("task", task_id)
            return self._page(request, "task.html", 404, task=None, task_id=task_id, problem=str(error))
        return self._page(request, "task.html", task=task_view(task), task_id=task_id,
                          live=task.status.state not in fold.TERMINAL)

    # ------------------------------------------------------------ playground and status

    async def playground(self, request: Request) -> Response:
        return self._page(request, "playground.html", names=await self._names(),
                          chosen=request.query_params.get("capability", ""))

    async def status(self, request: Request) -> Response:
        gateway = self.gateway
        try:
            health = await gateway.backend.health()
            backend = {"ok": health.ok, "name": health.backend, "detail": health.detail}
        except BackendError as e:
            backend = {"ok": False, "name": "?", "detail": {"error": str(e)}}
        return self._page(request, "status.html", backend=backend, ready=gateway.ready,
                          down=gateway.supervisor.down(), instance=gateway.tasks.instance_id,
                          settings_backend=gateway.settings.get("backend", "lite"))

    async def _names(self) -> list[str]:
        try:
            return sorted(c.name for c in await self.gateway.registry.list())
        except BackendError:
            return []

    # ------------------------------------------------------------ login

    async def login_form(self, request: Request) -> Response:
        return self._page(request, "login.html", next=_local(request.query_params.get("next", "")))

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        token, target = form.get("token", "").strip(), _local(form.get("next", ""))
        if not token or "\n" in token or ";" in token or len(token) > 4096:
            return self._page(request, "login.html", 400, next=target, problem="Give one of the gateway's tokens.")
        response = RedirectResponse(target, status_code=303)
        # The guard checks the token on the next request; a wrong one lands back on this form.
        response.set_cookie(UI_COOKIE, quote(token, safe=""), httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        response = RedirectResponse(PREFIX + "/login", status_code=303)
        response.delete_cookie(UI_COOKIE, path="/")
        return response


def _back(kind: str, text: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/?{urlencode({kind: text[:500]})}", status_code=303)


def _local(target: str) -> str:
    """A path of this UI to go to after login, never another site."""
    return target if target.startswith(PREFIX) and not target.startswith("//") else PREFIX + "/"

