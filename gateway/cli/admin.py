"""`topicbridge agents ...` and `topicbridge tasks ...`: a running gateway's admin API from the
shell, as tables (render.py) or, with --json, the gateway's JSON. They work against any
instance: tasks are read from the shared task index and followed from their reply channels."""

from __future__ import annotations

import argparse
import json
from urllib.parse import quote

from . import render
from .http import TASK_UNSUCCESSFUL, CliExit, call, common_options, positive, stream

EXIT_CODES = ("Exit codes: 0 done, 1 the gateway refused (its error on stderr), 2 bad usage, "
              "3 the gateway could not be reached, 4 (tasks watch) the task ended failed, canceled or rejected.")
STATES = ("submitted", "working", "completed", "failed", "canceled", "input_required", "rejected", "auth_required")


def add_commands(commands) -> None:
    common = common_options()
    agents = commands.add_parser("agents", help="register, list, show, refresh and remove agents on a running gateway",
                                 description="Talks to a running gateway's admin API. " + EXIT_CODES)
    actions = agents.add_subparsers(dest="action", required=True)
    register = actions.add_parser("register", parents=[common], help="register an A2A agent by its card or base URL")
    register.add_argument("card_url")
    register.add_argument("--name", help="capability name (default: derived from the card's name)")
    register.add_argument("--token-env", metavar="VAR", help="the agent requires a secret: the gateway's environment "
                                                             "variable holding it (a bearer token, or with "
                                                             "--api-key-header an API key)")
    register.add_argument("--api-key-header", metavar="NAME", help="send the secret in this header instead of "
                                                                   "Authorization: Bearer")
    oauth = register.add_argument_group("OAuth 2.0 client credentials (instead of --token-env)")
    oauth.add_argument("--client-id", help="the gateway's OAuth client id at the agent's token endpoint")
    oauth.add_argument("--client-secret-env", metavar="VAR", help="the gateway's environment variable holding "
                                                                   "the client secret")
    oauth.add_argument("--scope", action="append", dest="scopes", metavar="SCOPE",
                       help="a scope to ask for (repeatable; default: the token endpoint's)")
    oauth.add_argument("--token-url", help="the token endpoint (default: the card's client credentials flow)")
    listing = actions.add_parser("list", parents=[common], help="list capabilities, or search them with --query")
    listing.add_argument("--query", "-q", help="rank by relevance to these words, e.g. 'summarise a PDF'")
    listing.add_argument("--limit", type=positive(int))
    actions.add_parser("show", parents=[common], help="show one capability").add_argument("name")
    actions.add_parser("refresh", parents=[common],
                       help="fetch and validate a bridged agent's card again").add_argument("name")
    actions.add_parser("remove", parents=[common], help="remove a capability").add_argument("name")

    tasks = commands.add_parser("tasks", help="list, show, watch and cancel tasks on a running gateway",
                                description="Talks to a running gateway's admin API (any instance). " + EXIT_CODES)
    verbs = tasks.add_subparsers(dest="action", required=True)
    listing = verbs.add_parser("list", parents=[common], help="tasks, newest first")
    listing.add_argument("--capability", "-c", help="only this capability's tasks")
    listing.add_argument("--state", "-s", choices=STATES, help="only tasks in this state")
    listing.add_argument("--limit", type=positive(int), default=20, help="at most this many (default %(default)s)")
    verbs.add_parser("show", parents=[common], help="a task: state, history, artifacts").add_argument("task_id")
    verbs.add_parser("watch", parents=[common], help="follow a task's events live until it ends "
                                                     "(--json: one event per line)").add_argument("task_id")
    verbs.add_parser("cancel", parents=[common], help="cancel a task").add_argument("task_id")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "agents":
            _agents(args)
        elif args.action == "watch":
            return _watch(args)
        else:
            _tasks(args)
    except CliExit as e:
        return e.code
    return 0


def _agents(args) -> None:
    what = f"agents {args.action}"
    named = f"/admin/agents/{quote(getattr(args, 'name', '') or '', safe='')}"
    if args.action == "register":
        body = {"card_url": args.card_url, **({"name": args.name} if args.name else {})}
        if args.token_env:
            body["credentials"] = {"type": "api_key", "token_env": args.token_env, "header": args.api_key_header} \
                if args.api_key_header else {"type": "bearer", "token_env": args.token_env}
        elif args.client_id or args.client_secret_env:     # the gateway names whichever is missing
            body["credentials"] = {"type": "oauth2_client_credentials", **{k: v for k, v in (
                ("client_id", args.client_id), ("client_secret_env", args.client_secret_env),
                ("scopes", args.scopes), ("token_url", args.token_url)) if v}}
        doc = call(args, what, "POST", "/admin/agents", body=body)
    elif args.action == "list":
        params = {k: v for k, v in (("q", args.query), ("limit", args.limit)) if v is not None}
        doc = call(args, what, "GET", "/admin/agents", params=params)
    elif args.action == "refresh":
        doc = call(args, what, "POST", named + "/refresh")
    else:
        doc = call(args, what, "DELETE" if args.action == "remove" else "GET", named)
    if args.json:
        render.print_json(doc)
    elif args.action == "list":
        render.console().print(render.agents_table(doc["agents"]))
    else:
        agent = doc.get("removed", doc)
        verb = {"register": "registered", "refresh": "refreshed", "remove": "removed"}.get(args.action)
        out = render.console()
        if verb:
            out.print(f"{verb} {agent['name']}")
        out.print(render.agent_details(agent))


def _tasks(args) -> None:
    what = f"tasks {args.action}"
    if args.action == "list":
        params = {k: v for k, v in (("capability", args.capability), ("state", args.state), ("limit", args.limit))
                  if v is not None}
        doc = call(args, what, "GET", "/admin/tasks", params=params)
        view = render.tasks_table(doc["tasks"])
    elif args.action == "cancel":
        doc = call(args, what, "POST", f"/admin/tasks/{quote(args.task_id, safe='')}/cancel")
        view = render.task_details(doc)
    else:
        doc = call(args, what, "GET", f"/admin/tasks/{quote(args.task_id, safe='')}")
        view = render.task_details(doc)
    if args.json:
        render.print_json(doc)
    else:
        render.console().print(view)


def _watch(args) -> int:
    events = stream(args, "tasks watch", f"/admin/tasks/{quote(args.task_id, safe='')}/events")
    if args.json:
        final = ""
        for name, data in events:
            print(json.dumps({"event": name, "data": data}, ensure_ascii=False), flush=True)
            final = _final(name, data, final)
        return _outcome(final)
    view = render.WatchView(args.task_id)
    final = ""
    with render.live(view) as screen:
        for name, data in events:
            if name == "event":
                view.add(data)
                screen.refresh()
            elif name == "error":
                view.state = "error: " + str(data.get("error", {}).get("message", ""))[:200]
            final = _final(name, data, final)
    return _outcome(final)


def _final(name: str, data: dict, final: str) -> str:
    if name != "event":
        return final
    kind, state, _ = render.describe(data)
    return state if kind in ("task", "status") else final


def _outcome(state: str) -> int:
    return TASK_UNSUCCESSFUL if state in ("failed", "canceled", "rejected") else 0
