"""Agent Mesh vs the FastAPI reference: throughput, latency, CPU per request and memory.

Issue 9's benchmark. It starts the real mesh as a user does (`agentmesh up`: every service and
Envoy, one Python process for the services by default) and the reference (bench/reference_app.py:
FastAPI + uvicorn, one worker, PyJWT ES256, SQLModel on SQLite in WAL), loads both with the same
agents in one tenant, then drives both with `wrk`, ALTERNATING mesh and reference inside one run,
for each call and concurrency:

    GET /api/v1/agents/{id}          (GET-by-id)
    GET /api/v1/agents?page_size=20  (list, page 1)

and prints req/s, p50, p99 and the mesh/reference ratio, the Python CPU per request of the
mesh's service process(es), Envoy's CPU, and the resident memory (VmRSS) of the whole mesh idle
and after load, and of the reference. Every answer must be 200: a wrk Lua hook counts the others
and the run says so loudly. Nothing is asserted (exit status 0 unless the set-up fails): the
goals of issue 9 are printed beside the figures, "met" or "not met".

`--mode scale` measures the "lists at scale" goal instead: list page 1 of a tenant with 1,000
agents, and pages 1 and 500 of a tenant with 100,000 agents (`--scale-agents`), on the mesh (and
on the reference too with `--scale-reference`; it needs seconds per page at that size).
The 1,000 agents are created through the REST API; the 100,000 are inserted straight into the
agents service's SQLite file with the service's own table definition (AgentRow) and its
per-tenant row count kept in step, because creating them one REST call at a time would take
many minutes. The mesh is then asked for the last page and for one inserted agent to prove it
sees them. `--mode all` runs both.

    bash bench/setup                       # wrk + the bench extra (FastAPI, uvicorn)
    .venv/bin/python bench/lean_runtime.py [--agents 1000] [--seconds 10] [--rounds 3]
                                           [--connections 16,64] [--mode compare|scale|all]

See bench/README.md for what each figure means and the latest figures. The parts live in
bench/lean/ (the systems, the data, wrk and the report); this file is the run's order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx2

from lean.data import (Tenant, bulk_rows, create_agents, insert_into_mesh_elsewhere, read_all,
                       reference_row, register)
from lean.load import WRK_SCRIPT, Call, Run, Target, measure_floor, run_matrix
from lean.report import (count_label, machine_line, median, memory_table, print_floor,
                         print_goals, print_run_errors, summarize, versions)
from lean.systems import Mesh, Reference

PAGE_SIZE = 20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000, help="agents in the tenant (1000)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--connections", default="16,64",
                        help="wrk connections, comma-separated (16,64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per call (2)")
    parser.add_argument("--mode", choices=["compare", "scale", "all"], default="compare",
                        help="compare: GET-by-id and list vs the reference; scale: list pages "
                             "at 1,000 vs --scale-agents agents; all: both")
    parser.add_argument("--scale-agents", type=int, default=100_000)
    parser.add_argument("--deep-page", type=int, default=500)
    parser.add_argument("--scale-reference", action="store_true",
                        help="also measure the reference's lists at scale (it answers a page "
                             "of 100,000 agents in seconds: use few connections)")
    parser.add_argument("--isolation", choices=["shared", "process"], default="shared",
                        help="agentmesh up --isolation (shared, the default of agentmesh up)")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="skip the floor: a bare grpc.aio handler behind the same gateway")
    parser.add_argument("--reference-workers", type=int, default=1,
                        help="uvicorn workers of the reference (1; 2 is what a user on two "
                             "cores would run)")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",") if c]
    return args


def load_data(mesh: Mesh, reference: Reference, args: argparse.Namespace
              ) -> tuple[Tenant, Tenant | None]:
    """The tenant of --agents agents on both systems and, for the scale mode, the big tenant."""
    owner = asyncio.run(register(mesh.base, "bench"))
    started = time.monotonic()
    asyncio.run(create_agents(mesh.base, owner, args.agents))
    print(f"created {args.agents} agents through the REST API in "
          f"{time.monotonic() - started:.1f}s", flush=True)
    mesh_agents = asyncio.run(read_all(mesh.base, owner))
    reference.insert([reference_row(a) for a in mesh_agents])
    owner.ref_token = reference.token(owner.claims)

    big = None
    if args.mode in ("scale", "all"):
        big = asyncio.run(register(mesh.base, "bench-big"))
        started = time.monotonic()
        rows = bulk_rows(big, args.scale_agents)
        insert_into_mesh_elsewhere(mesh.data_dir, big.tenant_id, rows)
        if args.scale_reference:
            reference.insert(rows)
        big.ref_token = reference.token(big.claims)
        big.agent_ids = [rows[len(rows) // 2]["id"]]
        print(f"inserted {args.scale_agents} agents of a second tenant straight into the "
              f"mesh's agents.db{' and the reference' if args.scale_reference else ''} in "
              f"{time.monotonic() - started:.1f}s", flush=True)
    return owner, big


def compare_data(mesh: Mesh, reference: Reference, owner: Tenant) -> str:
    """Same data, same shape: one agent and one page from both. Returns the agent's id."""
    agent_id = owner.agent_ids[len(owner.agent_ids) // 2]
    ours = httpx2.get(f"{mesh.base}/api/v1/agents/{agent_id}",
                     headers={"Authorization": f"Bearer {owner.token}"}).json()
    theirs = httpx2.get(f"{reference.base}/api/v1/agents/{agent_id}",
                       headers={"Authorization": f"Bearer {owner.ref_token}"}).json()
    only_mesh = sorted(set(ours) - set(theirs))
    only_ref = sorted(set(theirs) - set(ours))
    page_m = httpx2.get(f"{mesh.base}/api/v1/agents?page_size={PAGE_SIZE}",
                       headers={"Authorization": f"Bearer {owner.token}"}).json()
    page_r = httpx2.get(f"{reference.base}/api/v1/agents?page_size={PAGE_SIZE}",
                       headers={"Authorization": f"Bearer {owner.ref_token}"}).json()
    same_page = [a["id"] for a in page_m["items"]] == [a["id"] for a in page_r["items"]]
    print(f"\nsame data: agent {agent_id}: {len(ours)} JSON fields from the mesh, "
          f"{len(theirs)} from the reference"
          + (f" (only mesh: {only_mesh})" if only_mesh else "")
          + (f" (only reference: {only_ref}; null on the reference)" if only_ref else "")
          + f"; first page: total {page_m['total']} vs {page_r['total']}, same ids in the "
          f"same order: {'yes' if same_page else 'NO'}")
    print(f"JSON bytes: GET {len(json.dumps(ours))} vs {len(json.dumps(theirs))}, "
          f"list page {len(json.dumps(page_m))} vs {len(json.dumps(page_r))} (mesh vs ref)")
    return agent_id


def run_compare(mesh: Mesh, owner: Tenant, agent_id: str, targets: list[Target], work: Path,
                args: argparse.Namespace, wrk: str, script: Path) -> tuple[list[Run], dict]:
    """GET-by-id and list page 1 on both systems (and the floor): the runs and their medians."""
    tokens = {"mesh": owner.token, "reference": owner.ref_token}
    calls = [Call("GET /agents/{id}", tokens, f"/api/v1/agents/{agent_id}"),
             Call("list page 1", tokens, f"/api/v1/agents?page=1&page_size={PAGE_SIZE}")]
    print("\n== runs (mesh and reference alternate) ==", flush=True)
    runs = run_matrix(calls, targets, args, wrk, script)
    results = summarize(runs, [c.name for c in calls], args)
    if args.floor:
        floor = measure_floor(mesh, owner.token, work, args, wrk, script)
        runs = runs + floor
        for c in args.connections:
            got = [r.cpu["floor"] / r.requests * 1000 for r in floor
                   if r.connections == c and r.requests]
            if got and ("GET /agents/{id}", c) in results:
                results[("GET /agents/{id}", c)]["floor_ms"] = median(got)
        print_floor(results, args)
    return runs, results


def run_scale(mesh: Mesh, owner: Tenant, big: Tenant, targets: list[Target],
              args: argparse.Namespace, wrk: str, script: Path) -> tuple[list[Run], dict]:
    """List pages of the small and the big tenant: the runs, and each page's p50 against page
    1 of the small tenant by (target, connections, call)."""
    headers = {"Authorization": f"Bearer {big.token}"}
    deep = httpx2.get(f"{mesh.base}/api/v1/agents?page={args.deep_page}"
                     f"&page_size={PAGE_SIZE}", headers=headers, timeout=60)
    one = httpx2.get(f"{mesh.base}/api/v1/agents/{big.agent_ids[0]}", headers=headers)
    deep_body = deep.json() if deep.status_code == 200 else {}
    print(f"\nscale data check: the mesh reports total {deep_body.get('total')} for the "
          f"big tenant, page {args.deep_page} has {len(deep_body.get('items', []))} "
          f"items (HTTP {deep.status_code}); an inserted agent answers HTTP "
          f"{one.status_code}")
    small = {"mesh": owner.token, "reference": owner.ref_token}
    large = {"mesh": big.token, "reference": big.ref_token}
    n_small, n_big = count_label(args.agents), count_label(args.scale_agents)
    calls = [Call(f"p1 @{n_small}", small, f"/api/v1/agents?page=1&page_size={PAGE_SIZE}"),
             Call(f"p1 @{n_big}", large, f"/api/v1/agents?page=1&page_size={PAGE_SIZE}"),
             Call(f"p{args.deep_page} @{n_big}", large,
                  f"/api/v1/agents?page={args.deep_page}&page_size={PAGE_SIZE}")]
    print(f"\n== lists at scale: runs (tenant of {args.agents} vs tenant of "
          f"{args.scale_agents}) ==", flush=True)
    runs = run_matrix(calls, targets if args.scale_reference else targets[:1], args,
                      wrk, script)
    summarize(runs, [c.name for c in calls], args)
    print("\n== lists at scale: each page vs page 1 of the small tenant "
          "(medians; p50 ratio above 1 = slower) ==")
    scale: dict = {}
    for target in ("mesh", "reference") if args.scale_reference else ("mesh",):
        for c in args.connections:
            def pick(name: str) -> list[Run]:
                return [r for r in runs
                        if (r.call, r.connections, r.target) == (name, c, target)]
            base_runs = pick(calls[0].name)
            b50, brps = median([r.p50_ms for r in base_runs]), median(
                [r.rps for r in base_runs])
            for call in calls[1:]:
                got = pick(call.name)
                p50, rps = median([r.p50_ms for r in got]), median([r.rps for r in got])
                scale[(target, c, call.name)] = p50 / b50 if b50 else math.nan
                print(f"  {target:<9} c{c:<3} {call.name:<12} p50 {p50:7.2f} ms vs "
                      f"{b50:6.2f} ms = {p50 / b50:5.2f}x   req/s {rps:6.0f} vs "
                      f"{brps:6.0f} = {rps / brps if brps else math.nan:4.2f}x")
    return runs, scale


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # `kill <pid>` stops the mesh and the reference too (the finally below), not only this script.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wrk = shutil.which("wrk")
    if not wrk:
        print("wrk is not installed: run `bash bench/setup` first", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="agentmesh-lean-"))
    script = work / "report.lua"
    script.write_text(WRK_SCRIPT)
    mesh = Mesh(work / "mesh", args.isolation)
    reference = Reference(work, args.reference_workers)
    keep = args.keep
    try:
        print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        print(f"machine: {machine_line()}")
        print(f"versions: {versions()}")
        print(f"settings: {args.agents} agents, {args.seconds}s per run, {args.rounds} rounds, "
              f"connections {args.connections}, wrk -t{args.threads}, mode {args.mode}, "
              f"isolation {args.isolation}")
        print("this machine is shared with other engineers: figures are noisy; see the "
              "'other cores' column", flush=True)

        started = time.monotonic()
        mesh.start()
        print(f"\nmesh up in {time.monotonic() - started:.1f}s ({work})", flush=True)
        time.sleep(2)  # let start-up work settle before reading idle memory
        print("\n== memory (VmRSS), idle ==")
        mesh_idle = memory_table("mesh, idle", mesh.processes())

        owner, big = load_data(mesh, reference, args)
        reference.start(owner.ref_token)
        time.sleep(1)
        memory_table("reference, idle", reference.processes())
        agent_id = compare_data(mesh, reference, owner)

        targets = [Target("mesh", mesh.base, mesh.processes()),
                   Target("reference", reference.base, reference.processes())]
        all_runs: list[Run] = []
        results: dict = {}
        if args.mode in ("compare", "all"):
            runs, results = run_compare(mesh, owner, agent_id, targets, work, args, wrk, script)
            all_runs += runs
        scale: dict = {}
        if big is not None:
            runs, scale = run_scale(mesh, owner, big, targets, args, wrk, script)
            all_runs += runs

        all_ok = print_run_errors(all_runs)
        log = (work / "reference.log").read_text(errors="replace")
        if "Traceback" in log:
            print(f"!! the reference logged {log.count('Traceback')} tracebacks (see "
                  f"{work / 'reference.log'})")
            keep = True
        print("\n== memory (VmRSS), after load ==")
        mesh_after = memory_table("mesh, after load", mesh.processes())
        memory_table("reference, after load", reference.processes())
        print("  mesh = the `agentmesh up` supervisor + its service process(es) + Envoy; "
              "PSS splits shared pages between processes")

        print_goals(args, results, scale, mesh_idle, mesh_after)
        if not all_ok:
            print("  (some answers were not 200: the throughput goals above are not valid)")
            keep = True
        return 0
    finally:
        mesh.stop()
        reference.stop()
        if keep:
            print(f"\ndata and logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
