"""The client commands of `agentmesh`: log in, manage resources, run and watch workflows, chat
with agents, follow calls. They talk to a running mesh over its REST API through
`mesh.client`, as any user program would.

The session (URL and tokens) is kept in `<user config dir>/agentmesh/config.json` (mode 0600;
`AGENTMESH_CONFIG_DIR` moves it); a refreshed token is written back at once. `AGENTMESH_URL`
and `AGENTMESH_TOKEN` override it for scripts. Errors print the API's message and correlation
id, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from mesh.client import RESOURCES, ApiError, Client, Tokens, ended_statuses

out = Console()
err = Console(stderr=True)
# ---- the session ---------------------------------------------------------------------------------
def config_path() -> Path:
    folder = os.environ.get("AGENTMESH_CONFIG_DIR") or typer.get_app_dir("agentmesh")
    return Path(folder) / "config.json"


def load_config() -> dict[str, Any]:
    try:
        return json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}


def save_config(config: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(config, handle, indent=1)
    temporary.replace(path)


def client() -> Client:
    config = load_config()
    url = os.environ.get("AGENTMESH_URL") or config.get("url") or "http://127.0.0.1:8080"
    token = os.environ.get("AGENTMESH_TOKEN", "")

    def store(tokens: Tokens) -> None:  # a refreshed pair replaces the spent one at once
        if not token:
            save_config({**load_config(), "access_token": tokens.access_token,
                         "refresh_token": tokens.refresh_token})
    return Client(url, token=token or config.get("access_token", ""),
                  refresh_token="" if token else config.get("refresh_token", ""),
                  api_key=os.environ.get("AGENTMESH_API_KEY", ""), on_tokens=store)


def friendly(fn):
    """Errors as one line with the API's message and correlation id; exit code 1."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            where = f" (correlation id {exc.correlation_id})" if exc.correlation_id else ""
            err.print(f"[red]error:[/red] {exc.message} [dim]{exc.error}, HTTP {exc.status}"
                      f"{where}[/dim]", highlight=False)
            if exc.status == 401:
                err.print("log in with: agentmesh login")
            raise typer.Exit(1) from None
        except httpx.TransportError as exc:
            err.print(f"[red]error:[/red] cannot reach the mesh at {_where(exc)}: {exc}",
                      highlight=False)
            err.print("start it with: agentmesh up (or name another with --url / "
                      "AGENTMESH_URL)")
            raise typer.Exit(1) from None
        except (OSError, ValueError) as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
    return run


def _where(exc: httpx.TransportError) -> str:
    """The address a failed request was sent to."""
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return "the configured URL"
    return f"{url.scheme}://{url.netloc.decode()}"


# ---- output --------------------------------------------------------------------------------------
COLUMNS = ("id", "name", "slug", "status", "kind", "provider", "version", "duration_ms",
           "updated_at")
# Left out of the table of one item (json and yaml keep everything): the caller's own tenant.
HIDDEN = ("tenant_id",)
FORMATS = ("table", "json", "yaml")
# An enum value's word: AGENT_STATUS_DRAFT, MODEL_STATUS_ACTIVE -> draft, active.
_ENUM_VALUE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*?_(?:STATUS|KIND|TYPE|ROLE)_([A-Z0-9_]+)$")


def check_output(value: str) -> str:
    """--output: checked before the command runs, so that a typo is a usage error."""
    if value not in FORMATS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(FORMATS)}")
    return value


Output = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml",
                                      callback=check_output)]


def word(value: Any) -> Any:
    """An enum value as the one lowercase word tables show for every resource."""
    if isinstance(value, str):
        match = _ENUM_VALUE.match(value)
        if match:
            return match.group(1).lower()
    return value


def emit(data: Any, output: str, columns: tuple[str, ...] = COLUMNS) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif output == "yaml":
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    elif output == "table":
        items = data.get("items") if isinstance(data, dict) and "items" in data else None
        if items is None:
            table = Table(show_header=False, box=None)
            for key, value in (data or {}).items():
                if key not in HIDDEN:
                    table.add_row(f"[bold]{key}[/bold]", _cell(value, 100))
            out.print(table)
            return
        shown = [c for c in columns if any(c in item for item in items)] or ["id"]
        table = Table(*shown, title=f"{data.get('total', len(items))} in all, page "
                      f"{data.get('page', 1)} of {data.get('pages', 1)}")
        for item in items:
            table.add_row(*(_cell(item.get(c), 40) for c in shown))
        out.print(table)
    else:
        raise typer.BadParameter("table, json or yaml", param_hint="--output")


def _cell(value: Any, width: int) -> str:
    value = word(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def read_file(path: str) -> Any:
    """A JSON (`.json`) or YAML file, or stdin (`-`); a file that does not parse is one
    line naming it and where, not a traceback."""
    text = Path(path).read_text() if path != "-" else sys.stdin.read()
    name = "stdin" if path == "-" else path
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{name} is not valid JSON: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{name} is not valid YAML: {problem}{where}") from None


# ---- commands --------------------------------------------------------------------------------------
def login(
    email: Annotated[str, typer.Option(prompt=True, help="your e-mail address")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True,
                                          envvar="AGENTMESH_PASSWORD")],
    url: Annotated[str, typer.Option(help="the gateway", envvar="AGENTMESH_URL")] = "",
) -> None:
    """Log in and keep the session (refreshed as it is used) in the user's config dir."""
    config = load_config()
    url = url or config.get("url") or "http://127.0.0.1:8080"

    @friendly
    def run() -> None:
        with Client(url) as api:
            tokens = api.login(email, password)
            api.config.tokens = tokens
            me = api.me()
        save_config({"url": url, "email": email, "access_token": tokens.access_token,
                     "refresh_token": tokens.refresh_token})
        out.print(f"logged in to {url} as [bold]{me.get('email', email)}[/bold] "
                  f"({me.get('role', '').removeprefix('ROLE_').lower() or 'no role'}); "
                  f"session in {config_path()}",
                  highlight=False)
    run()


def logout() -> None:
    """Forget the stored session."""
    config = load_config()
    save_config({"url": config.get("url", "")})
    out.print("logged out")


def _resource_app(name: str) -> typer.Typer:
    group = typer.Typer(help=f"{name}: list, get, create, delete", no_args_is_help=True)

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
                data = {"items": items, "total": len(items), "page": 1, "pages": 1}
            else:
                data = resource.list(page=page, page_size=page_size, **params)
        emit(data, output)

    @group.command("get")
    @friendly
    def get(key: Annotated[str, typer.Argument(help="id or name")],
            output: Output = "table") -> None:
        """Show one item."""
        with client() as api:
            emit(api.resource(name).get(key), output)

    @group.command("create")
    @friendly
    def create(file: Annotated[str, typer.Option("--file", "-f",
                                                 help="YAML or JSON file (- for stdin)")],
               output: Output = "table") -> None:
        """Create one item from a YAML or JSON file."""
        body = read_file(file)
        with client() as api:
            emit(api.resource(name).create(body), output)

    @group.command("delete")
    @friendly
    def delete(key: Annotated[str, typer.Argument(help="id or name")],
               yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False
               ) -> None:
        """Delete one item."""
        if not yes and sys.stdin.isatty():
            typer.confirm(f"delete {name[:-1]} {key}?", abort=True)
        with client() as api:
            api.resource(name).delete(key)
        out.print(f"deleted {name[:-1]} {key}")
    return group


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
            final = _watch(api, execution["id"], quiet=output != "table")
            final = api.workflows.execution(execution["id"])
        if output != "table":
            emit(final, output)
        else:
            _summary(final)
        return 0 if final["status"] == "EXECUTION_STATUS_COMPLETED" else 1
    code = run()
    if code:
        raise typer.Exit(code)


def _watch(api: Client, execution_id: str, quiet: bool) -> dict:
    """The progress bar with the phase names, from the execution's Server-Sent Events."""
    last: dict = {}
    console = Console(stderr=True) if quiet else out
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[phase]}"),
                  console=console, transient=False) as bar:
        task = bar.add_task(execution_id[:8], total=100, phase="queued")
        done: list[str] = []
        for progress in api.workflows.watch(execution_id):
            last = progress
            status = progress.get("status", "").removeprefix("EXECUTION_STATUS_").lower()
            for phase in progress.get("phases_completed", []):
                if phase not in done:
                    done.append(phase)
                    bar.console.print(f"  [green]✓[/green] {phase}", highlight=False)
            phase = progress.get("current_phase") or ""
            bar.update(task, completed=float(progress.get("progress") or 0),
                       phase=f"{status} {phase}".strip())
            if progress.get("status") in ended_statuses():
                break
    return last


def _summary(execution: dict) -> None:
    status = word(execution["status"])
    colour = "green" if status == "completed" else "red"
    out.print(f"execution {execution['id']}: [{colour}]{status}[/{colour}]", highlight=False)
    for error in execution.get("errors", []):
        out.print(f"  {error.get('step_id') or 'execution'}: {error.get('code')} "
                  f"{error.get('message')}", highlight=False)
    if execution.get("outputs"):
        out.print_json(data=execution["outputs"])


def chat(name: Annotated[str, typer.Argument(help="the agent's id or name")],
         message: Annotated[str, typer.Option("--message", "-m",
                                              help="send one message and exit")] = "") -> None:
    """Talk with an agent: each line you type is one message of the same call."""
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
                with out.status("thinking…", spinner="dots"):
                    answer = api.agents.interact(name, text, call_id=call_id)
                call_id = answer.get("call_id", call_id)
                for tool in answer.get("tool_calls", []):
                    out.print(f"  [dim]tool {tool.get('tool', tool.get('name', '?'))}: "
                              f"{tool.get('status', '')}[/dim]", highlight=False)
                if answer.get("status") == "CALL_STATUS_FAILED":
                    err.print(f"[red]{answer.get('reason')}[/red] {answer.get('error', '')}")
                    if message:
                        raise typer.Exit(1)
                else:
                    out.print(f"[bold cyan]{name}>[/bold cyan] {answer.get('reply', '')}",
                              highlight=False)
                if message:
                    return
    run()


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

    @friendly
    def run() -> None:
        with client() as api:
            api.me()  # refreshes the token first if it has expired
            headers = {"Authorization": f"Bearer {api.tokens.access_token}"}
            try:
                socket = connect(api.live_url("/ws/calls"), additional_headers=headers)
            except InvalidStatus as exc:
                raise ApiError.from_response(httpx.Response(
                    exc.response.status_code, content=exc.response.body or b"")) from None
            follow(api, socket)

    def follow(api: Client, socket) -> None:
        names: dict[str, str] = {}

        def agent_name(agent_id: str) -> str:  # the agent's name, looked up once
            if agent_id and agent_id not in names:
                try:
                    names[agent_id] = api.agents.get(agent_id).get("name") or agent_id
                except (ApiError, httpx.TransportError):
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


def _activate(name: str):
    @friendly
    def activate(key: Annotated[str, typer.Argument(help="id or name")],
                 output: Output = "table") -> None:
        """Make it active (workflows: executable; agents: can interact)."""
        with client() as api:
            emit(api.resource(name).activate(key), output)
    return activate


def register(app: typer.Typer) -> typer.Typer:
    """Adds the client commands to `app`; returns the `secrets` group (which also has the
    operator's `secrets rotate`)."""
    app.command("login")(login)
    app.command("logout")(logout)
    groups = {name: _resource_app(name) for name in RESOURCES}
    groups["workflows"].command("run")(run_workflow)
    for name in ("workflows", "agents"):
        groups[name].command("activate")(_activate(name))
    groups["agents"].command("chat")(chat)
    calls = typer.Typer(help="agent calls", no_args_is_help=True)
    calls.command("tail")(tail)
    for name, group in groups.items():
        app.add_typer(group, name=name)
    app.add_typer(calls, name="calls")
    return groups["secrets"]
