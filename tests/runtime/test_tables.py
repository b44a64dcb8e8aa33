"""What every table shares (mesh.runtime.tables): a new row's defaults are made without
inspecting each default factory's signature again (pydantic does it at every default)."""

from __future__ import annotations

import functools

from pydantic import BaseModel, Field
from pydantic._internal import _fields

from mesh.runtime.tables import _once_per_factory, new_id
from mesh.workflows.models import ExecutionRow


def test_a_factorys_signature_is_read_once():
    asked = []

    def inspect_factory(factory):
        asked.append(factory)
        return False

    cached = _once_per_factory(inspect_factory)
    assert [cached(new_id), cached(new_id), cached(list), cached(list)] == [False] * 4
    assert asked == [new_id, list]
    # A factory that cannot be weakly referenced is inspected every time, as before.
    unreferenceable = functools.partial(dict).__call__
    cached(unreferenceable), cached(unreferenceable)
    assert asked[2:] == [unreferenceable, unreferenceable]


def test_rows_and_models_get_their_defaults_as_before():
    assert hasattr(_fields.takes_validated_data_argument, "uncached")  # installed on import
    first, second = ExecutionRow(tenant_id="t", workflow_id="w"), \
        ExecutionRow(tenant_id="t", workflow_id="w")
    assert first.id != second.id and first.step_states == [] and first.inputs == {}
    assert first.step_states is not second.step_states

    class Order(BaseModel):  # a factory that takes the validated data still gets it
        items: list[str]
        count: int = Field(default_factory=lambda data: len(data["items"]))

    assert Order(items=["a", "b"]).count == 2 and Order(items=[]).count == 0
