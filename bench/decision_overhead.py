"""What governance adds to an interaction (issue 25): the decisions and budget checks every
model request and tool call now goes through, measured on real interactions in-process.

The agents, tools and governance services run in this process (tests/harness.py: real
runtimes, real gRPC between them, SQLite), with the stand-in masterdata and the scripted
OpenAI-compatible model server of the tests. Each interaction is one tool call and a final
answer: two model requests (each `guard_model_call`: the `call_model` decision and the budget
check at once, then `record_model_usage`) and one tool call (`call_tool` decision). Printed:

* per interaction, the time spent inside the governance client (every decide, budget check and
  usage record, timed around the call in the agents process): p50 / p99 — the added latency;
* the same interactions against an agents service without governance configured, and with it:
  p50 / p99 of the whole interaction, and their difference;
* the decision itself (Cedar evaluation, `decision_time_us` recorded): p50 / p99.

    .venv/bin/python bench/decision_overhead.py [--interactions 200]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentmesh.agents.v1 import agents_pb2 as pb  # noqa: E402
from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc  # noqa: E402
from agentmesh.governance.v1 import governance_pb2 as gov_pb  # noqa: E402
from agentmesh.governance.v1 import governance_pb2_grpc as gov_grpc  # noqa: E402
from agentmesh.tools.v1 import tools_pb2 as tools_pb  # noqa: E402
from agentmesh.tools.v1 import tools_pb2_grpc as tools_grpc  # noqa: E402
from mesh.agents.service import DEFINITION as AGENTS  # noqa: E402
from mesh.governance import client as governance  # noqa: E402
from mesh.governance.service import DEFINITION as GOVERNANCE  # noqa: E402
from mesh.tools.service import DEFINITION as TOOLS  # noqa: E402
from tests.fakes.masterdata import FakeMasterData  # noqa: E402
from tests.fakes.openai_server import ScriptedModelServer  # noqa: E402
from tests.harness import Identity, ServiceHarness  # noqa: E402

TOKEN = "bench-internal-token"


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(pct / 100 * len(ordered)))) - 1]


class Timed:
    """Adds up the time spent in the governance client's functions (the agents service calls
    them in its own thread's event loop; one interaction at a time)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.calls = 0
        for name in ("guard_model_call", "record_model_usage", "check_tool_call"):
            setattr(governance, name, self._wrap(getattr(governance, name), name))

    def _wrap(self, function, name):
        async def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - started
                self.calls += 1
        return timed

    def take(self) -> tuple[float, int]:
        spent, calls, self.spent, self.calls = self.spent, self.calls, 0.0, 0
        return spent, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interactions", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="agentmesh-decision-bench-"))
    me = Identity()
    with ExitStack() as stack:
        masterdata = stack.enter_context(closing(FakeMasterData()))
        masterdata.add_secret("model-key", "sk-bench")
        models = stack.enter_context(closing(ScriptedModelServer()))
        common = {"internal_token": TOKEN, "egress_allow": "127.0.0.1"}
        gov = stack.enter_context(ServiceHarness(GOVERNANCE, root / "governance", **common))
        tools = stack.enter_context(ServiceHarness(
            TOOLS, root / "tools", peers=f"masterdata={masterdata.address}", **common))
        base = f"masterdata={masterdata.address},tools=127.0.0.1:{tools.running.port}"
        plain = stack.enter_context(ServiceHarness(AGENTS, root / "agents-plain", peers=base,
                                                   **common))
        governed = stack.enter_context(ServiceHarness(
            AGENTS, root / "agents-governed",
            peers=f"{base},governance=127.0.0.1:{gov.running.port}", **common))
        # A tenant with policies (so Cedar decides, not scopes alone) and a budget.
        policies = gov.stub(gov_grpc.GovernanceServiceStub)
        policies.CreatePolicy(gov_pb.CreatePolicyRequest(policy=gov_pb.Policy(
            name="allow-all", cedar="permit(principal, action, resource);")),
            metadata=me.metadata())
        policies.CreatePolicy(gov_pb.CreatePolicyRequest(policy=gov_pb.Policy(
            name="no-shell", cedar='forbid(principal, action == Action::"call_tool", '
                                  'resource == Tool::"shell");')), metadata=me.metadata())
        policies.SetBudget(gov_pb.SetBudgetRequest(budget_name="tenant", budget=gov_pb.Budget(
            tokens_per_day=2**31 - 1)), metadata=me.metadata())
        tool = tools.stub(tools_grpc.ToolServiceStub).CreateTool(tools_pb.CreateToolRequest(
            tool=tools_pb.Tool(name=f"echo-{uuid.uuid4().hex[:6]}",
                               type=tools_pb.TOOL_TYPE_BUILTIN,
                               status=tools_pb.TOOL_STATUS_ACTIVE,
                               builtin=tools_pb.BuiltinToolConfig(builtin_name="echo"))),
            metadata=me.metadata())
        timed = Timed()
        total = args.interactions + args.warmup
        results = {}
        for label, harness in (("without governance", plain), ("with governance", governed)):
            stub = harness.stub(pb_grpc.AgentServiceStub)
            script = models.script(f"script-{label[:4]}-{uuid.uuid4().hex[:6]}", [
                {"tool_call": {"name": "$first", "arguments": {"text": "ping"}}},
                {"content": "done: {tool_result}"}] * total)
            model = masterdata.add_model(f"model-{uuid.uuid4().hex[:6]}",
                                         provider="openai_compatible", model_id=script,
                                         endpoint_url=models.base_url, secret_ref="model-key",
                                         input_per_1m=500, output_per_1m=1500)
            agent = stub.CreateAgent(pb.CreateAgentRequest(agent=pb.Agent(
                name=f"agent-{uuid.uuid4().hex[:6]}", model=model.name, tools=[tool.name],
                system_prompt="Use the tool.")), metadata=me.metadata())
            stub.ActivateAgent(pb.ActivateAgentRequest(agent_id=agent.id), metadata=me.metadata())
            whole, inside, calls = [], [], 0
            for i in range(total):
                timed.take()
                started = time.perf_counter()
                answer = stub.InteractWithAgent(pb.InteractWithAgentRequest(
                    agent_id=agent.id, message="echo ping"), metadata=me.metadata(), timeout=60)
                elapsed = (time.perf_counter() - started) * 1000
                spent, n = timed.take()
                assert answer.status == pb.CALL_STATUS_COMPLETED, answer.error
                if i >= args.warmup:
                    whole.append(elapsed)
                    inside.append(spent * 1000)
                    calls = n
            results[label] = (whole, inside, calls)
        decisions = policies.ListDecisions(gov_pb.ListDecisionsRequest(page_size=100),
                                           metadata=me.metadata()).items
    plain_whole = results["without governance"][0]
    whole, inside, calls = results["with governance"]
    print(f"{args.interactions} interactions (1 tool call, 2 model requests each), in-process")
    print(f"  governance client per interaction ({calls} calls: 2 guard_model_call, "
          f"2 record_model_usage, 1 tool decision): p50 {percentile(inside, 50):.2f} ms  "
          f"p99 {percentile(inside, 99):.2f} ms")
    for label, values in (("without governance", plain_whole), ("with governance   ", whole)):
        print(f"  interaction {label}: p50 {percentile(values, 50):.2f} ms  "
              f"p99 {percentile(values, 99):.2f} ms")
    print(f"  difference: p50 {percentile(whole, 50) - percentile(plain_whole, 50):+.2f} ms  "
          f"p99 {percentile(whole, 99) - percentile(plain_whole, 99):+.2f} ms")
    inside_us = [d.decision_time_us for d in decisions]
    print(f"  decision (Cedar) recorded, last {len(inside_us)}: p50 "
          f"{percentile(inside_us, 50):.0f} us  p99 {percentile(inside_us, 99):.0f} us "
          f"-> goal p99 < 1000 us: {'met' if percentile(inside_us, 99) < 1000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
