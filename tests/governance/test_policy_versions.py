"""A policy's versions and version labels (mesh.runtime.versions, POLICY_VERSIONS): read and
diff versions; decisions evaluate the version `production` names, else the newest, so moving the
label back is a rollback."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format

from agentmesh.governance.v1 import governance_pb2 as pb
from tests.governance.test_governance_service import (ALLOW_ALL, DENY_SEARCH, _decide,
                                                      _policy, _tool_call, governance, peers,
                                                      stub)
from tests.harness import error_reason

__all__ = ["governance", "peers", "stub"]   # the module's fixtures, shared


def test_decisions_follow_the_production_label(stub, me):
    _policy(stub, me, "tools", ALLOW_ALL)
    stub.UpdatePolicy(pb.UpdatePolicyRequest(policy_id="tools", policy=pb.Policy(
        cedar=DENY_SEARCH + "\npermit(principal, action, resource);")), metadata=me.metadata())
    # No production label: the newest version (2) denies search.
    denied = _decide(stub, me, _tool_call())
    assert not denied.allowed and denied.matching_policies == ["tools@2"]
    labelled = stub.SetPolicyLabel(pb.SetPolicyLabelRequest(
        policy_id="tools", label="production", version=1), metadata=me.metadata())
    assert dict(labelled.version_labels) == {"production": 1} and labelled.version == 2
    allowed = _decide(stub, me, _tool_call())
    assert allowed.allowed and allowed.matching_policies == ["tools@1"]
    stub.SetPolicyLabel(pb.SetPolicyLabelRequest(policy_id="tools", label="production",
                                                 version=2), metadata=me.metadata())
    assert not _decide(stub, me, _tool_call()).allowed
    stub.DeletePolicyLabel(pb.DeletePolicyLabelRequest(policy_id="tools", label="production"),
                           metadata=me.metadata())
    assert not stub.GetPolicy(pb.GetPolicyRequest(policy_id="tools"),
                              metadata=me.metadata()).version_labels


def test_versions_read_and_diff(stub, me):
    policy = _policy(stub, me, "diffed", ALLOW_ALL)
    stub.UpdatePolicy(pb.UpdatePolicyRequest(policy_id="diffed", policy=pb.Policy(
        cedar=DENY_SEARCH)), metadata=me.metadata())
    one = stub.GetPolicyVersion(pb.GetPolicyVersionRequest(policy_id=policy.id, version=1),
                                metadata=me.metadata())
    assert one.cedar == ALLOW_ALL and one.created_by == me.user_id and not one.labels
    listed = stub.ListPolicyVersions(pb.ListPolicyVersionsRequest(policy_id="diffed"),
                                     metadata=me.metadata())
    assert [(v.version, list(v.labels)) for v in listed.items] == [(2, ["latest"]), (1, [])]
    diff = stub.DiffPolicyVersions(pb.DiffPolicyVersionsRequest(policy_id="diffed", version=2),
                                   metadata=me.metadata())
    assert (diff.from_version, diff.to_version) == (1, 2)
    assert [(c.field, json_format.MessageToDict(c.before), json_format.MessageToDict(c.after))
            for c in diff.changes] == [("cedar", ALLOW_ALL, DENY_SEARCH)]
    for call, request, reason in [
            (stub.GetPolicyVersion, pb.GetPolicyVersionRequest(policy_id="diffed", version=9),
             "POLICY_VERSION_NOT_FOUND"),
            (stub.SetPolicyLabel, pb.SetPolicyLabelRequest(policy_id="diffed", label="latest",
                                                           version=1), "INVALID_ARGUMENT")]:
        with pytest.raises(grpc.RpcError) as caught:
            call(request, metadata=me.metadata())
        assert error_reason(caught.value) == reason


def test_a_read_by_version_or_label(stub, me):
    _policy(stub, me, "read-by", ALLOW_ALL)
    stub.UpdatePolicy(pb.UpdatePolicyRequest(policy_id="read-by", policy=pb.Policy(
        cedar=DENY_SEARCH)), metadata=me.metadata())
    stub.SetPolicyLabel(pb.SetPolicyLabelRequest(policy_id="read-by", label="production",
                                                 version=1), metadata=me.metadata())
    got = stub.GetPolicy(pb.GetPolicyRequest(policy_id="read-by", label="production"),
                         metadata=me.metadata())
    assert (got.version, got.cedar) == (1, ALLOW_ALL)
    assert stub.GetPolicy(pb.GetPolicyRequest(policy_id="read-by", version=2),
                          metadata=me.metadata()).cedar == DENY_SEARCH
    assert stub.GetPolicy(pb.GetPolicyRequest(policy_id="read-by"),
                          metadata=me.metadata()).version == 2
