"""`agentmesh call SERVICE.RPC [PATH VALUES...]`: any RPC of the contract, as `gh api` calls any
route: governance, integration, observability, ... — every method of the Python client's
services (generated from the contract, so a new RPC is callable without a new command)."""

from __future__ import annotations

import json
import re
import sys
from typing import Annotated, Any

import typer

from agentmesh_client._generated.contract import ROUTES
from agentmesh_client._generated.services import Services
from agentmesh_client.cli.commands import _set_values
from agentmesh_client.cli.output import InputError, Output, emit, friendly, read_file
from agentmesh_client.cli.session import client

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def methods() -> dict[str, dict[str, str]]:
    """service attribute -> {method name: RPC name} of every routed RPC."""
    module = sys.modules[Services.__module__]
    found: dict[str, dict[str, str]] = {}
    for attribute, annotation in Services.__annotations__.items():
        service = getattr(module, str(annotation)).SERVICE
        found[attribute] = {_CAMEL.sub("_", rpc.rsplit("/", 1)[1]).lower(): rpc.rsplit("/", 1)[1]
                            for rpc in ROUTES if rpc.rsplit("/", 1)[0] == service}
    return found


def call_command(
    target: Annotated[str, typer.Argument(
        metavar="SERVICE.RPC", help="e.g. governance.list_policies, agents.get_agent_stats")],
    values: Annotated[list[str] | None, typer.Argument(
        metavar="[PATH VALUE]...", help="the route's path values, in order")] = None,
    file: Annotated[str, typer.Option("--file", "-f", help="the request: YAML or JSON "
                                      "(- for stdin)")] = "",
    set_: Annotated[list[str], typer.Option(
        "--set", metavar="FIELD=VALUE", help="a request field (repeat)")] = [],  # noqa: B006
    output: Output = "json",
) -> None:
    """Call any RPC of the contract through its REST route (`agentmesh rpcs` lists them)."""
    @friendly
    def run() -> None:
        known = methods()
        attribute, _, name = target.replace("-", "_").partition(".")
        if attribute not in known or name not in known[attribute]:
            choices = (", ".join(sorted(known[attribute])) if attribute in known
                       else ", ".join(sorted(known)))
            raise InputError(f"{target!r} is not an RPC of the contract; "
                             f"{'its RPCs' if attribute in known else 'services'}: {choices}")
        body: dict[str, Any] = {**((read_file(file) or {}) if file else {}),
                                **_set_values(set_)}
        with client() as api:
            method = getattr(getattr(api, attribute), name)
            try:
                result = method(*(values or []), body=body)
            except TypeError as exc:
                raise InputError(f"{target}: {exc}") from None
            if hasattr(result, "__next__"):  # a stream: one JSON line per event
                for event in result:
                    sys.stdout.write(json.dumps(event.to_dict() if hasattr(event, "to_dict")
                                                else event) + "\n")
                    sys.stdout.flush()
                return
            emit(result, output)
    run()


def list_command() -> None:
    """Name every service and RPC `agentmesh call` takes."""
    for attribute, names in sorted(methods().items()):
        for name in sorted(names):
            print(f"{attribute}.{name}")
