"""The expression syntax of docs/workflows.md (JMESPath plus two conveniences)."""

from __future__ import annotations

import pytest

from mesh.workflows.definition import ExpressionError, evaluate, references, render_text

DOC = {"inputs": {"topic": "dbos", "items": [3, 4]},
       "steps": {"score": {"status": "COMPLETED", "output": {"value": 0.9}},
                 "fetch-page": {"status": "COMPLETED", "output": {"url": "http://x"}}},
       "args": {"prices": [1.5, 2.5]}}


@pytest.mark.parametrize("expression, value", [
    ("inputs.topic", "dbos"),
    ("length(inputs.items)", 2),
    ("steps.score.output.value > 0.8", True),          # a bare number is a number
    ("steps.score.output.value > `0.95`", False),       # JMESPath's own literal
    ("steps.score.output.value >= 1", False),
    ('steps."fetch-page".output.url', "http://x"),
    ("{total: sum(args.prices), n: length(args.prices)}", {"total": 4.0, "n": 2}),
    ("{{ inputs.items }}", [3, 4]),                      # a template alone: the raw value
    ("about {{inputs.topic}}: {{ length(inputs.items) }} items", "about dbos: 2 items"),
    ("'literal'", "literal"),
    ("steps.missing.output", None),
])
def test_evaluate(expression, value):
    assert evaluate(expression, DOC) == value


def test_errors_and_references():
    with pytest.raises(ExpressionError):
        evaluate("inputs.[", DOC)
    assert references('steps.a.output.x || steps."b-c".output') == {"a", "b-c"}
    assert references("inputs.steps") == set()
    assert render_text("Summarize {{text}} for {{who}}", {"text": "it", "who": {"n": 1}}) == \
        'Summarize it for {"n": 1}'
    assert render_text("keep {{unknown}}", {}) == "keep {{unknown}}"


def test_whole_numbers_are_written_as_whole_numbers_in_text():
    from mesh.workflows.definition import render_text

    assert render_text("n={{n}} xs={{xs}}", {"n": 42.0, "xs": [1.0, 2.5]}) == "n=42 xs=[1, 2.5]"
