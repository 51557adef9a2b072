"""Templates stop at their limits while they render, before building what they ask for: each
bomb of issue 14 and its variants is refused with the limit it hit, with little memory used;
an advocate's 10 KB name still renders."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from referrals.programs import render_limits as limits
from referrals.programs.model import DEFAULT_TEMPLATES, MessageKind
from referrals.programs.templating import SAMPLE_CONTEXT, TemplateProblem, check, render

BIG = "{% set s = 'x' * 100000 %}"  # the longest value a template may build
# A bomb refused before building its result uses far less than what it asked for (tens of MB).
MEMORY_BOUND = 8_000_000


@contextmanager
def memory() -> Iterator[list[int]]:
    """The peak of Python allocations in the block (one value, there after the block)."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def refusal(template: str, **kwargs: float) -> str:
    with pytest.raises(TemplateProblem) as caught:
        render(template, SAMPLE_CONTEXT, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_center_of_fifty_million_is_refused_before_it_is_built() -> None:
    with memory() as peak:
        assert "longer than 100000 characters" in refusal("{{ 'x'|center(50000000) }}")
        assert "longer than 100000 characters" in refusal("{{ advocate_name.ljust(50000000) }}")
    assert peak[0] < MEMORY_BOUND


def test_a_macro_doubling_a_string_stops_at_the_depth_or_the_size_limit() -> None:
    doubling = (
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}"
        "{% endmacro %}"
    )
    with memory() as peak:
        assert "macros nest deeper than 10" in refusal(doubling + "{{ d('x', 25) }}")
        # Shallow enough for the depth limit, but the seventh doubling passes 100,000.
        assert "longer than 100000 characters" in refusal(doubling + "{{ d('x' * 1000, 9) }}")
    assert peak[0] < MEMORY_BOUND
    assert render(doubling + "{{ d('x', 3) }}", SAMPLE_CONTEXT) == "8"


def test_ten_million_iterations_of_nested_ranges_stop_at_the_iteration_limit() -> None:
    nested = (
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(10) %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    )
    assert f"loops ran more than {limits.MAX_ITERATIONS} times" in refusal(nested)


def test_loops_nested_four_deep_are_refused_when_the_document_is_checked() -> None:
    four = "{% for a in range(2) %}" * 4 + "x" + "{% endfor %}" * 4
    with pytest.raises(TemplateProblem, match="line 1: loops nest deeper than 3"):
        check(four)
    three = "{% for a in range(2) %}" * 3 + "{{ unsubscribe_url }}" + "{% endfor %}" * 3
    assert check(three).count("unsubscribe") == 8


def test_a_template_running_past_its_time_limit_is_stopped() -> None:
    # Within every size and count limit, but a lot of work: 10,000 scans of 100,000 characters.
    slow = BIG + (
        "{% for i in range(1000) %}{% for j in range(10) %}{{ s.count('xy') }}"
        "{% endfor %}{% endfor %}"
    )
    assert "took longer than 0.01 s" in refusal(slow, time_limit_s=0.01)
    assert limits.TIME_LIMIT_S == 1.0


def test_the_output_is_counted_as_it_is_produced() -> None:
    static = "{% for i in range(1000) %}" + "y" * 1000 + "{% endfor %}"
    assert refusal(static) == "renders to more than 100000 characters"


BOMBS = {
    "str() of a tuple of big strings": BIG + "{{ (s,) * 1000 }}",
    "join of a batch": BIG + "{{ ((s,) * 1000)|batch(1000)|join }}",
    "a macro's loop": BIG
    + "{% macro m() %}{% for i in range(1000) %}{{ s }}{% endfor %}{% endmacro %}{{ m()|length }}",
    "a set block's loop": BIG
    + "{% set b %}{% for i in range(1000) %}{{ s }}{% endfor %}{% endset %}{{ b|length }}",
    "a format width": "{{ '{:>99999999}'.format(1) }}",
    "a format precision": "{{ '{:.99999999f}'.format(1.0) }}",
    "a %-format width": "{{ '%99999999s' % 'x' }}",
    "the format filter": "{{ '%99999999s'|format('x') }}",
    "indent": BIG + "{{ s|replace('x', '\\n')|indent(100000) }}",
    "replace": BIG + "{{ s|replace('x', s) }}",
    "expandtabs": BIG + "{{ (s|replace('x', '\\t')).expandtabs(1000) }}",
    "wordwrap": BIG + "{{ s|wordwrap(1, wrapstring=s) }}",
    "many centred strings": "{{ range(1000)|map('center', 99999)|join }}",
    "int.to_bytes": "{{ (1).to_bytes(1000000000, 'big') }}",
    "a list of lists summed": "{{ (((1,) * 1000,) * 1000)|sum(start=()) }}",
    "a long string looped over": "{% for c in 'x' * 100000 %}{% endfor %}",
    "a recursive loop": "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "a macro calling itself twice": (
        "{% macro t(n) %}{% if n %}{{ t(n - 1) }}{{ t(n - 1) }}{% endif %}{% endmacro %}"
        + "{{ t(30) }}"
    ),
    "tojson's indent": "{{ [[1]]|tojson(indent=100000000) }}",
    "a dict's items repeated": BIG + "{{ (dict(a=s, b=s).items()|list) * 1000 }}",
    "a number squared again and again": (
        "{% macro p(n, k) %}{% if k %}{{ p(n * n, k - 1) }}{% else %}{{ n }}{% endif %}"
        "{% endmacro %}{{ p(9 ** 100, 8) }}"
    ),
}


@pytest.mark.parametrize("template", BOMBS.values(), ids=BOMBS.keys())
def test_each_bomb_is_refused_with_little_memory(template: str) -> None:
    with memory() as peak, pytest.raises(TemplateProblem, match=r"is refused|renders to more"):
        render(template, SAMPLE_CONTEXT)
    assert peak[0] < MEMORY_BOUND


NAME_10KB = ("Ådelheid von Brökelmann-" * 420)[:10_000]  # 10,000 characters, ~10.8 KB in UTF-8


@pytest.mark.parametrize("kind", list(MessageKind))
def test_every_default_template_renders_an_advocates_10kb_name(kind: MessageKind) -> None:
    template = DEFAULT_TEMPLATES[kind]["en-US"]
    context = {**SAMPLE_CONTEXT, "advocate_name": NAME_10KB}
    for part, html in ((template.text, False), (template.html, True)):
        assert part is not None
        assert render(part, context, html=html).count(NAME_10KB) >= ("advocate_name" in part)


def test_a_10kb_name_may_be_repeated_up_to_the_value_limit_and_no_further() -> None:
    context = {**SAMPLE_CONTEXT, "advocate_name": NAME_10KB}
    assert len(render("{{ advocate_name * 10 }}", context)) == 100_000
    with pytest.raises(TemplateProblem, match="repeated text would be longer than 100000"):
        render("{{ advocate_name * 11 }}", context)
    with pytest.raises(TemplateProblem, match="renders to more than 100000 characters"):
        render("{% for i in range(11) %}{{ advocate_name }}{% endfor %}", context)


def test_calls_outside_the_allowed_methods_are_refused() -> None:
    assert "calling str.encode is not allowed" in refusal("{{ advocate_name.encode() }}")
    assert render("{{ advocate_name.upper().split()|join('-') }}", SAMPLE_CONTEXT) == "ALEX-DOE"
    assert render("{{ '{} {}'.format(program_id, kind) }}", SAMPLE_CONTEXT) == "acme-b2b REWARDED"
    assert render("{{ dict(a=1).get('a') }}", SAMPLE_CONTEXT) == "1"
