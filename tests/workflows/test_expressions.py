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


@pytest.mark.parametrize("expression, bounded", [
    ("inputs.topic", True),
    ("steps.score.output.value > 0.8 && !inputs.skip", True),
    ('steps."fetch-page".output.items[0].url', True),
    ("length(inputs.items)", True),
    ("inputs.a | inputs.b", True),
    ("about {{inputs.topic}}: {{ length(inputs.items) }}", True),
    ("{total: sum(args.prices)}", False),        # builds a value: the sandbox
    ("inputs.items[*].name", False),
    ("inputs.x.[@,@][]", False),
    ("sort_by(inputs.items, &n)", False),
    ("x {{ inputs.x.[@,@] }}", False),
])
def test_only_expressions_bounded_by_the_document_run_inline(expression, bounded):
    from mesh.workflows.expressions import is_bounded

    assert is_bounded(expression) is bounded


@pytest.mark.parametrize("expression, bounded", [
    ("{total: sum(args.prices)}", True),         # one level of references, then measured
    ("{n: sum([args.n, `1`])}", True),
    ("[steps.a.output, steps.b.output]", True),
    ("[@, @][0]", True),
    ("{a: inputs}.a.b", True),
    ("length([@, @])", True),
    ("[@, @].[@, @]", False),                    # 2^n by reference in n steps
    ("{a: inputs}.a.[@, @]", False),
    ("[@, @] | [@, @]", False),
    ("([@, @] || inputs).[@, @]", False),
    ("to_string([@, @])", False),                # walks every reference whole
    ("[@, @] == [@, @]", False),
    ("contains([@], `1`)", False),
    ("inputs.items[*].name", False),
])
def test_a_run_in_the_call_may_build_values_it_measures(expression, bounded):
    """mesh.workflows.inline evaluates multi-selects on the loop and measures each value they
    build; what would build on a built value, or walk one whole, still goes to the sandbox."""
    from mesh.workflows.expressions import expanded_size, is_bounded

    assert is_bounded(expression, building=True) is bounded
    shared = {"s": "x" * 100}
    doubled = [shared, shared]
    for _ in range(30):  # 2^30 references: counted only until past the limit
        doubled = [doubled, doubled]
    assert 1000 < expanded_size(doubled, 1000) < 2000


def test_rendered_text_is_refused_before_it_passes_its_limit():
    from mesh.workflows.expressions import evaluate as evaluate_capped

    doc = {"inputs": {"x": "y" * 1000}}
    with pytest.raises(ExpressionError, match="larger than 10000 bytes"):
        evaluate_capped("{{inputs.x}} " * 100, doc, 10_000)
    with pytest.raises(ExpressionError, match="larger than 5000 bytes"):
        render_text("{{x}}" * 100, {"x": "y" * 100}, 5000)
    assert len(evaluate_capped("{{inputs.x}} " * 5, doc, 10_000)) == 5005


def test_inline_and_sandboxed_evaluation_agree():
    import asyncio

    from mesh.runtime import sandbox
    from mesh.workflows.expressions import evaluate_async

    async def both():
        try:
            return [await evaluate_async(e, DOC, tenant="t") for e in (
                "{total: sum(args.prices), n: length(args.prices)}",   # the sandbox
                "length(inputs.items)",                                # inline
                "about {{inputs.topic}}: {{ inputs.items[*] }}")]      # the sandbox
        finally:
            await sandbox.shutdown()
    assert asyncio.run(both()) == [{"total": 4.0, "n": 2}, 2, "about dbos: [3, 4]"]
