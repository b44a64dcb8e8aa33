"""The `agentmesh` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from mesh import catalog
    from mesh.runtime.peers import parse_peers
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
        addresses = parse_peers(settings.peers)
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
                                             args.replicas, args.database_url))
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


def _gateway_config(args: argparse.Namespace) -> int:
    from mesh import contract
    from mesh.gateway.config import GatewayOptions, build
    from mesh.runtime.settings import get_settings

    backends = parse_backends(args.backend)
    options = GatewayOptions.from_settings(get_settings(), backends=backends,
                                           listen_address=args.listen, listen_port=args.port,
                                           admin_port=args.admin_port,
                                           metrics_port=args.metrics_port)
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

    created = keysecret.bootstrap(args.secret, args.namespace, args.api)
    print(f"secret {args.secret}: " + ("created with a new key-encryption key" if created
                                       else "exists; left as it is"))
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gen"]:  # its own flags (--check, --lint) go to the generator unparsed
        from mesh import codegen

        return codegen.main(argv[1:])
    if argv[:1] == ["helm-gen"]:
        from mesh import helmgen

        return helmgen.main(argv[1:])
    parser = argparse.ArgumentParser(prog="agentmesh", description="Agent Mesh control plane")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run every service and the Envoy gateway on 127.0.0.1")
    up.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    up.add_argument("--data-dir", default=".agentmesh", help="state directory (default ./.agentmesh)")
    up.add_argument("--rate-limit", type=int, default=6000,
                    help="gateway requests per minute before 429 (default 6000)")
    up.add_argument("--isolation", choices=["shared", "process"], default="shared",
                    help="shared: one process hosts every service (each its own server, port "
                         "and database; least memory); process: one process per service")
    up.add_argument("--replicas", type=int, default=1,
                    help="processes per service (more than 1 needs --database-url); the "
                         "gateway balances over them")
    up.add_argument("--database-url", default="",
                    help="PostgreSQL URL (postgresql+psycopg://...) shared by every replica")
    up.set_defaults(func=_up)

    serve = sub.add_parser("serve", help="run a service (what a Kubernetes pod runs); several "
                           "names run several services in one process")
    serve.add_argument("service", nargs="+")
    serve.add_argument("--port", type=int, help="overrides AGENTMESH_PORT (one service only)")
    serve.set_defaults(func=_serve)

    sub.add_parser("gen", help="regenerate gen/ from protos/ (--check, --lint)")
    sub.add_parser("helm-gen", help="regenerate the Helm chart's generated files (--check)")

    gateway = sub.add_parser("gateway-config", help="print the Envoy bootstrap for given backends")
    gateway.add_argument("--backend", action="append", default=[], metavar="NAME=HOST:PORT",
                         help="repeat a name (or NAME=H1:P1,H2:P2) for several replicas")
    gateway.add_argument("--listen", default="0.0.0.0")
    gateway.add_argument("--port", type=int, default=8080)
    gateway.add_argument("--descriptor", help="descriptor set path as Envoy sees it")
    gateway.add_argument("--admin-port", type=int, default=0,
                         help="Envoy's admin interface on 127.0.0.1 (default: none)")
    gateway.add_argument("--metrics-port", type=int, default=0,
                         help="serve /stats/prometheus on --listen:PORT (needs --admin-port)")
    gateway.set_defaults(func=_gateway_config)

    keys = sub.add_parser("keys", help="signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="promote the pre-published next key now")
    rotate.set_defaults(func=_keys_rotate)
    secret = keys_sub.add_parser("bootstrap-secret", help="make the key-encryption key in a "
                                 "Kubernetes Secret unless it exists (the Helm hook Job)")
    secret.add_argument("--secret", required=True, help="the Secret's name")
    secret.add_argument("--namespace", help="default: the pod's namespace")
    secret.add_argument("--api", help="Kubernetes API URL (default: in-cluster)")
    secret.set_defaults(func=_keys_bootstrap_secret)

    secrets = sub.add_parser("secrets", help="secrets encryption keys (docs/secrets.md)")
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True)
    secrets_rotate = secrets_sub.add_parser(
        "rotate", help="make a new key-encryption key active and re-wrap every data key "
                       "(online; run again to resume)")
    secrets_rotate.add_argument("--resume", action="store_true",
                                help="only re-wrap what is not yet under the active key")
    secrets_rotate.set_defaults(func=_secrets_rotate)

    db = sub.add_parser("db", help="database migrations of a service")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    revision = db_sub.add_parser("revision", help="write a migration from the models' changes")
    revision.add_argument("service")
    revision.add_argument("-m", "--message", required=True)
    revision.set_defaults(func=_db_revision)
    check = db_sub.add_parser("check", help="fail when models and migrations differ")
    check.add_argument("service", nargs="*")
    check.set_defaults(func=_db_check)
    upgrade = db_sub.add_parser("upgrade", help="migrate every service's database (or the named "
                                "ones) and make the first signing keys")
    upgrade.add_argument("service", nargs="*")
    upgrade.set_defaults(func=_db_upgrade)

    restore = sub.add_parser("restore", help="bring a new data directory to the state of a "
                             "backup (POST /api/v1/system/backup; docs/system.md)")
    restore.add_argument("backup_dir", help="DATA_DIR/backups/<time>-<id> of the backup")
    restore.add_argument("--data-dir", required=True, help="the data directory to fill")
    restore.add_argument("--force", action="store_true",
                         help="replace databases the data directory already holds")
    restore.set_defaults(func=_restore)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
