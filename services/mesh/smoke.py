"""The smoke flow: what `helm test` runs inside a release (templates/tests.yaml), and what the
rendered-manifests test runs through its gateway (tests/e2e/test_helm_rendered.py).

    python -m mesh.smoke --gateway http://<fullname>-gateway \\
        --model-listen 0.0.0.0:8099 --model-url http://<fullname>-smoke-model:8099/v1

Through the gateway's public REST API, as a user would: register a new tenant; store an API key
and a model on a scripted OpenAI-compatible server that this process serves itself (it answers
"You said: <the user's message>"); create and activate an agent on it; interact with it; run a
workflow whose transform step feeds an agent step; wait for the execution to complete. Prints
one JSON line per step and exits 0 when every step did what it should, 1 otherwise (the line
that failed says why).

The scripted model listens on --model-listen; --model-url is how the platform's agents service
reaches it (in a cluster: the test Pod's Service, which the chart adds to the egress allow-list;
locally: 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2

FINAL = {"EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_CANCELLED"}


class SmokeFailed(Exception):
    pass


class _ModelHandler(BaseHTTPRequestHandler):
    """OpenAI-compatible chat completions: the reply is "You said: <last user message>"."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            status, body = 404, {"error": {"message": f"no route {self.path}"}}
        else:
            user = next((m.get("content") or "" for m in reversed(request.get("messages", []))
                         if m.get("role") == "user"), "")
            status, body = 200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": request.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"You said: {user}"}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def serve_model(listen: str) -> ThreadingHTTPServer:
    """Starts the scripted model on host:port (port 0: any) in a daemon thread."""
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), _ModelHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _say(step: str, **fields) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


def _ok(reply: httpx2.Response, step: str) -> dict:
    if reply.status_code != 200:
        raise SmokeFailed(f"{step}: {reply.request.method} {reply.request.url.path} answered "
                          f"{reply.status_code}: {reply.text[:500]}")
    return reply.json()


def _retrying(client: httpx2.Client, method: str, path: str, **kwargs) -> httpx2.Response:
    """Reads and idempotent calls are retried briefly over a connection error or a 502/503 (a
    replica that just went away); a 4xx or a success is the answer."""
    for attempt in range(10):
        try:
            reply = client.request(method, path, **kwargs)
        except httpx2.TransportError:
            if attempt == 9:
                raise
            time.sleep(0.5)
            continue
        if reply.status_code not in (502, 503, 504) or attempt == 9:
            return reply
        time.sleep(0.5)
    raise AssertionError("unreachable")


def run(gateway: str, model_url: str, timeout: float = 120.0) -> dict:
    """The smoke flow against `gateway`; returns what it made (ids), raises SmokeFailed."""
    name = f"smoke-{uuid.uuid4().hex[:10]}"
    with httpx2.Client(base_url=gateway.rstrip("/"), timeout=60) as anonymous:
        body = _ok(_retrying(anonymous, "POST", "/api/v1/auth/register", json={
            "tenant_name": name, "email": f"{name}@example.com",
            "password": "smoke-correct-horse-1"}), "register")
    _say("register", tenant_id=body["tenant"]["id"])
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    with httpx2.Client(base_url=gateway.rstrip("/"), timeout=60, headers=headers) as client:
        _ok(_retrying(client, "POST", "/api/v1/master-data/secrets", json={
            "name": f"{name}-key", "value": "sk-smoke", "secret_type": "SECRET_TYPE_API_KEY"},
            headers={"Idempotency-Key": f"{name}-secret"}), "create secret")
        model = _ok(_retrying(client, "POST", "/api/v1/master-data/models", json={
            "name": f"{name}-model", "provider": "openai_compatible", "model_id": "smoke",
            "endpoint_url": model_url, "secret_ref": f"{name}-key"},
            headers={"Idempotency-Key": f"{name}-model"}), "create model")
        agent = _ok(_retrying(client, "POST", "/api/v1/agents", json={
            "name": f"{name}-agent", "model": model["name"], "system_prompt": "Echo."},
            headers={"Idempotency-Key": f"{name}-agent"}), "create agent")
        _ok(_retrying(client, "POST", f"/api/v1/agents/{agent['id']}/activate", json={}),
            "activate agent")
        _say("create", agent_id=agent["id"], model=model["name"])
        answer = _ok(client.post(f"/api/v1/agents/{agent['id']}/interact",
                                 json={"message": "ping"}), "interact")
        if answer.get("status") != "CALL_STATUS_COMPLETED" or answer.get("reply") != \
                "You said: ping":
            raise SmokeFailed(f"interact: unexpected answer {answer}")
        _say("interact", call_id=answer["call_id"], reply=answer["reply"])
        workflow = _ok(_retrying(client, "POST", "/api/v1/workflows", json={
            "name": f"{name}-flow",
            "steps": [
                {"id": "prep", "type": "STEP_TYPE_TRANSFORM",
                 "transform": {"expression": "{n: inputs.n}"}},
                {"id": "ask", "type": "STEP_TYPE_AGENT", "depends_on": ["prep"],
                 "inputs": {"n": "steps.prep.output.n"},
                 "agent": {"agent_id": agent["id"], "prompt": "The number is {{n}}"}}],
            "outputs": {"n": "steps.prep.output.n", "answer": "steps.ask.output.reply"}},
            headers={"Idempotency-Key": f"{name}-flow"}), "create workflow")
        _ok(_retrying(client, "POST", f"/api/v1/workflows/{workflow['id']}/activate", json={}),
            "activate workflow")
        execution = _ok(_retrying(client, "POST", f"/api/v1/workflows/{workflow['id']}/execute",
                                  json={"inputs": {"n": 42},
                                        "idempotency_key": f"{name}-run"}), "execute")
        deadline = time.monotonic() + timeout
        while True:
            state = _ok(_retrying(client, "GET",
                                  f"/api/v1/workflows/executions/{execution['id']}"), "watch")
            if state["status"] in FINAL:
                break
            if time.monotonic() > deadline:
                raise SmokeFailed(f"workflow: not finished after {timeout:g}s: {state['status']}")
            time.sleep(0.3)
        if state["status"] != "EXECUTION_STATUS_COMPLETED" or state.get("outputs") != {
                "n": 42, "answer": "You said: The number is 42"}:
            raise SmokeFailed(f"workflow: ended {state['status']} with {state.get('outputs')}: "
                              f"{state.get('error')}")
        _say("workflow", execution_id=execution["id"], outputs=state["outputs"])
    return {"tenant_id": body["tenant"]["id"], "agent_id": agent["id"],
            "execution_id": execution["id"], "token": body["access_token"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", required=True, help="the gateway's URL")
    parser.add_argument("--model-listen", default="0.0.0.0:8099",
                        help="where this process serves the scripted model (host:port)")
    parser.add_argument("--model-url", required=True,
                        help="the scripted model's URL as the platform reaches it (.../v1)")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    server = serve_model(args.model_listen)
    try:
        run(args.gateway, args.model_url, args.timeout)
    except (SmokeFailed, httpx2.HTTPError) as error:
        _say("failed", error=str(error))
        return 1
    finally:
        server.shutdown()
    _say("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
