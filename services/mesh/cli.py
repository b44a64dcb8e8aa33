"""The `agentmesh` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from mesh import catalog
    from mesh.runtime.server import serve_many
    from mesh.runtime.settings import get_settings

    settings = get_settings()
    if args.port is not None:
        if len(args.service) > 1:
            raise SystemExit("--port needs one service; several take their ports from AGENTMESH_PEERS")
        settings.port = args.port
    ports = {}
    if len(args.service) > 1 or (not settings.port and args.port is None):
        # A process serving several services binds each at its own address in the peer list.
        addresses = settings.peer_addresses
        missing = [name for name in args.service if name not in addresses]
        if missing and len(args.service) > 1:
            raise SystemExit(f"no address in AGENTMESH_PEERS for: {', '.join(missing)}")
        ports = {name: int(addresses[name].rpartition(":")[2]) for name in args.service
                 if name in addresses}
    definitions = [catalog.definition(name) for name in args.service]
    asyncio.run(serve_many(definitions, settings, ports))
    return 0


def _up(args: argparse.Namespace) -> int:
    from mesh.supervisor import run_up, run_up_replicated

    if args.replicas > 1 or args.database_url:
        return asyncio.run(run_up_replicated(Path(args.data_dir), args.port, args.rate_limit,
                                             args.replicas, args.database_url, args.isolation))
    return asyncio.run(run_up(Path(args.data_dir), args.port, args.rate_limit, args.isolation))


def parse_backends(items: list[str]) -> dict[str, tuple[str, int] | list[tuple[str, int]]]:
    """`name=host:port` items; a name given twice, or `name=h1:p1,h2:p2`, has several replicas."""
    found: dict[str, list[tuple[str, int]]] = {}
    for item in items:
        name, sep, addresses = item.partition("=")
        if not sep:
            raise SystemExit(f"--backend {item!r} is not NAME=HOST:PORT")
        for address in addresses.split(","):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise SystemExit(f"--backend {item!r}: {address!r} is not HOST:PORT")
            found.setdefault(name, []).append((host, int(port)))
    return {name: addresses[0] if len(addresses) == 1 else addresses
            for name, addresses in found.items()}


def _websocket_backends(items: list[str], option: str = "--websocket"
                        ) -> list[tuple[str, int]] | tuple[str, int] | None:
    found = []
    for item in items:
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit(f"{option} {item!r} is not HOST:PORT")
        found.append((host, int(port)))
    return found[0] if len(found) == 1 else (found or None)


def _gateway_config(args: argparse.Namespace) -> int:
    from mesh import contract
    from mesh.gateway.config import GatewayOptions, build
    from mesh.runtime.settings import get_settings

    backends = parse_backends(args.backend)
    options = GatewayOptions.from_settings(get_settings(), backends=backends,
                                           listen_address=args.listen, listen_port=args.port,
                                           admin_socket=args.admin_socket,
                                           metrics_port=args.metrics_port,
                                           live_websocket=_websocket_backends(
                                               getattr(args, "websocket", [])),
                                           mcp_http=_websocket_backends(
                                               getattr(args, "mcp", []), "--mcp"))
    if args.descriptor:
        options.descriptor_set = Path(args.descriptor)
    print(json.dumps(build(contract.default(), options), indent=1))
    return 0


def _migrated_database(service: str):
    from mesh import catalog
    from mesh.runtime.db import Database
    from mesh.runtime.settings import get_settings

    database = Database.for_service(service, get_settings())
    database.migrate(catalog.definition(service).migration_dirs())
    return database


def _keys_rotate(args: argparse.Namespace) -> int:
    from mesh.identity import keys

    database = _migrated_database("identity")
    with database.session(write=True) as session, session.begin():
        promoted = keys.rotate(session)
        print(f"signing key {promoted.kid} is now active; a new next key is published")
    database.close()
    return 0


def _secrets_rotate(args: argparse.Namespace) -> int:
    from mesh.masterdata import keys
    from mesh.runtime.settings import get_settings

    try:
        keys.rotate(get_settings(), new_key=not args.resume)
    except keys.KeyringError as exc:
        print(f"agentmesh secrets rotate: {exc}", file=sys.stderr)
        return 1
    return 0


def _keys_bootstrap_secret(args: argparse.Namespace) -> int:
    from mesh import keysecret

    if args.secret:
        created = keysecret.bootstrap(args.secret, args.namespace, args.api)
        print(f"secret {args.secret}: " + ("created with a new key-encryption key" if created
                                           else "exists; left as it is"))
    if args.internal_token_secret:
        created = keysecret.bootstrap(args.internal_token_secret, args.namespace, args.api,
                                      key=keysecret.INTERNAL_TOKEN_KEY,
                                      make=keysecret.new_internal_token, component="internal")
        print(f"secret {args.internal_token_secret}: " + (
            "created with a new internal token" if created else "exists; left as it is"))
    return 0


def _db_revision(args: argparse.Namespace) -> int:
    from mesh import migrations

    path = migrations.revision(args.service, args.message)
    print(f"wrote {path}" if path else f"{args.service}: the models match the migrations; "
          "nothing to write")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    """Migrates every service's database to its newest migration, then makes identity's first
    signing keys: what a Helm pre-install/pre-upgrade Job runs, once, before any replica starts
    (replicas starting together would otherwise race to create the first keys)."""
    from mesh import catalog
    from mesh.identity import keys

    names = args.service or [n for n in catalog.names() if catalog.definition(n).tables]
    for name in names:
        database = _migrated_database(name)
        if name == "identity":
            with database.session(write=True) as session, session.begin():
                keys.ensure_keys(session)
        database.close()
        print(f"{name}: migrated")
    return 0


def _db_check(args: argparse.Namespace) -> int:
    from mesh import catalog, migrations

    failed = 0
    for name in args.service or [n for n in catalog.names() if catalog.definition(n).tables]:
        drift = migrations.drift(name)
        print(f"{name}: " + ("in step with its migrations" if not drift
                             else "differs from its migrations:\n  " +
                             "\n  ".join(map(str, drift))))
        failed |= bool(drift)
    return int(failed)


def _restore(args: argparse.Namespace) -> int:
    """`agentmesh restore BACKUP_DIR --data-dir NEW_DIR` (mesh/system/backup.py)."""
    from mesh.system import backup

    try:
        manifest = backup.restore(Path(args.backup_dir), Path(args.data_dir), force=args.force)
    except (backup.RestoreError, OSError, KeyError) as exc:
        print(f"agentmesh restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {len(manifest['services'])} databases of backup {manifest['id']} "
          f"({manifest['created_at']}) into {args.data_dir}; the secrets key is not in backups: "
          "copy secrets-kek.json from the old data directory or set AGENTMESH_SECRETS_KEK")
    return 0
# ---- the command line (typer) ------------------------------------------------------------------
# Operator commands (up, serve, gateway-config, keys, secrets rotate, db) keep their handlers
# above, which take an argparse-style namespace: each typer command below only collects its
# options into one (`_run`), so a handler written for argparse ports by adding a command here.
# Client commands (login, config, apply, agents, workflows, ...) live in the client package
# (agentmesh_client.cli), which owns the `agentmesh` command; `plugin` adds these to it.
import typer  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

app = typer.Typer(name="agentmesh", help="Agent Mesh control plane", no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
keys_app = typer.Typer(help="signing keys", no_args_is_help=True)
db_app = typer.Typer(help="database migrations of a service", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")


def _run(handler, **values) -> None:
    code = handler(SimpleNamespace(**values))
    if code:
        raise typer.Exit(code)


@app.command("up", help="run every service and the Envoy gateway on 127.0.0.1")
def up_command(
    port: Annotated[int, typer.Option(help="gateway port")] = 8080,
    data_dir: Annotated[str, typer.Option(help="state directory")] = ".agentmesh",
    rate_limit: Annotated[int, typer.Option(help="gateway requests per minute before 429")] = 6000,
    isolation: Annotated[str, typer.Option(
        help="shared: one process hosts every service (each its own server, port and "
             "database; least memory); process: one process per service")] = "shared",
    replicas: Annotated[int, typer.Option(
        help="processes per service (more than 1 needs --database-url); the gateway "
             "balances over them")] = 1,
    database_url: Annotated[str, typer.Option(
        help="PostgreSQL URL (postgresql+psycopg://...) shared by every replica")] = "",
) -> None:
    if isolation not in ("shared", "process"):
        raise typer.BadParameter("shared or process", param_hint="--isolation")
    _run(_up, port=port, data_dir=data_dir, rate_limit=rate_limit, isolation=isolation,
         replicas=replicas, database_url=database_url)


@app.command("serve", help="run a service (what a Kubernetes pod runs); several names run "
             "several services in one process")
def serve_command(
    service: Annotated[list[str], typer.Argument()],
    port: Annotated[Optional[int], typer.Option(  # noqa: UP007
        help="overrides AGENTMESH_PORT (one service only)")] = None,
) -> None:
    _run(_serve, service=service, port=port)


@app.command("gen", help="regenerate gen/ from protos/ (--check, --lint)",
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def gen_command(ctx: typer.Context) -> None:  # dispatched in main() before parsing
    from mesh.build import protos

    raise typer.Exit(protos.main(list(ctx.args)))


@app.command("helm-gen", help="regenerate the Helm chart's generated files (--check)",
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def helm_gen_command(ctx: typer.Context) -> None:
    from mesh.build import helm

    raise typer.Exit(helm.main(list(ctx.args)))


@app.command("gateway-config", help="print the Envoy bootstrap for given backends")
def gateway_config_command(
    backend: Annotated[list[str], typer.Option(
        metavar="NAME=HOST:PORT",
        help="repeat a name (or NAME=H1:P1,H2:P2) for several replicas")] = [],  # noqa: B006
    listen: str = "0.0.0.0",
    port: int = 8080,
    descriptor: Annotated[str, typer.Option(help="descriptor set path as Envoy sees it")] = "",
    admin_socket: Annotated[str, typer.Option(
        help="Envoy's admin interface on this Unix socket (default: none)")] = "",
    metrics_port: Annotated[int, typer.Option(
        help="serve /stats/prometheus on --listen:PORT (needs --admin-socket)")] = 0,
    websocket: Annotated[list[str], typer.Option(
        metavar="HOST:PORT", help="the live service's WebSocket listener (repeat for "
        "replicas): routes /ws/... there")] = [],  # noqa: B006
    mcp: Annotated[list[str], typer.Option(
        metavar="HOST:PORT", help="the integration service's MCP listener: routes "
        "/api/v1/mcp there (docs/mcp.md)")] = [],  # noqa: B006
) -> None:
    _run(_gateway_config, backend=backend, listen=listen, port=port,
         descriptor=descriptor or None, admin_socket=admin_socket, metrics_port=metrics_port,
         websocket=websocket, mcp=mcp)


@keys_app.command("rotate", help="promote the pre-published next key now")
def keys_rotate_command() -> None:
    _run(_keys_rotate)


@keys_app.command("bootstrap-secret", help="make the key-encryption key and the internal token in "
                  "Kubernetes Secrets unless they exist (the Helm hook Job)")
def keys_bootstrap_secret_command(
    secret: Annotated[str, typer.Option(help="the key-encryption key's Secret")] = "",
    internal_token_secret: Annotated[str, typer.Option(
        help="the Secret of the platform's internal token (AGENTMESH_INTERNAL_TOKEN)")] = "",
    namespace: Annotated[str, typer.Option(help="default: the pod's namespace")] = "",
    api: Annotated[str, typer.Option(help="Kubernetes API URL (default: in-cluster)")] = "",
) -> None:
    _run(_keys_bootstrap_secret, secret=secret, internal_token_secret=internal_token_secret,
         namespace=namespace or None, api=api or None)


@db_app.command("revision", help="write a migration from the models' changes")
def db_revision_command(service: str,
                        message: Annotated[str, typer.Option("-m", "--message")]) -> None:
    _run(_db_revision, service=service, message=message)


@db_app.command("check", help="fail when models and migrations differ")
def db_check_command(service: Annotated[Optional[list[str]], typer.Argument()] = None  # noqa: UP007
                     ) -> None:
    _run(_db_check, service=service or [])


@db_app.command("upgrade", help="migrate every service's database (or the named ones) and "
                "make the first signing keys")
def db_upgrade_command(service: Annotated[Optional[list[str]], typer.Argument()] = None  # noqa: UP007
                       ) -> None:
    _run(_db_upgrade, service=service or [])


@app.command("restore", help="bring a new data directory to the state of a backup "
             "(POST /api/v1/system/backup; docs/system.md)")
def restore_command(
    backup_dir: Annotated[str, typer.Argument(help="DATA_DIR/backups/<time>-<id> of the backup")],
    data_dir: Annotated[str, typer.Option(help="the data directory to fill")],
    force: Annotated[bool, typer.Option(
        help="replace databases the data directory already holds")] = False,
) -> None:
    _run(_restore, backup_dir=backup_dir, data_dir=data_dir, force=force)


def _secrets_rotate_command(
    resume: Annotated[bool, typer.Option(
        help="only re-wrap what is not yet under the active key")] = False,
) -> None:
    _run(_secrets_rotate, resume=resume)


def plugin(target: typer.Typer) -> dict:
    """The server's commands, added to the `agentmesh` command of the client package (the
    `agentmesh.cli` entry point of this package): up, serve, db, keys, restore, gateway-config,
    `secrets rotate`; returns the commands that parse their own arguments (gen, helm-gen)."""
    target.registered_commands.extend(app.registered_commands)
    target.registered_groups.extend(app.registered_groups)
    for group in target.registered_groups:
        if group.name == "secrets" and group.typer_instance is not None:
            group.typer_instance.command(
                "rotate", help="make a new key-encryption key active and re-wrap every data "
                "key (online; run again to resume)")(_secrets_rotate_command)
    return {"gen": _gen, "helm-gen": _helm_gen}


def _gen(argv: list[str]) -> int:
    from mesh.build import protos

    return protos.main(argv)


def _helm_gen(argv: list[str]) -> int:
    from mesh.build import helm

    return helm.main(argv)


def main(argv: list[str] | None = None) -> int:
    """`python -m mesh.cli`: the `agentmesh` command (agentmesh_client.cli) with these commands."""
    from agentmesh_client.cli import main as agentmesh

    return agentmesh(argv)


if __name__ == "__main__":
    sys.exit(main())
