"""Message templates written by marketing, rendered in a Jinja2 sandbox.

Templates come from program documents, i.e. from people who are not engineers and must not be
able to reach into the system. So they are rendered by `ImmutableSandboxedEnvironment`: no
attribute starting with `_`, no mutation of objects, no filesystem loader (a template cannot
include another), only the `range` and `dict` globals, `StrictUndefined` so that a misspelled
variable is an error rather than an empty string, and guards against the arithmetic that builds
enormous strings or numbers. The HTML part is autoescaped; subject and plain-text parts are not.

A template is checked when the program document is validated (`check`), not at send time: it
must compile, use only the variables of `SAMPLE_CONTEXT`, and render with that context.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

from referrals.platform.errors import ConfigError

# Every variable a template may use, with an example value. The notifications service passes all
# of them for every message kind; those that do not apply to a kind are empty strings (or None
# for the two next-tier variables when the advocate has reached the last tier).
SAMPLE_CONTEXT: Mapping[str, object] = {
    "advocate_name": "Alex Doe",  # the advocate's display name
    "program_id": "acme-b2b",
    "referral_id": "ref-3f2a9c",
    "prospect_label": "Jordan at Initech",  # how the referred friend is shown to the advocate
    "kind": "REWARDED",  # a MessageKind: LEAD, WON, ..., REWARD_DENIED, REWARD_CLAWED_BACK, NURTURE
    "status": "REWARDED",  # the referral's status (a contract symbol)
    "reward_amount": "50.00 USD",  # the reward in major units with its currency
    "reward_type": "GIFT_CARD",  # GIFT_CARD, CHECK, BILL_CREDIT or MERCHANDISE
    "payout_id": "pay-7d41e0",
    "referrals_to_next_tier": 2,  # successful referrals still needed for the next tier
    "next_tier_amount": "75.00 USD",  # the next tier's reward ("5% of the deal" for a percent)
    "reason": "ACCOUNT_CLOSED",  # the status reason code (finance's, for PAYOUT_FAILED)
    "unsubscribe_url": "https://referrals.example.com/unsubscribe?token=abc123",
    "refer_url": "https://referrals.example.com/r/ALEX-42",  # the advocate's own referral link
}

_LAST_TIER = {"referrals_to_next_tier": None, "next_tier_amount": None}
MAX_OUTPUT_CHARS = 100_000  # far beyond any email; also bounds `"x" * n` inside a template
_MAX_RANGE = 1_000  # loops in a message have no business running longer


class TemplateProblem(ConfigError):
    """A template that does not compile, refers to an unknown variable, fails or is refused."""

    reason = "BAD_TEMPLATE"


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _too_big_power(left, right):
            raise SecurityError("the power is too large")
        if operator == "*" and _repeated_length(left, right) > MAX_OUTPUT_CHARS:
            raise SecurityError("the repeated text is too long")
        return super().call_binop(context, operator, left, right)


def _too_big_power(base: object, exp: object) -> bool:
    if not isinstance(base, int) or not isinstance(exp, int):
        return False
    return abs(exp) > 100 or base.bit_length() * abs(exp) > 4096


def _repeated_length(left: object, right: object) -> int:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            return len(seq) * times
    return 0


def _small_range(*args: int) -> range:
    rng = safe_range(*args)
    if len(rng) > _MAX_RANGE:
        raise SecurityError(f"range() is limited to {_MAX_RANGE} items")
    return rng


@lru_cache(maxsize=2)
def _environment(html: bool) -> _Environment:
    # trim_blocks/lstrip_blocks: a `{% if %}` line leaves no blank line behind in plain text.
    env = _Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        loader=None,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals = {"range": _small_range, "dict": dict}
    return env


@lru_cache(maxsize=1024)
def _compile(template: str, html: bool) -> jinja2.Template:
    try:
        return _environment(html).from_string(template)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(f"line {err.lineno}: {err.message}") from err


def variables(template: str) -> frozenset[str]:
    """The context variables `template` refers to (in any branch), for checks."""
    try:
        ast = _environment(False).parse(template)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(f"line {err.lineno}: {err.message}") from err
    return frozenset(meta.find_undeclared_variables(ast))


def render(template: str, context: Mapping[str, object], *, html: bool = False) -> str:
    """Renders `template` with `context`; any failure is a TemplateProblem naming the cause."""
    compiled = _compile(template, html)
    try:
        text = compiled.render(dict(context))
    except jinja2.UndefinedError as err:
        raise TemplateProblem(f"does not render: {err.message}") from err
    except SecurityError as err:
        raise TemplateProblem(f"is refused: {err.message}") from err
    # A template is code: it can raise whatever an expression can (1 / 0, "a" + 1, ...).
    except Exception as err:
        raise TemplateProblem(f"does not render: {type(err).__name__}: {err}") from err
    if len(text) > MAX_OUTPUT_CHARS:
        raise TemplateProblem(f"renders to more than {MAX_OUTPUT_CHARS} characters")
    return text


def check(template: str, *, html: bool = False) -> str:
    """Validates a template as a program document requires; returns its sample rendering."""
    allowed = SAMPLE_CONTEXT.keys() | _environment(html).globals.keys()
    unknown = sorted(variables(template) - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(allowed))}"
        raise TemplateProblem(f"unknown variable '{unknown[0]}' ({hint})")
    # Also as the advocate on the last tier sees it, where the next-tier variables are None.
    render(template, {**SAMPLE_CONTEXT, **_LAST_TIER}, html=html)
    return render(template, SAMPLE_CONTEXT, html=html)
