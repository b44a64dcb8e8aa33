"""What the mesh adds to a streamed agent reply, and how many streams one agents process holds.

Starts the real mesh (`agentmesh up`'s supervisor in-process: every service in one Python
process plus Envoy, on 127.0.0.1) and a minimal OpenAI-compatible model server (asyncio, in this
process's own thread) that streams its answer at once: `--tokens` words, no delay. Then:

1. **Overhead** (`--requests` sequential interactions, after a warm-up): the time to the first
   token and to the whole reply of `POST /api/v1/agents/{id}/interact/stream` through the
   gateway, against the same model request made straight to the model server with the same
   client. The difference is what the mesh adds (gateway, JWT, transcoding, the agent's
   checks and plan — master data, tools —, recording the call, the loop, the SSE relay).
2. **Concurrent streams** (`--streams 100,300`): that many streams held open at once through the
   gateway (opened at `--ramp` per second), the model writing one word every `--interval` s
   for `--hold` s; the services
   process's RSS before and while they are all open (per stream = the difference / streams), and
   whether every stream got every word.

    .venv/bin/python bench/agent_stream.py [--requests 200] [--streams 100,300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx2 as httpx
from lean.procfs import cpu_seconds

from mesh.supervisor import Mesh, free_port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


class ModelServer:
    """`POST /v1/chat/completions` with `stream: true`: the answer as Server-Sent Events, `words`
    words at once, or one every `interval` seconds when the model name says `slow-<n>-<s>`."""

    def __init__(self, words: int) -> None:
        self.words = words
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(
                asyncio.start_server(self.handle, "127.0.0.1", self.port, backlog=2048))
            self.server = server
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        started.wait(10)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests one after another on a kept connection, each answer chunked (HTTP/1.1), as
        a model server does: a client that pools connections (the mesh's, the SDK's) opens
        one once, not one per request."""
        try:
            while True:
                await self.answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = json.loads(await reader.readexactly(length) if length else b"{}")
        model = str(request.get("model", ""))
        count, interval = self.words, 0.0
        if model.startswith("slow-"):
            _, n, seconds = model.split("-")
            count, interval = int(n), float(seconds)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")

        def chunk(delta, finish=None, usage=None) -> bytes:
            body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                    "created": 0, "model": model,
                    "choices": [] if delta is None else
                    [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage:
                body["usage"] = usage
            return framed(b"data: " + json.dumps(body).encode() + b"\n\n")

        def framed(data: bytes) -> bytes:
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        writer.write(chunk({"role": "assistant", "content": ""}))
        for i in range(count):
            writer.write(chunk({"content": f"w{i} "}))
            if interval:
                await writer.drain()
                await asyncio.sleep(interval)
        writer.write(chunk({}, "stop"))
        writer.write(chunk(None, usage={"prompt_tokens": 10, "completion_tokens": count,
                                        "total_tokens": 10 + count}))
        writer.write(framed(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


async def timed_stream(http: httpx.AsyncClient, method: str, url: str, body: dict,
                       first_of: str) -> tuple[float, float, int]:
    """(ms to the first token, ms to the end, tokens) of one streamed request."""
    started = time.perf_counter()
    first, tokens = None, 0
    async with http.stream(method, url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if first_of == "agent" and event.get("type") == "token":
                tokens += 1
            elif first_of == "model" and any(c.get("delta", {}).get("content")
                                             for c in event.get("choices", [])):
                tokens += 1
            else:
                continue
            if first is None:
                first = (time.perf_counter() - started) * 1000
    return first or float("nan"), (time.perf_counter() - started) * 1000, tokens


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="agentmesh-bench-stream-"))
    os.environ["AGENTMESH_EGRESS_ALLOW"] = "127.0.0.1"
    model_server = ModelServer(args.tokens)
    mesh = Mesh(data_dir=data_dir, port=free_port(), quiet=True,
                rate_limit_per_minute=10_000_000)
    failed = True
    try:
        print(f"starting the mesh ({data_dir}) ...", flush=True)
        await mesh.start()
        base = f"http://127.0.0.1:{mesh.port}"
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as http:
            reply = await http.post("/api/v1/auth/register", json={
                "tenant_name": "bench", "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
                "password": "correct-horse-1"})
            reply.raise_for_status()
            http.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"

            async def agent(model_id: str) -> str:
                name = f"m-{uuid.uuid4().hex[:6]}"
                (await http.post("/api/v1/master-data/models", json={
                    "name": name, "provider": "openai_compatible", "model_id": model_id,
                    "endpoint_url": model_server.base_url})).raise_for_status()
                created = (await http.post("/api/v1/agents", json={
                    "name": f"a-{uuid.uuid4().hex[:6]}", "model": name,
                    "system_prompt": "Answer."})).json()
                (await http.post(f"/api/v1/agents/{created['id']}/activate",
                                 json={})).raise_for_status()
                return created["id"]

            fast = await agent("fast")
            direct_url = f"{model_server.base_url}/chat/completions"
            direct_body = {"model": "fast", "stream": True,
                           "stream_options": {"include_usage": True},
                           "messages": [{"role": "system", "content": "Answer."},
                                        {"role": "user", "content": "hi"}]}
            agent_url = f"/api/v1/agents/{fast}/interact/stream"
            for _ in range(args.warmup):
                await timed_stream(http, "POST", direct_url, direct_body, "model")
                await timed_stream(http, "POST", agent_url, {"message": "hi"}, "agent")
            # The mesh's processes (every service, Envoy): their CPU per interaction is steadier
            # than a latency on a shared machine (the direct requests never reach them).
            pids = {c.name: c.process.pid for c in mesh.children if c.process is not None}

            def cpu() -> dict[str, float]:
                return {name: cpu_seconds(pid) for name, pid in pids.items()}

            direct, mesh_runs = [], []
            before = cpu()
            for _ in range(args.requests):   # alternating, so neither side always goes first
                direct.append(await timed_stream(http, "POST", direct_url, direct_body, "model"))
                mesh_runs.append(await timed_stream(http, "POST", agent_url, {"message": "hi"},
                                                    "agent"))
            interactions_cpu = {n: v - before[n] for n, v in cpu().items()}
            floor = []   # a plain read of the same agent through the gateway
            before = cpu()
            for _ in range(args.requests):
                began = time.perf_counter()
                (await http.get(f"/api/v1/agents/{fast}")).raise_for_status()
                floor.append((time.perf_counter() - began) * 1000)
            floor_cpu = sum(cpu().values()) - sum(before.values())
            bad = [r for r in mesh_runs if r[2] != args.tokens]
            print(f"\n{args.requests} sequential streamed interactions, {args.tokens} words each, "
                  f"{os.cpu_count()} cores shared with Envoy and every service\n")
            print(f"{'':<34}{'first token p50':>16}{'p99':>9}{'whole reply p50':>17}{'p99':>9}")
            rows = {"model server, direct": direct, "agent through the mesh": mesh_runs}
            for label, runs in rows.items():
                firsts, totals = [r[0] for r in runs], [r[1] for r in runs]
                print(f"{label:<34}{percentile(firsts, 50):>14.2f}ms{percentile(firsts, 99):>7.2f}ms"
                      f"{percentile(totals, 50):>15.2f}ms{percentile(totals, 99):>7.2f}ms")
            print(f"{'GET the agent (the gateway floor)':<34}{percentile(floor, 50):>14.2f}ms"
                  f"{percentile(floor, 99):>7.2f}ms")
            added_first = [m[0] - d[0] for m, d in zip(mesh_runs, direct, strict=True)]
            added_total = [m[1] - d[1] for m, d in zip(mesh_runs, direct, strict=True)]
            print(f"{'the mesh adds (pairwise)':<34}{percentile(added_first, 50):>14.2f}ms"
                  f"{percentile(added_first, 99):>7.2f}ms{percentile(added_total, 50):>15.2f}ms"
                  f"{percentile(added_total, 99):>7.2f}ms")
            per = {n: v * 1000 / args.requests for n, v in interactions_cpu.items()}
            print(f"\nCPU of the mesh's processes per interaction: {sum(per.values()):.2f} ms ("
                  + ", ".join(f"{n} {v:.2f}" for n, v in sorted(per.items())) + "); per GET "
                  f"{floor_cpu * 1000 / args.requests:.2f} ms")

            if not args.streams:
                failed = bool(bad)
                return 1 if failed else 0
            services = next(c.process.pid for c in mesh.children
                            if c.process is not None and "serve" in " ".join(c.argv))
            print(f"\nconcurrent streams, one word every {args.interval:g} s for {args.hold:g} s "
                  "(the services process: every service, one Python process)")
            print(f"{'streams':>8}{'RSS before':>12}{'RSS open':>10}{'per stream':>12}"
                  f"{'complete':>10}{'first token p99':>17}")
            for count in args.streams:
                words = max(1, int(args.hold / args.interval))
                slow = await agent(f"slow-{words}-{args.interval:g}")
                before = rss_mib(services)
                peak = [before]
                done = asyncio.Event()

                async def sample() -> None:
                    while not done.is_set():
                        peak[0] = max(peak[0], rss_mib(services))
                        await asyncio.sleep(0.2)

                sampler = asyncio.create_task(sample())

                async def one(index: int):
                    await asyncio.sleep(index / args.ramp)   # opened at --ramp per second
                    return await timed_stream(http, "POST",
                                              f"/api/v1/agents/{slow}/interact/stream",
                                              {"message": "hi"}, "agent")

                results = await asyncio.gather(*(one(i) for i in range(count)),
                                               return_exceptions=True)
                done.set()
                await sampler
                complete = sum(1 for r in results if not isinstance(r, BaseException)
                               and r[2] == words)
                firsts = [r[0] for r in results if not isinstance(r, BaseException)]
                print(f"{count:>8}{before:>10.0f}MB{peak[0]:>8.0f}MB"
                      f"{(peak[0] - before) * 1024 / count:>10.0f}KB{complete:>7}/{count}"
                      f"{percentile(firsts, 99) if firsts else float('nan'):>15.0f}ms",
                      flush=True)
                if complete != count:
                    bad.append(count)
                    problems: dict[str, int] = {}
                    for r in results:
                        key = repr(r)[:160] if isinstance(r, BaseException) else \
                            f"{r[2]} of {words} words"
                        problems[key] = problems.get(key, 0) + 1
                    for problem, n in sorted(problems.items(), key=lambda p: -p[1])[:5]:
                        print(f"    {n} x {problem}")
        failed = bool(bad)
        return 1 if failed else 0
    finally:
        await mesh.stop()
        model_server.close()
        if failed:
            print(f"\nmesh state and logs kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--streams", type=lambda v: [n for x in v.split(",") if (n := int(x))],
                        default=[100, 300], help="0 skips the concurrent streams")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--ramp", type=float, default=100.0,
                        help="streams opened per second while they are being opened")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
