"""ListRevocations is a long poll (mesh/runtime/watch.py), on SQLite and PostgreSQL: a call
that knows the current version is held until a revocation commits here (answered at once) or
is written by another process (within about `revocation_poll_seconds`; on PostgreSQL, when
identity is a named replica: the only one checks every `ALONE_CHECK_SECONDS`), ends at once
when identity drains, and the runtime's RevocationGuard makes one call per hold while nothing
changes and hears of a revocation at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from agentmesh.identity.v1 import identity_pb2 as pb
from agentmesh.identity.v1 import identity_pb2_grpc as pb_grpc
from mesh.identity.models import TokenRevocationRow
from mesh.identity.service import DEFINITION
from mesh.runtime.metrics import LATENCY, REQUESTS
from mesh.runtime.peers import Peers
from mesh.runtime.revocation import RevocationGuard
from mesh.runtime.tables import utcnow
from tests.harness import Identity, ServiceHarness

PASSWORD = "correct horse battery"
CHECK_SECONDS = 0.5  # revocation_poll_seconds here: identity's check for other processes' writes


@contextlib.contextmanager
def _identity(request, data_dir, **settings):
    """Identity in-process on the fixture's database, with an engine of its own that writes
    identity's tables as another process would (no marks, no shared pool). On PostgreSQL the
    harnesses of this module share the schema `identity` of the test session's database
    (dropped with it), so none drops it under another."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""
    harness = ServiceHarness(DEFINITION, data_dir, database_url=url, **settings)
    if url:
        harness.other = sa.create_engine(url, connect_args={"options": "-csearch_path=identity"})
    else:
        harness.other = sa.create_engine(f"sqlite:///{harness.running.runtime.db.sqlite_path}")
    try:
        yield harness
    finally:
        harness.other.dispose()
        harness.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def identity(request, tmp_path_factory):
    """A replica of identity (named: other replicas may write beside it)."""
    with _identity(request, tmp_path_factory.mktemp("identity"), replica_id="identity-0",
                   revocation_poll_seconds=CHECK_SECONDS) as harness:
        yield harness


@pytest.fixture(params=["sqlite", "postgresql"])
def unchecked_identity(request, tmp_path):
    """Identity that checks for other processes' writes only every 30 s: a held call that
    answers sooner was answered by a commit of its own."""
    with _identity(request, tmp_path, revocation_poll_seconds=30) as harness:
        yield harness


def _stub(identity) -> pb_grpc.IdentityServiceStub:
    return identity.stub(pb_grpc.IdentityServiceStub)


def _signed_in(identity) -> tuple[pb.User, pb.TokenResponse]:
    stub = _stub(identity)
    user = stub.Register(pb.RegisterRequest(
        tenant_name=f"tenant-{uuid.uuid4().hex[:8]}", email=f"{uuid.uuid4().hex[:8]}@example.com",
        password=PASSWORD, full_name="Ada")).user
    tokens = stub.Login(pb.LoginRequest(email=user.email, password=PASSWORD),
                        metadata=(("x-forwarded-for", f"10.9.{uuid.uuid4().int % 250}.1"),))
    return user, tokens


def _sid(tokens: pb.TokenResponse) -> str:
    return jwt.decode(tokens.access_token, options={"verify_signature": False})["sid"]


def _held(identity, version: str, wait: int = 20):
    return _stub(identity).ListRevocations.future(
        pb.ListRevocationsRequest(known_version=version, wait_seconds=wait), timeout=wait + 10)


def test_a_held_call_answers_at_once_when_a_revocation_commits_here(unchecked_identity):
    identity = unchecked_identity
    user, tokens = _signed_in(identity)
    version = _stub(identity).ListRevocations(pb.ListRevocationsRequest()).version
    assert version
    held = _held(identity, version)
    time.sleep(1.0)
    assert not held.done()  # nothing changed: held (not answered with the same list)
    began = time.monotonic()
    _stub(identity).Logout(pb.LogoutRequest(refresh_token=tokens.refresh_token),
                           metadata=Identity(tenant_id=user.tenant_id, user_id=user.id,
                                             scopes=" ".join(user.scopes)).metadata())
    reply = held.result(10)
    elapsed = time.monotonic() - began
    assert _sid(tokens) in reply.revoked_sessions and reply.version != version
    assert elapsed < 1.0, elapsed  # woken by the commit (no check comes within 30 s)


def test_a_revocation_written_by_another_process_is_seen_within_the_check_interval(identity):
    version = _stub(identity).ListRevocations(pb.ListRevocationsRequest()).version
    held = _held(identity, version)
    time.sleep(2.5)  # SQLite: past the window in which a file just written is read again
    assert not held.done()
    subject = f"session-{uuid.uuid4().hex}"
    began = time.monotonic()
    with Session(identity.other) as session:  # another process: no mark, no shared engine
        now = utcnow()
        session.add(TokenRevocationRow(kind="session", subject=subject, not_before=now,
                                       expires_at=now + timedelta(hours=1), created_at=now))
        session.commit()
    reply = held.result(10)
    elapsed = time.monotonic() - began
    assert subject in reply.revoked_sessions
    assert elapsed < CHECK_SECONDS * 2 + 0.5, elapsed


@pytest.mark.parametrize("unchecked_identity", ["postgresql"], indirect=True)
def test_the_only_replica_on_postgresql_reads_again_only_every_alone_check(unchecked_identity,
                                                                            monkeypatch):
    """No replica id on PostgreSQL: no other replica writes, so a held call costs no read a
    check interval (the commits here answer at once, above); a write from outside the mesh is
    read within ALONE_CHECK_SECONDS."""
    from mesh.runtime import watch

    identity = unchecked_identity
    monkeypatch.setattr(watch, "ALONE_CHECK_SECONDS", 2.0)
    identity.settings.revocation_poll_seconds = 0.1
    watched = identity.running.runtime.state.revocations
    version = _stub(identity).ListRevocations(pb.ListRevocationsRequest()).version
    held = _held(identity, version)
    time.sleep(0.5)
    reads = watched.reads
    time.sleep(1.0)  # ten intervals of revocation_poll_seconds
    assert watched.reads == reads and not held.done()
    subject = f"session-{uuid.uuid4().hex}"
    with Session(identity.other) as session:  # from outside the mesh: no mark
        now = utcnow()
        session.add(TokenRevocationRow(kind="session", subject=subject, not_before=now,
                                       expires_at=now + timedelta(hours=1), created_at=now))
        session.commit()
    assert subject in held.result(10).revoked_sessions  # at the next check, 2 s at most


def test_a_held_call_answers_the_same_list_when_its_wait_ends(identity):
    latency = LATENCY.labels("identity", "ListRevocations")
    first = _stub(identity).ListRevocations(pb.ListRevocationsRequest())
    timed = latency._sum.get()
    began = time.monotonic()
    again = _held(identity, first.version, wait=1).result(10)
    assert 0.9 < time.monotonic() - began < 3
    assert again.version == first.version
    assert sorted(again.revoked_sessions) == sorted(first.revoked_sessions)
    # The second it was held is not serving time: the latency metric has the work only.
    assert latency._sum.get() - timed < 0.5


def test_a_held_call_ends_at_once_when_identity_drains(tmp_path):
    harness = ServiceHarness(DEFINITION, tmp_path)
    try:
        version = _stub(harness).ListRevocations(pb.ListRevocationsRequest()).version
        held = _held(harness, version, wait=30)
        time.sleep(0.5)
        assert not held.done()
        began = time.monotonic()
        harness._run(harness.running.stop(10))  # a grace period the held call must not use
        stopped = time.monotonic() - began
        reply = held.result(5)
    finally:
        harness.raw_channel.close()
        harness.loop.call_soon_threadsafe(harness.loop.stop)
        harness.thread.join(10)
    assert reply.version == version
    assert stopped < 3, stopped


def test_the_runtime_makes_one_call_per_hold_and_hears_a_revocation_at_once(identity):
    """RevocationGuard against identity: idle, its call is held (not one a second); a logout
    reaches its list, and `changed()` (what the live service's sockets wait on), at once."""
    user, tokens = _signed_in(identity)
    calls = REQUESTS.labels("identity", "ListRevocations", "OK")
    settings = identity.settings.model_copy(
        update={"peers": f"identity=127.0.0.1:{identity.running.port}"})

    async def scenario():
        guard = RevocationGuard(settings, Peers(settings))
        await guard.start()
        try:
            for _ in range(100):
                if guard.version:
                    break
                await asyncio.sleep(0.05)
            generation = guard.generation
            before = calls._value.get()
            await asyncio.sleep(3)  # three poll intervals of the old poller
            idle_calls = calls._value.get() - before
            waiting = asyncio.create_task(guard.changed(generation))
            began = time.monotonic()
            await asyncio.to_thread(
                _stub(identity).Logout, pb.LogoutRequest(refresh_token=tokens.refresh_token),
                metadata=Identity(tenant_id=user.tenant_id, user_id=user.id,
                                  scopes=" ".join(user.scopes)).metadata())
            await asyncio.wait_for(waiting, 5)
            return idle_calls, time.monotonic() - began, guard.current
        finally:
            await guard.stop()
            await guard.peers.close()

    idle_calls, elapsed, current = asyncio.run(scenario())
    assert idle_calls == 0  # the first call is held (none answered in these 3 s)
    assert _sid(tokens) in current.revoked_sessions
    assert elapsed < 1.0, elapsed
