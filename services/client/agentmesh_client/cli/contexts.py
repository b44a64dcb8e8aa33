"""`agentmesh config`: the contexts (meshes and accounts) and which one commands use, as
`kubectl config` has them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from agentmesh_client.cli import config, exits
from agentmesh_client.cli.output import err, out

app = typer.Typer(help="contexts: several meshes and accounts, one current", no_args_is_help=True)


def _missing(name: str) -> None:
    err.print(f"[red]error:[/red] no context named {name!r}; see: agentmesh config get-contexts",
              highlight=False)
    raise typer.Exit(exits.NOT_FOUND)


@app.command("get-contexts")
def get_contexts() -> None:
    """List the contexts; * marks the current one."""
    data = config.load()
    current = config.current_name(data)
    table = Table("current", "name", "url", "user", box=None)
    for name, settings in sorted(data["contexts"].items()):
        table.add_row("*" if name == current else "", name, settings.get("url", ""),
                      settings.get("email", "") + ("" if settings.get("access_token")
                                                   or settings.get("api_key") else
                                                   " (logged out)"))
    out.print(table)


@app.command("current-context")
def current_context() -> None:
    """Print the current context's name."""
    out.print(config.current_name(), highlight=False)


@app.command("use-context")
def use_context(name: Annotated[str, typer.Argument(help="the context to make current")]) -> None:
    """Make a context the current one."""
    data = config.load()
    if name not in data["contexts"]:
        _missing(name)
    data["current_context"] = name
    config.save(data)
    out.print(f"switched to context [bold]{name}[/bold] ({data['contexts'][name].get('url', '')})",
              highlight=False)


@app.command("set-context")
def set_context(
    name: Annotated[str, typer.Argument(help="the context to make or change")],
    url: Annotated[str, typer.Option(help="the mesh's gateway URL")] = "",
    api_key: Annotated[str, typer.Option(help="authenticate with this API key",
                                         envvar="AGENTMESH_SET_API_KEY")] = "",
    use: Annotated[bool, typer.Option("--use", help="also make it current")] = False,
) -> None:
    """Make a context (or change its URL or API key); `agentmesh login --name NAME` logs in."""
    values = {k: v for k, v in (("url", url), ("api_key", api_key)) if v}
    data = config.load()
    if name not in data["contexts"] and "url" not in values:
        values["url"] = config.DEFAULT_URL
    config.update_context(name, values)
    if use:
        data = config.load()
        data["current_context"] = name
        config.save(data)
    out.print(f"context [bold]{name}[/bold] set" + (" and current" if use else ""),
              highlight=False)


@app.command("delete-context")
def delete_context(name: Annotated[str, typer.Argument(help="the context to forget")]) -> None:
    """Forget a context and its session."""
    data = config.load()
    if name not in data["contexts"]:
        _missing(name)
    del data["contexts"][name]
    if data.get("current_context") == name:
        data["current_context"] = next(iter(sorted(data["contexts"])), "")
    config.save(data)
    out.print(f"deleted context {name}")
