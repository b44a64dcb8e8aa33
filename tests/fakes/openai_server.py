"""A small OpenAI-compatible chat-completions server for tests: a real HTTP server on a port
that answers deterministically from a script.

    server = ScriptedModelServer()
    server.script("m-tool", [
        {"tool_call": {"name": "$first", "arguments": {"text": "hi"}}},   # call the first tool offered
        {"content": "The tool said {tool_result}"},                       # then answer
    ])
    # a model record with endpoint_url=server.base_url and model_id="m-tool" plays this script

A script is chosen by the request's `model`; each request plays the next step and the last step
repeats. Steps: `tool_call` (name and arguments; `$first` names the first function offered),
`raw_tool_call` (arguments sent as given, e.g. malformed JSON), `content` (a final answer;
`{tool_result}` and `{user}` are replaced by the last tool result and user message),
`status` (an HTTP error such as 429, with `Retry-After: 0`), `sleep` (seconds before answering),
`length` (finish_reason "length"). Usage is counted as characters / 4, deterministically.

A request with `"stream": true` is answered with Server-Sent Events as the official API does
(chunked, on a connection kept for the next request):
the content word by word (`token_delay` seconds between words, default 0; `burst`: the whole
answer in one write), a tool call in two pieces, the finish reason, usage when `stream_options.include_usage`, then `[DONE]`. A client
that closes the connection mid-stream is noted in `disconnects` (model, monotonic time, words
sent), which the cancel tests read.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: dict, headers=()) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        owner: ScriptedModelServer = self.server.owner
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        step = owner.next_step(request, {k.lower(): v for k, v in self.headers.items()},
                               self.client_address)
        if step is None:
            self._send(404, {"error": {"message": f"no script for model {request.get('model')}",
                                       "type": "invalid_request_error"}})
            return
        if "sleep" in step:
            time.sleep(step["sleep"])
        if "status" in step:
            self._send(step["status"], {"error": {"message": step.get("message", "scripted"),
                                                  "type": "rate_limit_error"}},
                       headers=[("Retry-After", "0"), ("retry-after-ms", "10")])
            return
        messages = request.get("messages", [])
        tool_result = next((m.get("content", "") for m in reversed(messages)
                            if m.get("role") == "tool"), "")
        user = next((m.get("content", "") for m in reversed(messages)
                     if m.get("role") == "user"), "")
        message: dict = {"role": "assistant", "content": None}
        finish = "stop"
        completion_text = ""
        if "tool_call" in step or "raw_tool_call" in step:
            spec = step.get("tool_call") or step["raw_tool_call"]
            name = spec["name"]
            if name == "$first":
                name = request["tools"][0]["function"]["name"]
            arguments = spec.get("arguments", {})
            if "tool_call" in step:
                arguments = json.dumps(arguments)
            message["tool_calls"] = [{"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                                      "function": {"name": name, "arguments": arguments}}]
            finish = "tool_calls"
            completion_text = name + arguments
        else:
            content = step.get("content", "").replace("{tool_result}", tool_result) \
                .replace("{user}", user)
            message["content"] = content
            completion_text = content
            if step.get("length"):
                finish = "length"
        prompt = _tokens(json.dumps(messages))
        completion = _tokens(completion_text)
        if request.get("stream"):
            self._stream(request, step, message, finish, prompt, completion)
            return
        self._send(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": int(time.time()), "model": request.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}})


    def _stream(self, request: dict, step: dict, message: dict, finish: str, prompt: int,
                completion: int) -> None:
        owner: ScriptedModelServer = self.server.owner
        answer_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        # Chunked on a kept connection, as the official API streams.
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta: dict | None, finish_reason=None, usage=None) -> bytes:
            body = {"id": answer_id, "object": "chat.completion.chunk", "created": created,
                    "model": request.get("model"),
                    "choices": [] if delta is None else [
                        {"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            if usage is not None:
                body["usage"] = usage
            return b"data: " + json.dumps(body).encode() + b"\n\n"

        pieces = [chunk({"role": "assistant", "content": ""})]
        if message.get("tool_calls"):
            call = message["tool_calls"][0]
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            pieces.append(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"],
                                                              "arguments": arguments[:half]}}]}))
            pieces.append(chunk({"tool_calls": [{"index": 0, "function": {
                "arguments": arguments[half:]}}]}))
        else:
            words = (message.get("content") or "").split(" ")
            pieces += [chunk({"content": word if i == 0 else " " + word})
                       for i, word in enumerate(words)]
        pieces.append(chunk({}, finish))
        if (request.get("stream_options") or {}).get("include_usage"):
            pieces.append(chunk(None, usage={"prompt_tokens": prompt,
                                             "completion_tokens": completion,
                                             "total_tokens": prompt + completion}))
        pieces.append(b"data: [DONE]\n\n")
        pieces = [f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for piece in pieces]
        pieces[-1] += b"0\r\n\r\n"  # the body's end
        if step.get("burst"):  # the whole answer in one write, as a fast server's may come
            pieces = [b"".join(pieces)]
        delay = float(step.get("token_delay", 0))
        for index, piece in enumerate(pieces):
            if delay and 1 < index < len(pieces) - 2:
                time.sleep(delay)
            try:
                self.wfile.write(piece)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                with owner.lock:
                    owner.disconnects.append((request.get("model"), time.monotonic(), index))
                return


class ScriptedModelServer:
    def __init__(self) -> None:
        self.scripts: dict[str, list[dict]] = {}
        self.cursors: dict[str, int] = {}
        self.requests: list[dict] = []
        self.disconnects: list[tuple[str, float, int]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.owner = self
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def script(self, model: str, steps: list[dict]) -> str:
        with self.lock:
            self.scripts[model] = steps
            self.cursors[model] = 0
        return model

    def next_step(self, request: dict, headers: dict, peer=None) -> dict | None:
        model = request.get("model", "")
        with self.lock:
            # `peer`: the client's (address, port), one per connection.
            self.requests.append({"model": model, "body": request, "headers": headers,
                                  "peer": peer})
            steps = self.scripts.get(model)
            if not steps:
                return None
            index = self.cursors[model]
            self.cursors[model] = index + 1
            return steps[min(index, len(steps) - 1)]

    def requests_for(self, model: str) -> list[dict]:
        return [r for r in self.requests if r["model"] == model]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
