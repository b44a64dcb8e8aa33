"""What the commands print (tables, JSON, YAML) and read (YAML or JSON files), and errors as one
line with the API's message, its correlation id and a hint, never a traceback."""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from agentmesh_client.cli import exits
from agentmesh_client.errors import ApiError, MeshError, RateLimited, Unreachable
from agentmesh_client.models import as_dict

out = Console()
err = Console(stderr=True)
COLUMNS = ("id", "name", "slug", "status", "kind", "provider", "version", "duration_ms",
           "updated_at")
# Left out of the table of one item (json and yaml keep everything): the caller's own tenant.
HIDDEN = ("tenant_id",)
FORMATS = ("table", "json", "yaml")
# An enum value's word: AGENT_STATUS_DRAFT, MODEL_STATUS_ACTIVE -> draft, active.
_ENUM_VALUE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*?_(?:STATUS|KIND|TYPE|ROLE)_([A-Z0-9_]+)$")
_HINTS = {
    exits.UNAUTHENTICATED: "log in with: agentmesh login (or pick another context: "
                           "agentmesh config use-context NAME)",
    exits.PERMISSION_DENIED: "your role or API key does not allow this",
}


class InputError(Exception):
    """A file or an option value that cannot be used (exit code 7)."""


def check_output(value: str) -> str:
    """--output: checked before the command runs, so that a typo is a usage error."""
    if value not in FORMATS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(FORMATS)}")
    return value


Output = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml",
                                      callback=check_output)]


def friendly(fn):
    """Errors as one line (two with a hint) and the exit code of their kind (exits.py)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            raise typer.Exit(report(exc)) from None
        except Unreachable as exc:
            raise typer.Exit(report(exc)) from None
        except InputError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(exits.INVALID) from None
        except (OSError, ValueError) as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(exits.INVALID if isinstance(exc, ValueError) else exits.FAILED) \
                from None
    return run


def report(exc: MeshError) -> int:
    """Prints an error of the client; returns its exit code."""
    code = exits.code_of(exc)
    if isinstance(exc, Unreachable):
        err.print(f"[red]error:[/red] cannot reach the mesh at {exc.url}: {exc.reason}",
                  highlight=False)
        err.print("start it with: agentmesh up (or name another with --url / AGENTMESH_URL / "
                  "agentmesh config use-context)")
        return code
    assert isinstance(exc, ApiError)
    where = f" (correlation id {exc.correlation_id})" if exc.correlation_id else ""
    wait = ""
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        wait = f"; retry in {exc.retry_after:g} s"
    err.print(f"[red]error:[/red] {exc.message} [dim]{exc.error}, HTTP {exc.status}"
              f"{where}{wait}[/dim]", highlight=False)
    if code in _HINTS:
        err.print(_HINTS[code])
    return code


def word(value: Any) -> Any:
    """An enum value as the one lowercase word tables show for every resource."""
    if isinstance(value, str):
        match = _ENUM_VALUE.match(value)
        if match:
            return match.group(1).lower()
    return value


def emit(data: Any, output: str, columns: tuple[str, ...] = COLUMNS) -> None:
    data = as_dict(data)
    if output == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif output == "yaml":
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    else:
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


def _cell(value: Any, width: int) -> str:
    value = word(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def parse_text(text: str, name: str, json_only: bool = False, every: bool = False) -> Any:
    """JSON or YAML text (every YAML document with `every`); what does not parse is one line
    naming the file and where."""
    if json_only:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise InputError(f"{name} is not valid JSON: {exc}") from None
    try:
        return list(yaml.safe_load_all(text)) if every else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{name} is not valid YAML: {problem}{where}") from None


def read_file(path: str) -> Any:
    """A JSON (`.json`) or YAML file, or stdin (`-`)."""
    text = Path(path).read_text() if path != "-" else sys.stdin.read()
    return parse_text(text, "stdin" if path == "-" else path, json_only=path.endswith(".json"))
