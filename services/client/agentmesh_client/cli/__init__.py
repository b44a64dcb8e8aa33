"""The `agentmesh` command. The client package provides the commands that talk to a running
mesh (login, config, apply, agents, workflows, ...); the server package, when installed, adds
its own (up, serve, db, gen, ...) through the `agentmesh.cli` entry point group: each entry is a
function given the app, which adds commands and returns {name: handler(argv) -> exit code} of
commands that parse their own arguments.

Every way it ends is a message and an exit code (exits.py), never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Annotated

import typer

from agentmesh_client.cli import config, exits
from agentmesh_client.errors import MeshError

PLUGIN_GROUP = "agentmesh.cli"
# The server package's commands: named when the client is installed without it.
SERVER_COMMANDS = ("up", "serve", "db", "gen", "helm-gen", "gateway-config", "keys", "restore")


def _select_context(
    context: Annotated[str, typer.Option(
        "--context", help="use this context for one command (default: the current one)",
        envvar="AGENTMESH_CONTEXT")] = "",
) -> None:
    """Agent Mesh: the control plane for AI agents."""
    config.selected["context"] = context


def completion(shell: Annotated[str, typer.Argument(help="bash, zsh, fish or powershell")]
               ) -> None:
    """Print the shell completion script (`agentmesh completion bash > ~/.agentmesh.bash`);
    `agentmesh --install-completion bash` installs it for you."""
    from typer._completion_shared import get_completion_script

    if shell not in ("bash", "zsh", "fish", "powershell", "pwsh"):
        raise typer.BadParameter("bash, zsh, fish or powershell", param_hint="SHELL")
    sys.stdout.write(get_completion_script(prog_name="agentmesh",
                                           complete_var="_AGENTMESH_COMPLETE", shell=shell))


def build() -> tuple[typer.Typer, dict[str, Callable[[list[str]], int]]]:
    """The app with the client's commands and every installed plugin's."""
    from agentmesh_client.cli import commands

    app = typer.Typer(name="agentmesh", help="Agent Mesh control plane", no_args_is_help=True,
                      pretty_exceptions_enable=False, callback=_select_context,
                      context_settings={"help_option_names": ["-h", "--help"]})
    commands.register(app)
    app.command("completion")(completion)
    raw: dict[str, Callable[[list[str]], int]] = {}
    for entry in entry_points(group=PLUGIN_GROUP):
        raw.update(entry.load()(app) or {})
    return app, raw


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 done, 2 a usage error (with the usage line), the other codes of
    exits.py per kind of failure, 130 interrupted."""
    from typer._click import exceptions as usage

    argv = sys.argv[1:] if argv is None else argv
    raw: dict[str, Callable[[list[str]], int]] = {}
    try:
        app, raw = build()
        if argv[:1] and argv[0] in raw:  # its own flags go to it unparsed
            return raw[argv[0]](argv[1:])
        result = app(args=argv, prog_name="agentmesh", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except usage.NoArgsIsHelpError as exc:  # `agentmesh`, `agentmesh agents`: the help
        exc.show()
        return exits.USAGE
    except usage.ClickException as exc:  # usage errors: the usage line, the problem; exit 2
        exc.show()
        if argv[:1] and argv[0] in SERVER_COMMANDS and not raw:
            print(f"`agentmesh {argv[0]}` comes with the server, which is not installed here: "
                  "install the `agentmesh` package (the repository's root) beside this client",
                  file=sys.stderr)
        return exc.exit_code
    except typer.Abort:  # "no" at a confirmation, Ctrl-C or end of input at a prompt
        print("aborted", file=sys.stderr)
        return exits.FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return exits.INTERRUPTED
    except MeshError as exc:  # outside a command's own handling
        from agentmesh_client.cli.output import report

        return report(exc)
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        if os.environ.get("AGENTMESH_DEBUG"):
            raise
        print(f"agentmesh: unexpected {type(exc).__name__}: {exc} (AGENTMESH_DEBUG=1 shows "
              "the traceback)", file=sys.stderr)
        return exits.FAILED
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
