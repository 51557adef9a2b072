"""Templates written by marketing render in a sandbox: strict about variables, escaped in HTML,
and unable to reach Python internals."""

from __future__ import annotations

import pytest

from referrals.platform.errors import ConfigError
from referrals.programs.model import DEFAULT_TEMPLATES, MessageKind
from referrals.programs.templating import SAMPLE_CONTEXT, TemplateProblem, check, render, variables

MALICIOUS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ advocate_name.__class__ }}",
    "{{ '{0.__class__.__mro__}'.format(advocate_name) }}",
    "{{ range.__self__ }}",
    "{% set x = dict(a=1) %}{{ x.update(b=2) }}",
    "{{ 'x' * 1000000000 }}",
    "{{ 10 ** 100000 }}",
    "{% for i in range(100000) %}x{% endfor %}",
    "{% include '/etc/passwd' %}",
]


@pytest.mark.parametrize("kind", list(MessageKind))
def test_every_default_template_renders_with_the_sample_context(kind: MessageKind) -> None:
    template = DEFAULT_TEMPLATES[kind]["en-US"]
    subject = render(template.subject, SAMPLE_CONTEXT)
    assert subject and "\n" not in subject
    assert str(SAMPLE_CONTEXT["unsubscribe_url"]) in render(template.text, SAMPLE_CONTEXT)
    assert template.html is not None
    assert 'href="https://referrals.example.com/unsubscribe' in render(
        template.html, SAMPLE_CONTEXT, html=True
    )


def test_rewarded_default_tells_how_far_the_next_tier_is_and_survives_the_last_tier() -> None:
    text = DEFAULT_TEMPLATES[MessageKind.REWARDED]["en-US"].text
    assert "2 more successful referrals and your reward grows to 75.00 USD" in render(
        text, SAMPLE_CONTEXT
    )
    last = {**SAMPLE_CONTEXT, "referrals_to_next_tier": None, "next_tier_amount": None}
    assert "grows to" not in render(text, last)


def test_a_misspelled_variable_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(TemplateProblem, match="'advocat_name' is undefined"):
        render("Hi {{ advocat_name }}", SAMPLE_CONTEXT)


def test_check_finds_a_misspelled_variable_even_in_a_branch_not_taken() -> None:
    with pytest.raises(TemplateProblem, match="did you mean 'reward_amount'"):
        check("{% if false %}{{ reward_amout }}{% endif %}")


def test_html_part_escapes_context_values_but_the_text_part_does_not() -> None:
    context = {**SAMPLE_CONTEXT, "prospect_label": "<script>alert(1)</script>"}
    html = render("<p>{{ prospect_label }}</p>", context, html=True)
    assert html == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert render("{{ prospect_label }}", context) == "<script>alert(1)</script>"


def test_a_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateProblem, match="line 2"):
        render("Hi\n{{ advocate_name ", SAMPLE_CONTEXT)


def test_a_runtime_failure_is_a_template_problem() -> None:
    with pytest.raises(TemplateProblem, match="ZeroDivisionError"):
        render("{{ 1 / 0 }}", SAMPLE_CONTEXT)


def test_template_problem_is_a_config_error_with_its_own_reason() -> None:
    assert issubclass(TemplateProblem, ConfigError)
    assert TemplateProblem.reason == "BAD_TEMPLATE"


@pytest.mark.parametrize("template", MALICIOUS)
def test_a_template_reaching_for_python_internals_is_refused(template: str) -> None:
    with pytest.raises(TemplateProblem):
        render(template, SAMPLE_CONTEXT)
    with pytest.raises(TemplateProblem):
        check(template)


def test_variables_lists_what_a_template_uses() -> None:
    assert variables("{{ a }}{% if b %}{{ c }}{% endif %}{% set d = 1 %}{{ d }}") == {"a", "b", "c"}


def test_block_tags_on_their_own_line_leave_no_blank_line() -> None:
    template = "Hi\n{% if referrals_to_next_tier %}\nmore\n{% endif %}\nbye"
    assert render(template, SAMPLE_CONTEXT) == "Hi\nmore\nbye"
