"""The two systems under test: the real mesh as a user starts it (`agentmesh up`, every service
and Envoy) and the reference (bench/reference_app.py: FastAPI + uvicorn, one worker)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lean.procfs import children

BENCH_DIR = Path(__file__).resolve().parents[1]
REF_ISSUER, REF_AUDIENCE = "agentmesh-reference", "agentmesh-reference-api"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    role: str  # "supervisor", "services", "agents", ..., "envoy", "reference"
    pid: int


class Mesh:
    """`agentmesh up` as a subprocess in its own process group."""

    def __init__(self, data_dir: Path, isolation: str) -> None:
        self.data_dir = data_dir
        self.isolation = isolation
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        agentmesh = Path(sys.executable).with_name("agentmesh")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
        # A token that outlives a long run; verifying it costs Envoy the same either way.
        env["AGENTMESH_ACCESS_TOKEN_TTL_SECONDS"] = str(24 * 3600)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "up.log", "ab")
        self.process = subprocess.Popen(
            [str(agentmesh), "up", "--port", str(self.port), "--data-dir", str(self.data_dir),
             # The gateway's local rate limit (default 6,000/min) must not be what is measured.
             "--rate-limit", str(1_000_000_000), "--isolation", self.isolation],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"agentmesh up exited with {self.process.returncode}; "
                                   f"see {self.data_dir / 'up.log'} and {self.data_dir / 'logs'}")
            try:
                health = httpx2.get(self.base + "/health", timeout=2)
                jwks = httpx2.get(self.base + "/api/v1/auth/jwks", timeout=2)
                if health.status_code == 200 and jwks.status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the mesh was not ready in 180s; see {self.data_dir / 'logs'}")

    def processes(self) -> list[Proc]:
        """The supervisor, its service process(es) and Envoy, looked up afresh (the supervisor
        restarts children that die, with new pids)."""
        assert self.process
        found = [Proc("supervisor", self.process.pid)]
        pending = children(self.process.pid)
        while pending:
            pid = pending.pop()
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if Path(argv[0]).name == "envoy":
                role = "envoy"
            elif "serve" in argv:
                names = [a for a in argv[argv.index("serve") + 1:] if a and not a.startswith("-")]
                role = names[0] if len(names) == 1 else "services"
            else:
                role = Path(argv[0]).name
            found.append(Proc(role, pid))
            pending.extend(children(pid))
        return found

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # the supervisor drains its children
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Reference:
    """bench/reference_app.py under uvicorn as FastAPI installs it, `workers` processes (one
    by default; a user on two cores would run two)."""

    def __init__(self, work: Path, workers: int = 1) -> None:
        self.work = work
        self.workers = workers
        self.database = work / "reference.db"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.public_pem = work / "reference-public.pem"
        self.public_pem.write_bytes(self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        os.environ["REFERENCE_DATABASE"] = str(self.database)  # for the import below
        sys.path.insert(0, str(BENCH_DIR))
        import reference_app  # noqa: PLC0415 - configured by the environment just set

        import sqlalchemy as sa  # noqa: PLC0415

        self.app = reference_app
        # The app's own tables, created and loaded here through a plain (sync) engine.
        self.engine = sa.create_engine(f"sqlite:///{self.database}")
        reference_app.SQLModel.metadata.create_all(self.engine)
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")

    def token(self, mesh_claims: dict) -> str:
        """A token with the mesh's claims (same tenant, user and scopes), signed by our key."""
        now = datetime.now(UTC)
        claims = {**mesh_claims, "iss": REF_ISSUER, "aud": REF_AUDIENCE,
                  "iat": int(now.timestamp()), "exp": int((now + timedelta(days=1)).timestamp()),
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self.private_key, algorithm="ES256")

    def insert(self, rows: list[dict]) -> None:
        from sqlmodel import Session, insert  # noqa: PLC0415

        with Session(self.engine) as session:
            for start in range(0, len(rows), 5000):
                session.execute(insert(self.app.Agent), rows[start:start + 5000])
            session.commit()

    def start(self, token: str) -> None:
        env = {**os.environ, "REFERENCE_DATABASE": str(self.database),
               "REFERENCE_PUBLIC_KEY": str(self.public_pem), "REFERENCE_ISSUER": REF_ISSUER,
               "REFERENCE_AUDIENCE": REF_AUDIENCE}
        log = open(self.work / "reference.log", "ab")
        # No access log: Envoy in the mesh writes none either, and a line per request would
        # measure logging. Everything else is uvicorn's default (uvloop, httptools).
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "reference_app:app", "--app-dir", str(BENCH_DIR),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
             "--no-access-log"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited; see {self.work / 'reference.log'}")
            try:
                reply = httpx2.get(self.base + "/api/v1/agents",
                                  headers={"Authorization": f"Bearer {token}"}, timeout=2)
                if reply.status_code == 200:
                    return
                raise RuntimeError(f"reference answered {reply.status_code}: {reply.text}")
            except httpx2.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the reference was not ready in 60s")

    def processes(self) -> list[Proc]:
        assert self.process
        # With several workers uvicorn's first process supervises them: theirs is the work.
        return [Proc("reference", self.process.pid),
                *(Proc(f"reference worker {n}", pid)
                  for n, pid in enumerate(children(self.process.pid), 1)
                  if self.workers > 1)]

    def stop(self) -> None:
        self.engine.dispose()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
