"""Small real servers the workflow tests call: an HTTP server that counts effects by
Idempotency-Key (and can be slow or fail), and a gRPC server that speaks ToolService and
AgentService the way the tools and agents services will."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import grpc
from google.protobuf import json_format

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc


class EffectServer:
    """`POST /effect?name=x[&sleep=s]`: one effect per Idempotency-Key (deliveries counted
    apart); `/flaky?fail=n&name=x`: 500 for the first n deliveries of a name; `/slow?seconds=s`;
    `/status?code=c`."""

    def __init__(self) -> None:
        self.effects: Counter = Counter()        # key -> effects applied (must stay 1)
        self.deliveries: Counter = Counter()     # key -> requests received
        self.by_name: Counter = Counter()        # name -> requests received
        self.lock = threading.Lock()
        self.fail_until: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.do_POST()

            def do_POST(self):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                key = self.headers.get("idempotency-key", "")
                name = query.get("name", "")
                with server.lock:
                    server.deliveries[key] += 1
                    server.by_name[name] += 1
                    seen = server.by_name[name]
                if "sleep" in query:
                    time.sleep(float(query["sleep"]))
                if url.path == "/effect":
                    with server.lock:
                        if server.effects[key] == 0:
                            server.effects[key] += 1
                    return self._answer(200, {"key": key, "body": body, "ok": True})
                if url.path == "/flaky":
                    if seen <= int(query.get("fail", "0")) or server.fail_until.get(name, 0) > 0:
                        return self._answer(500, {"error": "flaky"})
                    return self._answer(200, {"attempt": seen, "body": body})
                if url.path == "/slow":
                    time.sleep(float(query.get("seconds", "30")))
                    return self._answer(200, {"slept": True})
                if url.path == "/status":
                    return self._answer(int(query.get("code", "200")), {"code": query.get("code")})
                return self._answer(404, {"error": "no such path"})

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that went away (a killed process) is part of these tests

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeTools(tools_pb2_grpc.ToolServiceServicer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict]] = []   # (tool, idempotency key, arguments)
        self.tenants: list[str] = []
        self.identities: dict[str, dict[str, str]] = {}  # idempotency key -> who called

    def GetTool(self, request, context):
        if request.tool_id == "missing-tool":
            context.abort(grpc.StatusCode.NOT_FOUND, f"tool {request.tool_id!r} not found")
        return tools_pb2.Tool(id="00000000-0000-0000-0000-000000000001", name=request.tool_id)

    def ExecuteTool(self, request, context):
        metadata = dict(context.invocation_metadata())
        arguments = json_format.MessageToDict(request.arguments)
        self.calls.append((request.tool_id, metadata.get("idempotency-key", ""), arguments))
        self.tenants.append(metadata.get("x-agentmesh-tenant-id", ""))
        self.identities[metadata.get("idempotency-key", "")] = {
            k: metadata.get(f"x-agentmesh-{k}", "") for k in ("user-id", "scopes", "api-key-id")}
        if request.tool_id == "busy" and sum(c[0] == "busy" for c in self.calls) <= 2:
            # As a tools service answers while an earlier call with the key still runs.
            from mesh.runtime import errors, idempotency

            context.abort_with_status(errors.to_status(errors.Aborted(
                "still running", reason=idempotency.IN_PROGRESS), "tools.agentmesh.dev"))
        if request.tool_id == "broken":
            return tools_pb2.ToolExecution(status=tools_pb2.TOOL_EXECUTION_STATUS_FAILED,
                                           error="the tool broke")
        out = tools_pb2.ToolExecution(tool_id=request.tool_id,
                                      status=tools_pb2.TOOL_EXECUTION_STATUS_COMPLETED)
        out.output.update({"echo": arguments, "items": [1, 2, 3]})
        return out


class FakeAgents(agents_pb2_grpc.AgentServiceServicer):
    def GetAgent(self, request, context):
        if request.agent_id == "missing-agent":
            context.abort(grpc.StatusCode.NOT_FOUND, "agent not found")
        return agents_pb2.Agent(id="00000000-0000-0000-0000-000000000002", name=request.agent_id)

    def InteractWithAgent(self, request, context):
        return agents_pb2.InteractWithAgentResponse(call_id="call-1",
                                                    reply=f"agent says: {request.message}")


class FakePeers:
    def __init__(self) -> None:
        self.tools = FakeTools()
        self.agents = FakeAgents()
        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        tools_pb2_grpc.add_ToolServiceServicer_to_server(self.tools, self.server)
        agents_pb2_grpc.add_AgentServiceServicer_to_server(self.agents, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.address = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.stop(0)
