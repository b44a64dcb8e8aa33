"""Load with wrk: its reporting hook, one measured run (requests, latency, every process's CPU,
the machine's), the matrix of runs alternating the targets, and the floor."""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lean.procfs import cpu_seconds, machine_jiffies
from lean.systems import Mesh, Proc


# wrk reports through its done() hook as one JSON line. response() counts every answer that is
# not 200 (wrk itself only counts status >= 400) and remembers the first such status.
WRK_SCRIPT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non200 = 0; first_bad = 0 end
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_bad == 0 then first_bad = status end
  end
end
function done(summary, latency, requests)
  local bad, first = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non200")
    if first == 0 then first = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"non200": %d, "first_bad_status": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    bad, first, e.connect, e.read, e.write, e.timeout))
end
"""



@dataclass
class Run:
    round: int
    call: str
    connections: int
    target: str  # "mesh" / "reference"
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    non200: int = 0
    first_bad_status: int = 0
    socket_errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per role during the run
    machine_cores: float = 0.0  # all CPUs busy, in cores, during the run

    @property
    def rps(self) -> float:
        good = self.requests - self.non200
        return good / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        return self.requests > 0 and not self.non200 and not self.socket_errors


def cpu_by_role(procs: list[Proc]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for proc in procs:
        totals[proc.role] = totals.get(proc.role, 0.0) + cpu_seconds(proc.pid)
    return totals


def wrk_run(wrk: str, script: Path, url: str, token: str, connections: int, seconds: int,
            threads: int) -> dict:
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "-H", f"Authorization: Bearer {token}", "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_WRK ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    return json.loads(line.removeprefix("BENCH_WRK "))


def measure(run: Run, wrk: str, script: Path, url: str, token: str, seconds: int, threads: int,
            procs: list[Proc]) -> Run:
    before = cpu_by_role(procs)
    own_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, total0 = machine_jiffies()
    report = wrk_run(wrk, script, url, token, run.connections, seconds, threads)
    busy1, total1 = machine_jiffies()
    own_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = cpu_by_role(procs)
    run.cpu = {role: after[role] - before.get(role, 0.0) for role in after}
    run.cpu["wrk"] = (own_after.ru_utime + own_after.ru_stime
                      - own_before.ru_utime - own_before.ru_stime)
    ncpu = os.cpu_count() or 1
    run.machine_cores = (busy1 - busy0) / max(1, total1 - total0) * ncpu
    run.requests = report["requests"]
    run.seconds = report["duration_us"] / 1e6
    run.p50_ms, run.p99_ms = report["p50_us"] / 1000, report["p99_us"] / 1000
    run.non200, run.first_bad_status = report["non200"], report["first_bad_status"]
    run.socket_errors = sum(report[k] for k in ("connect", "read", "write", "timeout"))
    return run


@dataclass
class Target:
    name: str  # "mesh" / "reference"
    base: str
    procs: list[Proc]


@dataclass
class Call:
    name: str
    tokens: dict[str, str]  # target -> bearer token
    path: str


def run_matrix(calls: list[Call], targets: list[Target], args: argparse.Namespace, wrk: str,
               script: Path) -> list[Run]:
    """Every (round, connections, call) measured on each target in turn; the order of the
    targets flips every round so that neither always runs first."""
    runs: list[Run] = []
    for call in calls:  # warm-up, discarded: connections, caches, JIT-free Python paths
        for target in targets:
            wrk_run(wrk, script, target.base + call.path, call.tokens[target.name],
                    args.connections[0], max(1, args.warmup), args.threads)
    for rnd in range(1, args.rounds + 1):
        order = targets if rnd % 2 else list(reversed(targets))
        for connections in args.connections:
            for call in calls:
                for target in order:
                    run = measure(Run(rnd, call.name, connections, target.name), wrk, script,
                                  target.base + call.path, call.tokens[target.name],
                                  args.seconds, args.threads, target.procs)
                    runs.append(run)
                    print(f"  round {rnd}  c{connections:<3} {call.name:<16} {target.name:<9} "
                          f"{run.rps:>8.0f} req/s  p50 {run.p50_ms:7.2f} ms  "
                          f"p99 {run.p99_ms:7.2f} ms"
                          + ("" if run.ok else f"   !! {run.non200} non-200 (first "
                             f"{run.first_bad_status}), {run.socket_errors} socket errors"),
                          flush=True)
    return runs



def measure_floor(mesh: Mesh, token: str, work: Path, args: argparse.Namespace, wrk: str,
                  script: Path) -> list[Run]:
    """GET-by-id against a bare grpc.aio handler (a constant Agent) behind a copy of the mesh's
    own gateway: the CPU a Python gRPC server spends per call on this machine before any of
    Agent Mesh's code runs. Machines of this kind differ by tens of percent; the floor beside
    the mesh's figure says how much of it is ours."""
    from grpc_floor import BareBehindGateway

    (envoy,) = [p for p in mesh.processes() if p.role == "envoy"]
    binary = Path(f"/proc/{envoy.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    floor = BareBehindGateway(mesh.data_dir / "envoy.json", binary, work)
    floor.start()
    try:
        target = Target("floor", floor.base, [Proc("floor", floor.pid)])
        print("\n== the floor: a bare grpc.aio handler behind a copy of the same gateway ==",
              flush=True)
        return run_matrix([Call("GET floor", {"floor": token}, "/api/v1/agents/x")], [target],
                          args, wrk, script)
    finally:
        floor.stop()
