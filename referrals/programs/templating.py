"""Message templates written by marketing, rendered in a Jinja2 sandbox with limits.

Templates come from program documents, i.e. from people who are not engineers and must not be
able to reach into the system or take it down. So they are rendered by the environment of
`referrals.programs.sandbox`: Jinja's `ImmutableSandboxedEnvironment` (no attribute starting
with `_`, no mutation of objects), no filesystem loader (a template cannot include another),
only the `range` and `dict` globals, `StrictUndefined` so that a misspelled variable is an
error rather than an empty string, and the limits of `referrals.programs.render_limits`
enforced while the template runs: 1 s of time, 100,000 characters of output (and no single
value longer), 1,000,000 characters printed or built in all, 10,000 loop iterations, loops
nested 3 deep, macros 10 deep. A template over a limit stops when it reaches it, without
building what it asked for. The HTML part is autoescaped; subject and plain-text parts are not.

A template is checked when the program document is validated (`check`), not at send time: it
must compile, use only the variables of `SAMPLE_CONTEXT`, and render with that context.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import lru_cache

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError

from referrals.platform.errors import ConfigError
from referrals.programs import render_limits as limits
from referrals.programs.sandbox import Environment

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
MAX_OUTPUT_CHARS = limits.MAX_OUTPUT_CHARS
TIME_LIMIT_S = limits.TIME_LIMIT_S


class TemplateProblem(ConfigError):
    """A template that does not compile, refers to an unknown variable, fails or is refused."""

    reason = "BAD_TEMPLATE"


@lru_cache(maxsize=2)
def _environment(html: bool) -> Environment:
    return Environment(html=html)


@lru_cache(maxsize=1024)
def _compile(template: str, html: bool) -> jinja2.Template:
    if len(template) > limits.MAX_SOURCE_CHARS:
        raise TemplateProblem(f"is longer than {limits.MAX_SOURCE_CHARS} characters")
    try:
        return _environment(html).from_string(template)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(f"line {err.lineno}: {err.message}") from err
    except RecursionError as err:
        raise TemplateProblem("nests too deeply to compile") from err


def variables(template: str) -> frozenset[str]:
    """The context variables `template` refers to (in any branch), for checks."""
    try:
        ast = _environment(False).parse(template)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(f"line {err.lineno}: {err.message}") from err
    return frozenset(meta.find_undeclared_variables(ast))


def render(
    template: str,
    context: Mapping[str, object],
    *,
    html: bool = False,
    time_limit_s: float = TIME_LIMIT_S,
) -> str:
    """Renders `template` with `context`; any failure is a TemplateProblem naming the cause.

    Output is counted as it is printed (`render_limits`): no render builds more than
    MAX_WORK_CHARS, and the result may not exceed MAX_OUTPUT_CHARS."""
    compiled = _compile(template, html)
    _, token = limits.start(time_limit_s)
    try:
        text = compiled.render(dict(context))
    except jinja2.UndefinedError as err:
        raise TemplateProblem(f"does not render: {err.message}") from err
    except SecurityError as err:
        raise TemplateProblem(f"is refused: {err.message}") from err
    except RecursionError as err:
        raise TemplateProblem("is refused: it nests too deeply") from err
    # A template is code: it can raise whatever an expression can (1 / 0, "a" + 1, ...).
    except Exception as err:
        raise TemplateProblem(f"does not render: {type(err).__name__}: {err}"[:500]) from err
    finally:
        limits.finish(token)
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
