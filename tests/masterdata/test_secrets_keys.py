"""Envelope encryption in the running service: rotation online and resumable, ciphertexts bound
to their tenant and row, nothing in clear in the database file."""

from __future__ import annotations

import sqlite3
import stat
import uuid

import grpc
import pytest

from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as pb_grpc
from mesh.masterdata import keys
from mesh.masterdata.service import DEFINITION
from tests.harness import Identity, ServiceHarness, error_reason


@pytest.fixture
def service(tmp_path):
    harness = ServiceHarness(DEFINITION, tmp_path)
    yield harness
    harness.close()


def _create(service, who, value):
    return service.stub(pb_grpc.SecretServiceStub).CreateSecret(pb.CreateSecretRequest(
        secret=pb.Secret(name=f"s-{uuid.uuid4().hex[:6]}", value=value)), metadata=who.metadata())


def _reveal(service, who, key):
    return service.stub(pb_grpc.SecretAccessServiceStub).RevealSecret(pb.RevealSecretRequest(
        secret_id=key, requested_by="test"), metadata=who.metadata()).value


def test_key_file_is_private_and_values_are_not_in_the_database_file(service, tmp_path):
    me = Identity()
    value = "sk-clear-" + uuid.uuid4().hex
    _create(service, me, value)
    key_file = tmp_path / keys.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("masterdata.db*"))
    assert value.encode() not in blob and value[-12:].encode() not in blob
    assert key_file.read_bytes() not in blob


def test_rotation_rewraps_every_secret_online_and_resumes(service, tmp_path):
    a, b = Identity(), Identity()
    made = [(who, _create(service, who, f"value-{i}-{uuid.uuid4().hex}"))
            for i, who in enumerate([a, a, b, b, b])]
    values = {s.id: _reveal(service, who, s.id) for who, s in made}
    old = made[0][1].key_id

    class Interrupted(Exception):
        pass

    def stop_after_first_batch(line: str) -> None:
        if line.startswith("re-wrapped"):
            raise Interrupted

    with pytest.raises(Interrupted):
        keys.rotate(service.settings, batch=2, say=stop_after_first_batch)
    stub = service.stub(pb_grpc.SecretServiceStub)
    key_ids = {stub.GetSecret(pb.GetSecretRequest(secret_id=s.id), metadata=w.metadata()).key_id
               for w, s in made}
    assert len(key_ids) == 2 and old in key_ids  # half done: both keys in use, all readable
    assert all(_reveal(service, w, s.id) == values[s.id] for w, s in made)
    active, done = keys.rotate(service.settings, new_key=False, say=lambda _: None)
    assert done == 3 and active != old
    for who, secret in made:
        now = stub.GetSecret(pb.GetSecretRequest(secret_id=secret.id), metadata=who.metadata())
        assert now.key_id == active and now.fingerprint == secret.fingerprint
        assert _reveal(service, who, secret.id) == values[secret.id]
    # new secrets are sealed under the new key by the running service
    assert _create(service, a, "after-rotation-value").key_id == active


def test_ciphertext_moved_to_another_tenants_row_fails_to_decrypt(service, tmp_path):
    a, b = Identity(), Identity()
    mine = _create(service, a, "tenant-a-secret-value")
    theirs = _create(service, b, "tenant-b-secret-value")
    with sqlite3.connect(tmp_path / "masterdata.db") as db:
        db.execute("UPDATE secrets SET key_id = s.key_id, wrapped_key = s.wrapped_key, "
                   "ciphertext = s.ciphertext FROM (SELECT key_id, wrapped_key, ciphertext "
                   "FROM secrets WHERE id = ?) AS s WHERE secrets.id = ?", (mine.id, theirs.id))
    with pytest.raises(grpc.RpcError) as caught:
        _reveal(service, b, theirs.id)
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS
    assert error_reason(caught.value) == "SECRET_DECRYPTION_FAILED"
    assert "tenant-a" not in caught.value.details()
    assert _reveal(service, a, mine.id) == "tenant-a-secret-value"


def test_rotation_with_keys_from_settings(tmp_path):
    import base64
    import os

    old, new = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    me = Identity()
    first = ServiceHarness(DEFINITION, tmp_path, secrets_kek=old, secrets_kek_id="k-old")
    secret = _create(first, me, "settings-managed-value")
    first.close()
    assert not (tmp_path / keys.KEY_FILE).exists()
    rotated = dict(secrets_kek=new, secrets_kek_id="k-new", secrets_previous_keks=f"k-old={old}")
    second = ServiceHarness(DEFINITION, tmp_path, **rotated)
    try:
        assert _reveal(second, me, secret.id) == "settings-managed-value"  # old key still opens
        active, done = keys.rotate(second.settings, say=lambda _: None)
        assert (active, done) == ("k-new", 1)
        assert _reveal(second, me, secret.id) == "settings-managed-value"
    finally:
        second.close()
    # every secret is under k-new now: the old key can go
    third = ServiceHarness(DEFINITION, tmp_path, secrets_kek=new, secrets_kek_id="k-new")
    try:
        assert _reveal(third, me, secret.id) == "settings-managed-value"
    finally:
        third.close()
