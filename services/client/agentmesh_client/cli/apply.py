"""`agentmesh apply -f FILE|FOLDER`: declarative create-or-update, as `kubectl apply` does it.

Each document names its kind and carries the resource's fields:

    kind: Agent            # or agent / agents: any noun with Create, Get and Update RPCs
                           # (Agent, Tool, Workflow, Prompt, Model, Secret, Policy, ...)
    name: triage           # the key it is found by (`slug` or `id` where given)
    model: gpt-4o
    description: sorts the inbox

A file may hold several YAML documents (`---`) or a JSON list; a folder is every .yaml, .yml
and .json file in it (sorted; `-R` also its subfolders). Documents apply in an order that lets
references resolve (secrets and models before agents, tools before workflows, ...).

Each document is read from the mesh first: missing, it is created; present, only the fields
that differ from what the mesh has are updated (with an update mask naming them); equal, it is
left alone. A second run therefore changes nothing and says so. Fields the server takes but
never shows (a secret's value) are set when created and not compared.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agentmesh_client._generated.contract import INPUT_ONLY, ROUTES
from agentmesh_client._generated.services import Services
from agentmesh_client._model import Model
from agentmesh_client.cli import exits
from agentmesh_client.cli.output import (InputError, err, friendly, out, parse_text, report,
                                         word)
from agentmesh_client.cli.session import client
from agentmesh_client.errors import ApiError, NotFound

# Kinds first in this list apply first: what others refer to comes before them.
ORDER = ("secret", "model", "prompt", "constraint", "skill", "tool", "template", "agent",
         "workflow", "policy")
SUFFIXES = (".yaml", ".yml", ".json")


def kinds() -> dict[str, tuple[str, str]]:
    """Every spelling of a kind (`Agent`, `agent`, `agents`) -> (the client's attribute for
    its service, its noun): every noun of the contract with Create, Get and Update RPCs in one
    service (agents, tools, ..., and governance's policies)."""
    module = sys.modules[Services.__module__]
    found = {}
    for attribute, annotation in Services.__annotations__.items():
        service = getattr(module, str(annotation))
        rpcs = {rpc.rsplit("/", 1)[1] for rpc in ROUTES
                if rpc.rsplit("/", 1)[0] == service.SERVICE}
        for noun in sorted(r.removeprefix("Create") for r in rpcs if r.startswith("Create")):
            if {f"Get{noun}", f"Update{noun}"} <= rpcs:
                plural = noun[:-1] + "ies" if noun.endswith("y") else f"{noun}s"
                for spelling in (noun, plural, attribute if noun == service.NOUN else noun):
                    found[spelling.lower()] = (attribute, noun)
    return found


def resource_of(api: Any, attribute: str, noun: str) -> Any:
    """The service's object whose collection verbs (get, create, update) act on `noun`."""
    service = api.resource(attribute)
    if service.NOUN == noun:
        return service
    return type(f"{noun}Collection", (type(service),), {"NOUN": noun})(api)


def _files(path: Path, recursive: bool) -> list[Path]:
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        return sorted(p for p in path.glob(pattern) if p.suffix in SUFFIXES and p.is_file())
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return [path]


def documents(paths: list[str], recursive: bool = False
              ) -> list[tuple[str, tuple[str, str], dict]]:
    """(where, (attribute, noun), fields) of every document, in the order they apply."""
    known = kinds()
    found = []
    for given in paths:
        for file in _files(Path(given), recursive):
            data = parse_text(file.read_text(), str(file), json_only=file.suffix == ".json",
                              every=file.suffix != ".json")
            items = data if isinstance(data, list) else [data]
            for index, item in enumerate(i for i in items if i is not None):
                where = f"{file}" + (f" (document {index + 1})" if len(items) > 1 else "")
                if not isinstance(item, dict):
                    raise InputError(f"{where}: a document is a mapping with a `kind`")
                kind = str(item.get("kind", "")).lower()
                if kind not in known:
                    names = sorted({noun for _, noun in known.values()})
                    raise InputError(f"{where}: kind {item.get('kind')!r} is not one of "
                                     f"{', '.join(names)}")
                fields = {k: v for k, v in item.items() if k != "kind"}
                if not any(fields.get(k) for k in ("id", "slug", "name")):
                    raise InputError(f"{where}: a {kind} needs a name (or slug, or id) to be "
                                     "found by")
                found.append((where, known[kind], fields))
    rank = {name: i for i, name in enumerate(ORDER)}
    found.sort(key=lambda d: rank.get(d[1][1].lower(), len(ORDER)))
    return found


def _empty(value: Any) -> bool:
    return value in (None, "", 0, False, [], {})


def same(local: Any, remote: Any) -> bool:
    """Whether the mesh holds what the document says: every field the document gives equals
    the mesh's (values the server adds, such as defaults, do not count)."""
    if isinstance(local, dict):
        if not isinstance(remote, dict):
            return _empty(local) and _empty(remote)
        return all(same(value, remote.get(key)) for key, value in local.items())
    if isinstance(local, list):
        return isinstance(remote, list) and len(local) == len(remote) and \
            all(same(a, b) for a, b in zip(local, remote))
    if local == remote or (_empty(local) and _empty(remote)):
        return True
    if isinstance(local, str) and isinstance(remote, str):
        return word(remote) == local.lower()  # `draft` for AGENT_STATUS_DRAFT
    if isinstance(local, (int, float)) and not isinstance(local, bool):
        return str(local) == str(remote)  # 64-bit integers arrive as strings
    return False


def changes(fields: dict, remote: Model) -> list[str]:
    """The fields of a document that differ from the mesh's, in the document's order."""
    hidden = set(INPUT_ONLY.get(type(remote).__name__, ()))
    data = remote.to_dict()
    return [key for key, value in fields.items()
            if key not in ("id",) and key not in hidden and not same(value, data.get(key))]


def _check_output(value: str) -> str:
    if value not in ("text", "json"):
        raise typer.BadParameter(f"{value!r} is not one of text, json")
    return value


def apply_command(
    file: Annotated[list[str], typer.Option(
        "--file", "-f", help="a YAML or JSON file, or a folder of them (repeat for more)")],
    recursive: Annotated[bool, typer.Option("--recursive", "-R",
                                            help="also the folders inside a folder")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run",
                                          help="say what would change; change nothing")] = False,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json",
                                        callback=_check_output)] = "text",
) -> None:
    """Create or update resources from files (idempotent: a second run changes nothing)."""
    @friendly
    def run() -> int:
        docs = documents(file, recursive)
        if not docs:
            raise InputError(f"no .yaml, .yml or .json file in {', '.join(file)}")
        results, failed = [], 0
        with client() as api:
            for where, (attribute, noun), fields in docs:
                resource = resource_of(api, attribute, noun)
                kind = noun.lower()
                key = str(fields.get("id") or fields.get("slug") or fields.get("name"))
                try:
                    outcome, changed = _apply_one(resource, key, fields, dry_run)
                except ApiError as exc:
                    err.print(f"{kind}/{key} ({where}):", highlight=False, end=" ")
                    failed = failed or report(exc)
                    results.append({"kind": kind, "key": key, "result": "failed",
                                    "error": exc.error})
                    continue
                results.append({"kind": kind, "key": key, "result": outcome,
                                "changed": changed})
                if output == "text":
                    detail = f" ({', '.join(changed)})" if changed and outcome != "created" else ""
                    colour = {"created": "green", "updated": "yellow"}.get(outcome, "dim")
                    out.print(f"{kind}/{key} [{colour}]{outcome}[/{colour}]{detail}"
                              + (" (dry run)" if dry_run and outcome != "unchanged" else ""),
                              highlight=False)
        counts = {r: sum(1 for x in results if x["result"] == r)
                  for r in ("created", "updated", "unchanged", "failed")}
        if output == "json":
            print(json.dumps({"results": results, **counts}, indent=2))
        elif counts["created"] + counts["updated"] + counts["failed"] == 0:
            out.print(f"nothing changed: {counts['unchanged']} resources already as the files "
                      "say", highlight=False)
        else:
            out.print(", ".join(f"{n} {r}" for r, n in counts.items() if n), highlight=False)
        return failed
    code = run()
    if code:
        raise typer.Exit(code)


def _apply_one(resource: Any, key: str, fields: dict, dry_run: bool) -> tuple[str, list[str]]:
    try:
        remote = resource.get(key)
    except NotFound:
        if not dry_run:
            resource.create(fields)
        return "created", list(fields)
    changed = changes(fields, remote)
    if not changed:
        return "unchanged", []
    if not dry_run:
        resource.update(key, {k: fields[k] for k in changed}, update_mask=",".join(changed))
    return "updated", changed


__all__ = ["apply_command", "exits"]
