"""The limits a template renders within, enforced while it renders (not on its result).

A template is code written by marketing: a loop, a macro calling itself or one filter argument
can ask for gigabytes or for hours. Each render gets a `Budget` (one per render, found through
a context variable by the sandbox's hooks) and every way a template can repeat work or build
text reports to it *before* the work is done:

- time: `TIME_LIMIT_S` of wall-clock time, checked at every loop iteration, call, filter and
  operator (`tick`): whatever repeats work passes there, and between two checks a template
  can only do a bounded amount of work, as every single operation is bounded by the size
  limits below;
- output: every value printed (in the body, in macros, in `set` blocks) and the template's
  own text wherever a loop repeats it count towards `MAX_WORK_CHARS` as they are produced,
  and so does every string an operator, filter or method builds; the rendered result may
  not exceed `MAX_OUTPUT_CHARS`; no single value may exceed
  `MAX_VALUE_CHARS`, and an operation whose result would is refused before it runs
  (`"x"|center(50000000)`, `s * n`, `s ~ s` doubling in a macro, `"{:>99999999}".format(x)`);
- repetition: `MAX_ITERATIONS` loop iterations in all, loops nested at most
  `MAX_LOOP_NESTING` deep in the source, macros and recursive loops at most `MAX_DEPTH` deep,
  lists built by `*` and `+` at most `MAX_ITEMS` long.

A limit exceeded raises `SecurityError` naming it; `templating.render` reports it as a
TemplateProblem. Outside a render (when Jinja folds constants while compiling) the size checks
still apply; the time and totals have nothing to count against and are skipped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError

TIME_LIMIT_S = 1.0
MAX_OUTPUT_CHARS = 100_000  # far beyond any email
MAX_VALUE_CHARS = MAX_OUTPUT_CHARS  # any one string a template builds
MAX_WORK_CHARS = 10 * MAX_OUTPUT_CHARS  # all text printed or built in one render
MAX_ITEMS = 10_000  # a list built by `*` or `+`; a batch; slices
MAX_ITERATIONS = 10_000  # loop iterations in one render, all loops together
MAX_LOOP_NESTING = 3  # `for` inside `for` inside `for`, in the source
MAX_DEPTH = 10  # macro calls (and recursive loops) in progress at once
MAX_SOURCE_CHARS = 50_000  # a template's own text
MAX_INT_BITS = 4096  # numbers built by * and **: about 1,200 digits


@dataclass(slots=True)
class Budget:
    """What one render may still do."""

    deadline: float
    time_limit_s: float
    iterations: int = 0
    work: int = 0
    depth: int = 0


_CURRENT: ContextVar[Budget | None] = ContextVar("referrals_template_budget", default=None)


def start(time_limit_s: float = TIME_LIMIT_S) -> tuple[Budget, object]:
    """A fresh budget for the render about to run in this thread; `finish(token)` after."""
    budget = Budget(time.monotonic() + time_limit_s, time_limit_s)
    return budget, _CURRENT.set(budget)


def finish(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]


def tick() -> Budget | None:
    """The current budget, after checking the clock (None outside a render)."""
    budget = _CURRENT.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise SecurityError(f"the template took longer than {budget.time_limit_s:g} s")
    return budget


def produced(size: int) -> None:
    """`size` more characters were (or are about to be) built."""
    budget = tick()
    if budget is None:
        return
    budget.work += size
    if budget.work > MAX_WORK_CHARS:
        raise SecurityError(f"the template builds more than {MAX_WORK_CHARS} characters")


def printed(size: int) -> None:
    """`size` characters of output (the body's, a macro's, a `set` block's): counted, without
    the clock (what repeats output, a loop or a call, checks it)."""
    budget = _CURRENT.get()
    if budget is not None:
        budget.work += size
        if budget.work > MAX_WORK_CHARS:
            raise SecurityError(f"the template builds more than {MAX_WORK_CHARS} characters")


def charge(text: str) -> str:
    """The template's own text where a loop repeats it: counted, then passed on."""
    printed(len(text))
    return text


def iterate(iterable: Iterable[Any]) -> Iterator[Any]:
    """A loop's items, each counted against MAX_ITERATIONS and the clock."""
    for item in iterable:
        budget = tick()
        if budget is not None:
            budget.iterations += 1
            if budget.iterations > MAX_ITERATIONS:
                raise SecurityError(f"the template's loops ran more than {MAX_ITERATIONS} times")
        yield item


class Nested:
    """A macro call (or recursive loop) in progress: at most MAX_DEPTH at once."""

    def __enter__(self) -> None:
        budget = tick()
        if budget is not None:
            budget.depth += 1
            if budget.depth > MAX_DEPTH:
                raise SecurityError(f"macros nest deeper than {MAX_DEPTH}")

    def __exit__(self, *exc: object) -> None:
        budget = _CURRENT.get()
        if budget is not None:
            budget.depth -= 1


# -- sizes --------------------------------------------------------------------------------------
def size_of(
    value: object, limit: int = MAX_VALUE_CHARS, _seen: dict[int, tuple[object, int]] | None = None
) -> int:
    """An upper bound of len(str(value)), computed without building it; stops counting once
    past `limit`. Strings inside containers print as their repr: up to 10 characters each."""
    if isinstance(value, str):
        return len(value)
    if value is None or isinstance(value, bool | float):
        return 32
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, Mapping):
        items: Iterable[Any] = value.items()
    elif isinstance(value, list | tuple | set | frozenset) or type(value).__name__.startswith(
        "dict_"
    ):
        items = value  # type: ignore[assignment]
    else:
        return 200  # a macro, a range, a loop: a short repr
    # A container held many times (`[a] * 1000` where a is a big list) is sized once and its
    # size reused; the entry keeps it alive, so its id cannot be reused during this call.
    seen = {} if _seen is None else _seen
    if id(value) in seen:
        return seen[id(value)][1]
    total = 2
    for item in items:
        total += 2 + (
            _repr_size(item, limit) if isinstance(item, str) else size_of(item, limit, seen)
        )
        if total > limit:
            break
    seen[id(value)] = (value, total)
    return total


def _repr_size(text: str, limit: int) -> int:
    if len(text) > limit:
        return len(text)
    return 2 * len(text) + 2 if text.isascii() and text.isprintable() else 10 * len(text) + 2


def refuse_over(size: int, what: str) -> None:
    if size > MAX_VALUE_CHARS:
        raise SecurityError(f"{what} would be longer than {MAX_VALUE_CHARS} characters")


def built(result: Any) -> Any:
    """An operation's result: a string checked against MAX_VALUE_CHARS and counted (the
    caller has checked the clock)."""
    if isinstance(result, str):
        refuse_over(len(result), "the text")
        printed(len(result))
    elif isinstance(result, list | tuple):
        printed(len(result))
    return result


# -- operators ----------------------------------------------------------------------------------
def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuses `left <operator> right` when its result would exceed a limit."""
    if operator == "**":
        if _ints(left, right) and (
            abs(right) > 100 or left.bit_length() * abs(right) > MAX_INT_BITS
        ):
            raise SecurityError("the power is too large")
    elif operator == "*":
        _check_repeat(left, right)
    elif operator == "+":
        if isinstance(left, str) and isinstance(right, str):
            refuse_over(len(left) + len(right), "the text")
        elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
            _refuse_items(len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        refuse_over(percent_size(left, right), "the formatted text")


def _ints(left: Any, right: Any) -> bool:
    return isinstance(left, int) and isinstance(right, int)


def _check_repeat(left: Any, right: Any) -> None:
    if _ints(left, right):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("the number is too large")
        return
    for seq, times in ((left, right), (right, left)):
        if isinstance(times, int):
            if isinstance(seq, str):
                refuse_over(len(seq) * times, "the repeated text")
            elif isinstance(seq, list | tuple):
                _refuse_items(len(seq) * times)


def _refuse_items(count: int) -> None:
    if count > MAX_ITEMS:
        raise SecurityError(f"a list would hold more than {MAX_ITEMS} items")


_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.?)", re.S)


def percent_size(fmt: str, args: Any) -> int:
    """An upper bound of the length of `fmt % args`."""
    total = len(fmt) + size_of(args)
    for match in _PERCENT.finditer(fmt):
        width, precision = match.group(1) or "0", match.group(2) or "0"
        if "*" in (width, precision):
            raise SecurityError("a width given as * is not allowed in %-formatting")
        total += int(width) + int(precision)
        if total > MAX_VALUE_CHARS:
            break
    return total


def spec_size(value: Any, spec: str) -> int:
    """An upper bound of the length of `format(value, spec)` (widths and precisions add)."""
    return size_of(value) + sum(int(n) for n in re.findall(r"\d+", spec)[:8]) + 8


# -- str methods ------------------------------------------------------------------------------
# The methods of str (and Markup) a template may call. Those that can make the text longer
# than a constant factor have a check of the result's length, run before they are.
def _pad(s: str, width: int = 0, *_: Any) -> None:
    if isinstance(width, int):
        refuse_over(max(len(s), width), "the padded text")


def _expandtabs(s: str, tabsize: int = 8) -> None:
    if isinstance(tabsize, int):
        refuse_over(len(s) + s.count("\t") * max(tabsize, 0), "the text")


def _replace(s: str, old: Any = "", new: Any = "", count: Any = -1) -> None:
    if not (isinstance(old, str) and isinstance(new, str)):
        return
    hits = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    grow = len(new) * (6 if hasattr(s, "__html__") else 1) - len(old)  # Markup escapes `new`
    refuse_over(len(s) + hits * max(grow, 0), "the replaced text")


SAFE_STR_METHODS = frozenset(
    """capitalize casefold count endswith find index isalnum isalpha isascii isdecimal isdigit
    isidentifier islower isnumeric isprintable isspace istitle isupper lower lstrip partition
    removeprefix removesuffix rfind rindex rpartition rsplit rstrip split splitlines startswith
    strip swapcase title upper striptags unescape""".split()
)
CHECKED_STR_METHODS: dict[str, Callable[..., None]] = {
    "center": _pad,
    "ljust": _pad,
    "rjust": _pad,
    "zfill": _pad,
    "expandtabs": _expandtabs,
    "replace": _replace,
}


def joined(separator: str, items: Iterable[Any]) -> list[Any]:
    """The items of `separator.join(items)`, listed, after refusing a result too long."""
    listed = list(items)
    produced(len(listed))
    size = sum(size_of(item) for item in listed) + len(separator) * max(len(listed) - 1, 0)
    refuse_over(size, "the joined text")
    return listed
