"""The `agentmesh` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from mesh import catalog
    from mesh.runtime.server import serve
    from mesh.runtime.settings import get_settings

    settings = get_settings()
    if args.port is not None:
        settings.port = args.port
    asyncio.run(serve(catalog.definition(args.service), settings))
    return 0


def _up(args: argparse.Namespace) -> int:
    from mesh.supervisor import run_up

    return asyncio.run(run_up(Path(args.data_dir), args.port, args.rate_limit))


def _gateway_config(args: argparse.Namespace) -> int:
    from mesh import contract
    from mesh.gateway.config import GatewayOptions, build
    from mesh.runtime.settings import get_settings

    backends = {}
    for item in args.backend:
        name, _, address = item.partition("=")
        host, _, port = address.rpartition(":")
        backends[name] = (host, int(port))
    options = GatewayOptions.from_settings(get_settings(), backends=backends,
                                           listen_address=args.listen, listen_port=args.port)
    if args.descriptor:
        options.descriptor_set = Path(args.descriptor)
    print(json.dumps(build(contract.default(), options), indent=1))
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from mesh.identity import keys
    from mesh.runtime.db import Database
    from mesh.runtime.settings import get_settings

    settings = get_settings()
    database = Database.for_service("identity", settings)
    from sqlmodel import Session

    with Session(database._writer) as session, session.begin():
        promoted = keys.rotate(session)
        print(f"signing key {promoted.kid} is now active; a new next key is published")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gen"]:  # its own flags (--check, --lint) go to the generator unparsed
        from mesh import codegen

        return codegen.main(argv[1:])
    parser = argparse.ArgumentParser(prog="agentmesh", description="Agent Mesh control plane")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run every service and the Envoy gateway on 127.0.0.1")
    up.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    up.add_argument("--data-dir", default=".agentmesh", help="state directory (default ./.agentmesh)")
    up.add_argument("--rate-limit", type=int, default=6000,
                    help="gateway requests per minute before 429 (default 6000)")
    up.set_defaults(func=_up)

    serve = sub.add_parser("serve", help="run one service (what a Kubernetes pod runs)")
    serve.add_argument("service")
    serve.add_argument("--port", type=int, help="overrides AGENTMESH_PORT")
    serve.set_defaults(func=_serve)

    sub.add_parser("gen", help="regenerate gen/ from protos/ (--check, --lint)")

    gateway = sub.add_parser("gateway-config", help="print the Envoy bootstrap for given backends")
    gateway.add_argument("--backend", action="append", default=[], metavar="NAME=HOST:PORT")
    gateway.add_argument("--listen", default="0.0.0.0")
    gateway.add_argument("--port", type=int, default=8080)
    gateway.add_argument("--descriptor", help="descriptor set path as Envoy sees it")
    gateway.set_defaults(func=_gateway_config)

    keys = sub.add_parser("keys", help="signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="promote the pre-published next key now")
    rotate.set_defaults(func=_keys_rotate)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
