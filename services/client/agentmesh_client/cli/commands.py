"""The client commands of `agentmesh`: log in, manage resources (list, get, create, update,
delete, activate), run and watch workflows, chat with agents, follow calls. They talk to a
running mesh over its REST API through `agentmesh_client`, as any user program would."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from agentmesh_client._generated.contract import ROUTES
from agentmesh_client._generated.services import Services
from agentmesh_client.cli import config, exits
from agentmesh_client.cli.output import (InputError, Output, emit, err, friendly, out,
                                         read_file, word)
from agentmesh_client.cli.session import client
from agentmesh_client.client import Client, ended_statuses
from agentmesh_client.errors import ApiError, MeshError


def collections() -> dict[str, type]:
    """attribute -> service class of every service that manages a collection (has a List RPC
    of its noun): agents, tools, workflows, prompts, models, secrets, templates, ..."""
    found = {}
    for attribute, annotation in Services.__annotations__.items():
        service = getattr(sys.modules[Services.__module__], str(annotation))
        if f"{service.SERVICE}/List{service.NOUN}s" in ROUTES:
            found[attribute] = service
    return found


def _has(service: type, verb: str) -> bool:
    return f"{service.SERVICE}/{verb}{service.NOUN}{'s' if verb == 'List' else ''}" in ROUTES


# ---- the session ---------------------------------------------------------------------------------
def login(
    email: Annotated[str, typer.Option(prompt=True, help="your e-mail address")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True,
                                          envvar="AGENTMESH_PASSWORD")],
    url: Annotated[str, typer.Option(help="the gateway (default: the context's)",
                                     envvar="AGENTMESH_URL")] = "",
    context_name: Annotated[str, typer.Option(
        "--name", help="keep the session in this context (default: the current one); a new "
        "name makes a new context and selects it")] = "",
) -> None:
    """Log in and keep the session (refreshed as it is used) in a context."""
    data = config.load()
    name = context_name or config.current_name(data)
    url = url or data["contexts"].get(name, {}).get("url") or config.DEFAULT_URL

    @friendly
    def run() -> None:
        with Client(url) as api:
            tokens = api.login(email, password)
            me = api.me()
        config.update_context(name, {"url": url, "email": email,
                                     "access_token": tokens.access_token,
                                     "refresh_token": tokens.refresh_token})
        if context_name:
            data = config.load()
            data["current_context"] = name
            config.save(data)
        role = str(me.get("role", "") or "").removeprefix("ROLE_").lower() or "no role"
        out.print(f"logged in to {url} as [bold]{me.get('email') or email}[/bold] ({role}); "
                  f"context [bold]{name}[/bold] in {config.config_path()}", highlight=False)
    run()


def logout() -> None:
    """Forget the session of the current context (its URL stays)."""
    name = config.current_name()
    settings = config.context(name)
    config.update_context(name, {"url": settings.get("url", config.DEFAULT_URL)}, replace=True)
    out.print(f"logged out of context {name}")


# ---- resources -----------------------------------------------------------------------------------
def _set_values(items: list[str]) -> dict[str, Any]:
    """`--set field=value` items; a value that parses as JSON is that (numbers, true, lists)."""
    body: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set {item!r} is not FIELD=VALUE")
        try:
            body[key] = json.loads(value)
        except ValueError:
            body[key] = value
    return body


def resource_app(name: str, service: type) -> typer.Typer:
    verbs = [v for v in ("list", "get", "create", "update", "delete") if _has(service, v.title())]
    group = typer.Typer(help=f"{name}: {', '.join(verbs)}", no_args_is_help=True)
    singular = name[:-1]

    if "list" in verbs:
        @group.command("list")
        @friendly
        def list_(page: int = 1, page_size: Annotated[int, typer.Option(help="1-100")] = 20,
                  search: Annotated[str, typer.Option(help="text to look for")] = "",
                  all_pages: Annotated[bool, typer.Option("--all", help="every page")] = False,
                  output: Output = "table") -> None:
            """List the tenant's items, newest first."""
            with client() as api:
                resource = api.resource(name)
                params = {"search": search} if search else {}
                if all_pages:
                    items = list(resource.iterate(**params))
                    data: Any = {"items": items, "total": len(items), "page": 1, "pages": 1}
                else:
                    data = resource.list(page=page, page_size=page_size, **params)
            emit(data, output)

    if "get" in verbs:
        @group.command("get")
        @friendly
        def get(key: Annotated[str, typer.Argument(help="id or name")],
                output: Output = "table") -> None:
            """Show one item."""
            with client() as api:
                emit(api.resource(name).get(key), output)

    if "create" in verbs:
        @group.command("create")
        @friendly
        def create(file: Annotated[str, typer.Option("--file", "-f",
                                                     help="YAML or JSON file (- for stdin)")],
                   output: Output = "table") -> None:
            """Create one item from a YAML or JSON file (`agentmesh apply -f` creates or
            updates)."""
            body = read_file(file)
            with client() as api:
                emit(api.resource(name).create(body), output)

    if "update" in verbs:
        @group.command("update")
        @friendly
        def update(key: Annotated[str, typer.Argument(help="id or name")],
                   file: Annotated[str, typer.Option(
                       "--file", "-f", help="the fields to change: YAML or JSON (- for stdin)")] = "",
                   set_: Annotated[list[str], typer.Option(
                       "--set", metavar="FIELD=VALUE", help="a field to change (repeat)")] = [],  # noqa: B006
                   output: Output = "table") -> None:
            """Change the fields given (in a file, with --set, or both); others stay."""
            body = {**(read_file(file) or {} if file else {}), **_set_values(set_)}
            if not body:
                raise InputError("nothing to change: give --file or --set FIELD=VALUE")
            with client() as api:
                emit(api.resource(name).update(key, body, update_mask=",".join(body)), output)

    if "delete" in verbs:
        @group.command("delete")
        @friendly
        def delete(key: Annotated[str, typer.Argument(help="id or name")],
                   yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False
                   ) -> None:
            """Delete one item."""
            if not yes and sys.stdin.isatty():
                typer.confirm(f"delete {singular} {key}?", abort=True)
            with client() as api:
                api.resource(name).delete(key)
            out.print(f"deleted {singular} {key}")

    if _has(service, "Activate"):
        @group.command("activate")
        @friendly
        def activate(key: Annotated[str, typer.Argument(help="id or name")],
                     output: Output = "table") -> None:
            """Make it active (workflows: executable; agents: can interact)."""
            with client() as api:
                emit(api.resource(name).activate(key), output)
    return group


# ---- workflows -----------------------------------------------------------------------------------
def run_workflow(
    name: Annotated[str, typer.Argument(help="the workflow's id or slug")],
    input: Annotated[str, typer.Option("--input", "-i", help="inputs: a JSON or YAML file")] = "",
    watch: Annotated[bool, typer.Option(help="follow it live until it ends")] = False,
    output: Output = "table",
) -> None:
    """Execute a workflow; with --watch, show its progress and exit 0 only if it completed."""
    @friendly
    def run() -> int:
        inputs = read_file(input) if input else {}
        with client() as api:
            execution = api.workflows.execute(name, inputs)
            if not watch:
                emit(execution, output)
                return 0
            _watch(api, execution.id, quiet=output != "table")
            final = api.workflows.execution(execution.id)
        if output != "table":
            emit(final, output)
        else:
            _summary(final.to_dict())
        return exits.OK if final.status == "EXECUTION_STATUS_COMPLETED" else exits.FAILED
    code = run()
    if code:
        raise typer.Exit(code)


def _watch(api: Client, execution_id: str, quiet: bool) -> None:
    """The progress bar with the phase names, from the execution's Server-Sent Events."""
    console = Console(stderr=True) if quiet else out
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[phase]}"),
                  console=console, transient=False) as bar:
        task = bar.add_task(execution_id[:8], total=100, phase="queued")
        done: list[str] = []
        for progress in api.workflows.watch(execution_id):
            status = str(progress.get("status") or "").removeprefix("EXECUTION_STATUS_").lower()
            for phase in progress.get("phases_completed") or []:
                if phase not in done:
                    done.append(phase)
                    bar.console.print(f"  [green]✓[/green] {phase}", highlight=False)
            phase = progress.get("current_phase") or ""
            bar.update(task, completed=float(progress.get("progress") or 0),
                       phase=f"{status} {phase}".strip())
            if progress.get("status") in ended_statuses():
                break


def _summary(execution: dict) -> None:
    status = word(execution["status"])
    colour = "green" if status == "completed" else "red"
    out.print(f"execution {execution['id']}: [{colour}]{status}[/{colour}]", highlight=False)
    for error in execution.get("errors", []):
        out.print(f"  {error.get('step_id') or 'execution'}: {error.get('code')} "
                  f"{error.get('message')}", highlight=False)
    if execution.get("outputs"):
        out.print_json(data=execution["outputs"])


# ---- agents and calls ------------------------------------------------------------------------------
def chat(name: Annotated[str, typer.Argument(help="the agent's id or name")],
         message: Annotated[str, typer.Option("--message", "-m",
                                              help="send one message and exit")] = "",
         thread: Annotated[str, typer.Option("--thread", "-t",
                                             help="a thread that keeps the conversation on "
                                                  "the server (its id)")] = "",
         stream: Annotated[bool, typer.Option("--stream/--no-stream",
                                              help="print the reply as it is written")] = True,
         ) -> None:
    """Talk with an agent: each line you type is one message of the same call. The reply is
    printed as the model writes it, with each tool call as it starts and ends; Ctrl-C stops
    the reply (and cancels the call)."""
    @friendly
    def run() -> None:
        call_id = ""
        with client() as api:
            while True:
                text = message or _prompt()
                if text is None or text.strip() in ("/exit", "/quit"):
                    return
                if not text.strip():
                    continue
                if stream:
                    answer = _streamed_reply(api, name, text, call_id, thread)
                else:
                    with out.status("thinking…", spinner="dots"):
                        answer = api.agents.interact(name, text, call_id=call_id,
                                                     thread_id=thread).to_dict()
                    for tool in answer.get("tool_calls", []):
                        out.print(f"  [dim]tool {tool.get('tool', tool.get('name', '?'))}: "
                                  f"{tool.get('status', '')}[/dim]", highlight=False)
                    if answer.get("status") != "CALL_STATUS_FAILED":
                        out.print(f"[bold cyan]{name}>[/bold cyan] {answer.get('reply', '')}",
                                  highlight=False)
                call_id = answer.get("call_id", call_id)
                if answer.get("status") == "CALL_STATUS_FAILED":
                    err.print(f"[red]{answer.get('reason')}[/red] {answer.get('error', '')}")
                    if message:
                        raise typer.Exit(exits.FAILED)
                if message:
                    return
    run()


def _streamed_reply(api: Client, name: str, text: str, call_id: str, thread: str) -> dict:
    """Prints one streamed reply as it arrives; the answer of its `ended` event."""
    answer: dict = {}
    out.print(f"[bold cyan]{name}>[/bold cyan] ", end="", highlight=False)
    at_line_start = False
    try:
        for item in api.agents.stream(name, text, call_id=call_id, thread_id=thread):
            event = item.to_dict()
            kind = event.get("type")
            if kind == "started":
                answer["call_id"] = event.get("call_id", call_id)
            elif kind == "token":
                out.print(event.get("text", ""), end="", markup=False, highlight=False,
                          soft_wrap=True)
                at_line_start = False
            elif kind in ("tool_call.started", "tool_call.ended"):
                tool = event.get("tool_call") or {}
                state = "…" if kind == "tool_call.started" else tool.get("status", "ended")
                out.print(("" if at_line_start else "\n") +
                          f"  [dim]tool {tool.get('name', '?')}: {state}[/dim]", highlight=False)
                at_line_start = True
            elif kind == "ended":
                answer = {**answer, **(event.get("result") or {})}
    except KeyboardInterrupt:
        out.print("\n[dim](stopped; the call is cancelled)[/dim]", highlight=False)
        return {**answer, "status": "CALL_STATUS_CANCELLED"}
    out.print("")
    return answer


def _prompt() -> str | None:
    try:
        return input("you> ")
    except EOFError:
        return None


def tail(output: Output = "table",
         count: Annotated[int, typer.Option(help="stop after this many call events "
                                                   "(0: never)")] = 0
         ) -> None:
    """Follow the tenant's agent calls live (WebSocket /ws/calls)."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    from agentmesh_client.errors import make_error

    @friendly
    def run() -> None:
        with client() as api:
            api.me()  # refreshes the token first if it has expired
            headers = {"Authorization": f"Bearer {api.tokens.access_token}"}
            try:
                socket = connect(api.live_url("/ws/calls"), additional_headers=headers)
            except InvalidStatus as exc:
                body: dict = {}
                try:
                    body = json.loads(exc.response.body or b"{}")
                except ValueError:
                    pass
                raise make_error(exc.response.status_code, str(body.get("error", "")),
                                 str(body.get("message", "")), body.get("details")) from None
            follow(api, socket)

    def follow(api: Client, socket) -> None:
        names: dict[str, str] = {}

        def agent_name(agent_id: str) -> str:  # the agent's name, looked up once
            if agent_id and agent_id not in names:
                try:
                    names[agent_id] = api.agents.get(agent_id).name or agent_id
                except MeshError:
                    names[agent_id] = agent_id
            return names.get(agent_id, agent_id)
        seen = 0
        with socket:
            try:
                for text in socket:
                    event = json.loads(text)
                    if output != "table":  # every message, the first state included
                        sys.stdout.write(json.dumps(event) + "\n")
                        sys.stdout.flush()
                    elif event["type"] == "state":
                        active = event["payload"].get("active_calls", [])
                        out.print(f"[dim]{len(active)} active calls; following…[/dim]")
                    else:
                        call = event["payload"]
                        out.print(f"{event['type']:<13} {call.get('id', '')}  agent "
                                  f"{agent_name(call.get('agent_id', ''))}  "
                                  f"{word(call.get('status', ''))}  "
                                  f"{call.get('duration_ms', 0)} ms", highlight=False)
                    seen += event["type"] != "state"
                    if count and seen >= count:
                        return
            except ConnectionClosed:
                return
    run()


def register(app: typer.Typer) -> dict[str, typer.Typer]:
    """Adds the client commands to `app`; returns the resource groups by name (the server's
    commands add `secrets rotate` to `secrets`)."""
    from agentmesh_client.cli import apply, call, contexts

    app.command("login")(login)
    app.command("logout")(logout)
    app.command("apply")(apply.apply_command)
    app.command("call")(call.call_command)
    app.command("rpcs")(call.list_command)
    app.add_typer(contexts.app, name="config")
    groups = {name: resource_app(name, service) for name, service in collections().items()}
    groups["workflows"].command("run")(run_workflow)
    groups["agents"].command("chat")(chat)
    groups.setdefault("calls", typer.Typer(help="agent calls", no_args_is_help=True))
    groups["calls"].command("tail")(tail)
    for name, group in groups.items():
        app.add_typer(group, name=name)
    return groups


__all__ = ["ApiError", "register"]
