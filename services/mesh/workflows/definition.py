"""Workflow definitions: the step graph and its validation. The expression syntax (JMESPath
over the execution's document, `{{ }}` templates) and where expressions run are in
`mesh.workflows.expressions`."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime.errors import InvalidArgument
# The expression syntax lives in a module of its own, light enough for the sandbox's workers.
from mesh.workflows.expressions import (TEMPLATE as _TEMPLATE, ExpressionError,  # noqa: F401
                                        as_text, compile_expression, evaluate, evaluate_async,
                                        references, render_text, render_text_async)

T = pb.StepType
CONFIG_OF = {
    T.STEP_TYPE_AGENT: "agent", T.STEP_TYPE_TOOL: "tool", T.STEP_TYPE_CONDITION: "condition",
    T.STEP_TYPE_PARALLEL: "parallel", T.STEP_TYPE_APPROVAL: "approval",
    T.STEP_TYPE_TRANSFORM: "transform", T.STEP_TYPE_SUB_WORKFLOW: "sub_workflow",
    T.STEP_TYPE_HTTP: "http",
}
# Step types a parallel branch may hold (they run as one DBOS step each).
BRANCH_TYPES = {T.STEP_TYPE_AGENT, T.STEP_TYPE_TOOL, T.STEP_TYPE_TRANSFORM,
                T.STEP_TYPE_SUB_WORKFLOW, T.STEP_TYPE_HTTP}
_STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")


def duration_seconds(step_or_msg, name: str) -> float | None:
    if not step_or_msg.HasField(name):
        return None
    value = getattr(step_or_msg, name)
    return value.seconds + value.nanos / 1e9


# ---- the graph ---------------------------------------------------------------------------------

@dataclass
class Graph:
    """A validated workflow, ready to run: effective dependencies and ownership."""

    workflow: pb.Workflow
    steps: dict[str, pb.Step] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    # step id -> the parallel step whose branch runs it
    owner: dict[str, str] = field(default_factory=dict)
    # step id -> the condition step and branch ("then"/"else") it belongs to
    branch_of: dict[str, tuple[str, str]] = field(default_factory=dict)
    deps: dict[str, list[str]] = field(default_factory=dict)

    @property
    def top(self) -> list[str]:
        return [s for s in self.order if s not in self.owner]

    def ancestors(self, step_id: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.deps.get(step_id, ()))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.deps.get(current, ()))
        return seen

    def counted(self) -> list[str]:
        """The steps progress is counted over: every step."""
        return self.order


def _violation(problems: list[tuple[str, str]], field_name: str, problem: str) -> None:
    problems.append((field_name, problem))


def build_graph(workflow: pb.Workflow) -> Graph:
    """Validates the step graph; INVALID_ARGUMENT naming every offending step."""
    problems: list[tuple[str, str]] = []
    graph = Graph(workflow)
    for index, step in enumerate(workflow.steps):
        where = f"steps[{index}]"
        if not step.id:
            _violation(problems, f"{where}.id", "is required")
            continue
        if not _STEP_ID.match(step.id):
            _violation(problems, f"steps.{step.id}.id",
                       f"step {step.id!r}: 1-64 letters, digits, '-' or '_'")
            continue
        if step.id in graph.steps:
            _violation(problems, f"steps.{step.id}.id", f"step {step.id!r} is defined twice")
            continue
        graph.steps[step.id] = step
        graph.order.append(step.id)
    if problems:
        raise _invalid(problems)

    for sid, step in graph.steps.items():
        where = f"steps.{sid}"
        config = step.WhichOneof("config")
        if step.type not in CONFIG_OF:
            _violation(problems, f"{where}.type",
                       f"step {sid!r} has unknown step type {step.type}; use one of "
                       f"{', '.join(T.Name(t).removeprefix('STEP_TYPE_').lower() for t in CONFIG_OF)}")
            continue
        expected = CONFIG_OF[step.type]
        if config != expected:
            _violation(problems, f"{where}.{expected}",
                       f"step {sid!r} of type {T.Name(step.type)} needs the `{expected}` config"
                       + (f", not `{config}`" if config else ""))
            continue
        _check_config(problems, sid, step)
        for dep in step.depends_on:
            if dep == sid:
                _violation(problems, f"{where}.depends_on", f"step {sid!r} depends on itself")
            elif dep not in graph.steps:
                _violation(problems, f"{where}.depends_on",
                           f"step {sid!r} depends on step {dep!r}, which does not exist")
        if step.HasField("retry_policy") and step.retry_policy.max_attempts < 0:
            _violation(problems, f"{where}.retry_policy.max_attempts",
                       f"step {sid!r}: max_attempts must not be negative")
    if problems:
        raise _invalid(problems)

    # Ownership: parallel branches and condition branches.
    for sid, step in graph.steps.items():
        if step.type == T.STEP_TYPE_PARALLEL:
            names = set()
            for b_index, branch in enumerate(step.parallel.branches):
                if not branch.name or branch.name in names:
                    _violation(problems, f"steps.{sid}.parallel.branches[{b_index}].name",
                               f"step {sid!r}: each branch needs a unique name")
                names.add(branch.name)
                for member in branch.step_ids:
                    if member not in graph.steps:
                        _violation(problems, f"steps.{sid}.parallel",
                                   f"step {sid!r} runs step {member!r}, which does not exist")
                    elif member == sid or member in graph.owner:
                        _violation(problems, f"steps.{sid}.parallel",
                                   f"step {member!r} is in more than one branch")
                    elif graph.steps[member].type not in BRANCH_TYPES:
                        _violation(problems, f"steps.{member}.type",
                                   f"step {member!r} in a branch of {sid!r} must be of type "
                                   "agent, tool, transform, http or sub_workflow")
                    elif graph.steps[member].depends_on:
                        _violation(problems, f"steps.{member}.depends_on",
                                   f"step {member!r} runs in a branch of {sid!r}: its order is "
                                   "the branch's, so it takes no depends_on")
                    else:
                        graph.owner[member] = sid
            if not step.parallel.branches:
                _violation(problems, f"steps.{sid}.parallel.branches",
                           f"step {sid!r} needs at least one branch")
    for sid, step in graph.steps.items():
        if step.type == T.STEP_TYPE_CONDITION:
            for label, members in (("then", step.condition.then_step_ids),
                                   ("else", step.condition.else_step_ids)):
                for member in members:
                    if member not in graph.steps:
                        _violation(problems, f"steps.{sid}.condition.{label}_step_ids",
                                   f"step {sid!r} chooses step {member!r}, which does not exist")
                    elif member == sid or member in graph.owner or member in graph.branch_of:
                        _violation(problems, f"steps.{sid}.condition.{label}_step_ids",
                                   f"step {member!r} cannot be chosen by condition {sid!r}")
                    else:
                        graph.branch_of[member] = (sid, label)
    if problems:
        raise _invalid(problems)

    # Effective dependencies.
    for sid, step in graph.steps.items():
        deps = list(step.depends_on)
        if sid in graph.branch_of and graph.branch_of[sid][0] not in deps:
            deps.append(graph.branch_of[sid][0])
        graph.deps[sid] = deps
    for sid, step in graph.steps.items():
        if step.type == T.STEP_TYPE_PARALLEL:
            for branch in step.parallel.branches:
                previous = None
                for member in branch.step_ids:
                    graph.deps[member] = [previous] if previous else list(graph.deps[sid])
                    previous = member
    for sid in graph.order:
        if sid in graph.owner:
            continue
        for dep in graph.deps[sid]:
            if dep in graph.owner:
                _violation(problems, f"steps.{sid}.depends_on",
                           f"step {sid!r} depends on step {dep!r} inside parallel step "
                           f"{graph.owner[dep]!r}; depend on {graph.owner[dep]!r} instead")
    if problems:
        raise _invalid(problems)

    # Cycles (depth-first, reporting the step that closes one).
    state: dict[str, int] = {}

    def visit(sid: str, path: list[str]) -> None:
        state[sid] = 1
        for dep in graph.deps[sid]:
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [sid] if dep in path else [dep, sid]
                _violation(problems, f"steps.{sid}.depends_on",
                           f"step {sid!r} is in a dependency cycle: {' -> '.join(cycle)}")
                continue
            if state.get(dep) is None:
                visit(dep, path + [sid])
        state[sid] = 2

    for sid in graph.order:
        if sid not in state:
            visit(sid, [])
    if problems:
        raise _invalid(problems)

    # Expressions: valid JMESPath, and they only read steps that run before.
    for sid, step in graph.steps.items():
        before = graph.ancestors(sid)
        for name, text in _expressions(step):
            try:
                for match in _TEMPLATE.finditer(text) or ():
                    compile_expression(match.group(1))
                if not _TEMPLATE.search(text):
                    compile_expression(text)
            except ExpressionError as exc:
                _violation(problems, f"steps.{sid}.{name}", f"step {sid!r}: {exc}")
                continue
            for ref in sorted(references(text)):
                if ref not in graph.steps:
                    _violation(problems, f"steps.{sid}.{name}",
                               f"step {sid!r} refers to step {ref!r}, which does not exist")
                elif ref not in before:
                    _violation(problems, f"steps.{sid}.{name}",
                               f"step {sid!r} refers to step {ref!r}, which does not run "
                               f"before it (add it to depends_on)")
    for key, text in workflow.outputs.items():
        try:
            compile_expression(text)
        except ExpressionError as exc:
            _violation(problems, f"outputs.{key}", str(exc))
            continue
        for ref in references(text):
            if ref not in graph.steps:
                _violation(problems, f"outputs.{key}",
                           f"output {key!r} refers to step {ref!r}, which does not exist")
    if problems:
        raise _invalid(problems)
    return graph


def _expressions(step: pb.Step) -> list[tuple[str, str]]:
    found = [(f"inputs.{k}", v) for k, v in step.inputs.items()]
    if step.type == T.STEP_TYPE_TRANSFORM:
        found.append(("transform.expression", step.transform.expression))
    elif step.type == T.STEP_TYPE_CONDITION:
        found.append(("condition.expression", step.condition.expression))
    return found


def _check_config(problems: list, sid: str, step: pb.Step) -> None:
    where = f"steps.{sid}"
    if step.type == T.STEP_TYPE_AGENT:
        if not step.agent.agent_id:
            _violation(problems, f"{where}.agent.agent_id", f"step {sid!r}: agent_id is required")
        if not step.agent.prompt:
            _violation(problems, f"{where}.agent.prompt", f"step {sid!r}: prompt is required")
    elif step.type == T.STEP_TYPE_TOOL and not step.tool.tool_id:
        _violation(problems, f"{where}.tool.tool_id", f"step {sid!r}: tool_id is required")
    elif step.type == T.STEP_TYPE_CONDITION and not step.condition.expression:
        _violation(problems, f"{where}.condition.expression",
                   f"step {sid!r}: expression is required")
    elif step.type == T.STEP_TYPE_TRANSFORM and not step.transform.expression:
        _violation(problems, f"{where}.transform.expression",
                   f"step {sid!r}: expression is required")
    elif step.type == T.STEP_TYPE_SUB_WORKFLOW and not step.sub_workflow.workflow_id:
        _violation(problems, f"{where}.sub_workflow.workflow_id",
                   f"step {sid!r}: workflow_id is required")
    elif step.type == T.STEP_TYPE_HTTP:
        url = step.http.url
        if not (url.startswith("http://") or url.startswith("https://")):
            _violation(problems, f"{where}.http.url",
                       f"step {sid!r}: url must be an absolute http(s) URL")
        if step.http.method and step.http.method.upper() not in (
                "GET", "POST", "PUT", "PATCH", "DELETE"):
            _violation(problems, f"{where}.http.method",
                       f"step {sid!r}: method must be GET, POST, PUT, PATCH or DELETE")
    elif step.type == T.STEP_TYPE_APPROVAL and step.approval.min_approvals < 0:
        _violation(problems, f"{where}.approval.min_approvals",
                   f"step {sid!r}: min_approvals must not be negative")


def _invalid(problems: list[tuple[str, str]]) -> InvalidArgument:
    first = problems[0][1]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InvalidArgument(f"invalid workflow: {first}{more}", reason="INVALID_WORKFLOW",
                           field_violations=problems,
                           details={"step": problems[0][0].split(".")[1]
                                    if problems[0][0].startswith("steps.") else ""})


def to_json(message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def workflow_from_json(data: dict[str, Any]) -> pb.Workflow:
    return json_format.ParseDict(data, pb.Workflow(), ignore_unknown_fields=True)


# A definition larger than this is parsed for each run rather than kept (the cache's bound is
# then 256 entries of at most this much text).
_PARSED_MAX_TEXT = 64 * 1024


def parsed_graph(data: dict[str, Any]) -> Graph:
    """`build_graph(workflow_from_json(data))`, shared by every run of the same definition:
    ParseDict's reflection and the graph were a twentieth of an execution's CPU, and both are
    only read by the runs sharing them."""
    text = json.dumps(data, separators=(",", ":"), default=str)
    if len(text) > _PARSED_MAX_TEXT:
        return build_graph(workflow_from_json(data))
    return _parsed_graph(text)


@functools.lru_cache(maxsize=256)
def _parsed_graph(text: str) -> Graph:
    return build_graph(workflow_from_json(json.loads(text)))


def check_slug(slug: str) -> None:
    from mesh.runtime.errors import invalid_field
    from mesh.runtime.tables import is_uuid

    if not _SLUG.match(slug) or is_uuid(slug) or slug == "executions":
        raise invalid_field("slug", "1-100 lowercase letters, digits and '-', not a UUID and "
                            "not 'executions'")


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:100].strip("-")
    return slug or "workflow"

