"""Workflows on DBOS (SQLite): how fast executions are accepted, and how long a 3-step workflow
takes from submit to COMPLETED.

Runs the workflows service in-process (the real runtime and DBOS, SQLite files in a temporary
directory) and drives it over gRPC, as the gateway would:

  * start rate   - ExecuteWorkflow calls with C concurrent callers for N executions: executions
                   accepted (row written, DBOS workflow enqueued) per second;
  * drain        - how long those N executions take to all reach COMPLETED (executions/s);
  * latency      - one execution at a time, submit -> COMPLETED seen on WatchExecution, p50/p99.

The steps are transforms (builtin, no network) until the tools service executes builtin tools;
`--steps` changes the step count. `--rss` also starts `agentmesh serve workflows` and
`agentmesh serve agents` as separate processes and prints their idle RSS (`ps -o rss`), the
memory DBOS adds being the difference. Nothing is asserted: this is a measuring tool.

    .venv/bin/python bench/workflows_engine.py [--executions 200] [--concurrency 16]
        [--latency-runs 50] [--steps 3] [--rss] [--poll-only]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.protobuf import json_format  # noqa: E402

from agentmesh.workflows.v1 import workflows_pb2 as pb  # noqa: E402
from agentmesh.workflows.v1 import workflows_pb2_grpc as pb_grpc  # noqa: E402
from mesh.workflows.service import DEFINITION  # noqa: E402
from tests.harness import Identity, ServiceHarness  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def workflow(steps: int) -> pb.Workflow:
    chain = [{"id": "s0", "type": "STEP_TYPE_TRANSFORM",
              "transform": {"expression": "{n: inputs.n}"}}]
    for i in range(1, steps):
        chain.append({"id": f"s{i}", "type": "STEP_TYPE_TRANSFORM", "depends_on": [f"s{i-1}"],
                      "inputs": {"n": f"steps.s{i-1}.output.n"},
                      "transform": {"expression": "{n: sum([args.n, `1`])}"}})
    return json_format.ParseDict({"name": f"bench {steps} steps", "steps": chain}, pb.Workflow())


def poll_only() -> None:
    """The engine as it was before issue 27: executions wait for DBOS's queue poll (200 ms), no
    claim when one is enqueued or a slot frees. For a before/after in one sitting."""
    from mesh.workflows import dispatch, state

    async def nothing(*args, **kwargs) -> int:
        return 0

    state.QUEUE_POLLING_SECONDS = 0.2
    dispatch.Dispatcher.wake = nothing
    dispatch.Dispatcher.wake_when_released = nothing


def run(args) -> None:
    if args.poll_only:
        poll_only()
    data = Path(tempfile.mkdtemp(prefix="wf-bench-"))
    harness = ServiceHarness(DEFINITION, data)
    identity = Identity()
    meta = identity.metadata()
    stub = harness.stub(pb_grpc.WorkflowServiceStub)
    try:
        made = stub.CreateWorkflow(pb.CreateWorkflowRequest(workflow=workflow(args.steps)),
                                   metadata=meta)
        stub.ActivateWorkflow(pb.ActivateWorkflowRequest(workflow_id=made.id), metadata=meta)

        def execute(i: int) -> str:
            request = pb.ExecuteWorkflowRequest(workflow_id=made.id)
            request.inputs.update({"n": i})
            return stub.ExecuteWorkflow(request, metadata=meta).id

        # warm-up
        for i in range(3):
            list(stub.WatchExecution(pb.WatchExecutionRequest(execution_id=execute(i)),
                                     metadata=meta))
        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(args.concurrency) as pool:
            ids = list(pool.map(execute, range(args.executions)))
        accept = time.perf_counter() - started
        for execution_id in ids:
            list(stub.WatchExecution(pb.WatchExecutionRequest(execution_id=execution_id),
                                     metadata=meta))
        drained = time.perf_counter() - started
        cpu = time.process_time() - cpu  # the service and its client, in this one process
        failed = sum(1 for e in ids if stub.GetExecution(pb.GetExecutionRequest(
            execution_id=e), metadata=meta).status != pb.EXECUTION_STATUS_COMPLETED)

        latencies = []
        for i in range(args.latency_runs):
            t0 = time.perf_counter()
            execution_id = execute(i)
            last = None
            for last in stub.WatchExecution(pb.WatchExecutionRequest(execution_id=execution_id),
                                            metadata=meta):
                pass
            assert last.status == pb.EXECUTION_STATUS_COMPLETED, last
            latencies.append((time.perf_counter() - t0) * 1000)
        print(f"workflows on DBOS, SQLite, {args.steps}-step workflow of transform steps"
              + (" (poll only: DBOS's 200 ms queue poll, no claim on enqueue)"
                 if args.poll_only else ""))
        print(f"  started:  {args.executions} executions in {accept:.2f}s = "
              f"{args.executions / accept:.0f} executions/s accepted "
              f"(concurrency {args.concurrency})")
        print(f"  drained:  all {args.executions} COMPLETED after {drained:.2f}s = "
              f"{args.executions / drained:.1f} executions/s end to end ({failed} not completed)")
        print(f"  cpu:      {cpu * 1000 / args.executions:.1f} ms of this process's CPU per "
              f"execution (service and gRPC client)")
        print(f"  latency:  {args.steps} steps, submit -> COMPLETED, {args.latency_runs} runs one "
              f"at a time: p50 {percentile(latencies, 0.5):.0f} ms, p99 "
              f"{percentile(latencies, 0.99):.0f} ms, mean {statistics.mean(latencies):.0f} ms")
    finally:
        harness.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss(service: str, idle: float) -> int:
    data = Path(tempfile.mkdtemp(prefix=f"rss-{service}-"))
    env = {**os.environ, "AGENTMESH_DATA_DIR": str(data), "AGENTMESH_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "mesh.cli", "serve", service, "--port",
                                str(_free_port())], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        time.sleep(idle)
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(process.pid)], capture_output=True,
                             text=True).stdout.strip()
        return int(out or 0)
    finally:
        process.terminate()
        process.wait(20)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rss", action="store_true")
    parser.add_argument("--poll-only", action="store_true",
                        help="without the engine's claims (the queue poll at 200 ms), to compare")
    options = parser.parse_args()
    run(options)
    if options.rss:
        workflows_kb, agents_kb = rss("workflows", 8), rss("agents", 8)
        print(f"  idle RSS: workflows process {workflows_kb / 1024:.0f} MiB, agents process "
              f"{agents_kb / 1024:.0f} MiB: the workflows service with DBOS adds "
              f"{(workflows_kb - agents_kb) / 1024:.0f} MiB over a service without it")
