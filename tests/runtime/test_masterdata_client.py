"""Reading master data into plain records: prices, merged limits, prompt rendering."""

from __future__ import annotations

import pytest

from mesh.runtime.errors import InvalidArgument
from mesh.runtime.masterdata_client import Limits, PromptSpec, _price


def test_prices_are_per_million_tokens_whatever_the_contract_unit():
    assert _price({"pricing": {"input_per_1m_tokens": 2.5}}, "input") == 2.5
    assert _price({"pricing": {"output_per_1k_tokens": 0.01}}, "output") == pytest.approx(10)
    assert _price({}, "input") == 0.0


def test_limits_merge_to_the_strictest():
    limits = Limits()
    limits.merge({"max_steps": 10, "allowed_tools": ["a", "b", "c"]}, "one")
    limits.merge({"max_steps": 3, "timeout_seconds": 30, "allowed_tools": ["b", "c", "d"],
                  "denied_tools": ["c"]}, "two")
    limits.merge({"max_tokens": 256}, "three")
    assert (limits.max_steps, limits.timeout_seconds, limits.max_tokens_per_call) == (3, 30, 256)
    assert limits.allowed_tools == {"b", "c"} and limits.denied_tools == {"c"}
    assert limits.sources == ["one", "two", "three"]


def test_prompt_rendering_uses_defaults_and_names_missing_variables():
    prompt = PromptSpec("support", "Help {{ customer }} in {{language}}.",
                        defaults={"language": "English"}, required={"customer"})
    assert prompt.render({"customer": "ACME"}) == "Help ACME in English."
    with pytest.raises(InvalidArgument) as caught:
        prompt.render({})
    assert caught.value.field_violations == [("context.customer", "is required by the prompt")]
