"""Jinja's filters as templates get them: each checked before it runs where its arguments decide
the size of its result, and its result counted after (`render_limits`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.utils import _PassArg

from referrals.programs import render_limits as limits


def guarded_filters() -> dict[str, Callable[..., Any]]:
    """Every built-in filter, guarded."""
    return {name: _guarded(name, func) for name, func in FILTERS.items()}


def _center(value: Any, width: Any = 80) -> None:
    if isinstance(width, int):
        limits.refuse_over(max(limits.size_of(value), width), "the centred text")


def _indent(s: Any, width: Any = 4, first: Any = False, blank: Any = False) -> None:
    step = width if isinstance(width, int) else limits.size_of(width)
    text = str(s) if isinstance(s, str) else ""
    limits.refuse_over(len(text) + (text.count("\n") + 1) * max(step, 0), "the indented text")


def _wordwrap(s: Any, width: Any = 79, _b: Any = True, wrapstring: Any = None, *_: Any) -> None:
    text = s if isinstance(s, str) else ""
    lines = len(text) // max(width, 1) + 1 if isinstance(width, int) else len(text)
    joiner = len(wrapstring) if isinstance(wrapstring, str) else 2
    limits.refuse_over(len(text) + lines * joiner, "the wrapped text")


def _replace(s: Any, old: Any = "", new: Any = "", count: Any = None) -> None:
    limits.CHECKED_STR_METHODS["replace"](str(s) if isinstance(s, str) else "", old, new, count)


def _join(value: Any, d: Any = "", attribute: Any = None) -> None:
    size = sum(limits.size_of(v) for v in value) + limits.size_of(d) * len(value)
    limits.refuse_over(size, "the joined text")


def _format(value: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(value, str):
        limits.refuse_over(limits.percent_size(value, kwargs or args), "the formatted text")


def _most(n: Any, what: str) -> None:
    if isinstance(n, int) and n > limits.MAX_ITEMS:
        raise SecurityError(f"{what} is limited to {limits.MAX_ITEMS}")


def _sum(iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if not isinstance(start, int | float):
        raise SecurityError("sum() adds numbers only")


def _json(value: Any, indent: Any = None) -> None:
    if indent is not None and not (isinstance(indent, int) and 0 <= indent <= 8):
        raise SecurityError("tojson's indent is limited to 8")


_BEFORE: dict[str, Callable[..., None]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "join": _join,
    "format": _format,
    "batch": lambda value, linecount=0, *_, **__: _most(linecount, "a batch"),
    "slice": lambda value, slices=0, *_, **__: _most(slices, "the number of slices"),
    "sum": _sum,
    "tojson": _json,
}
# Filters that turn their value into text: a list or dict is sized first (times how much the
# filter's own escaping or quoting can add), since str() of `[s] * 1000` is 1000 copies of s.
_AS_TEXT = dict.fromkeys(
    """capitalize center e escape forceescape format indent lower replace string striptags title
    trim truncate upper urlencode urlize wordcount wordwrap""".split(),
    1,
) | {"pprint": 2, "tojson": 6, "xmlattr": 6}


def _guarded(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, with its checks before and its result counted after."""
    before = _BEFORE.get(name)
    factor = _AS_TEXT.get(name)
    # A filter marked pass_context/pass_eval_context/pass_environment gets Jinja's object
    # first; the value it filters comes second.
    at = 1 if _PassArg.from_obj(func) is not None else 0

    if before is None and factor is None and name != "join":

        def counted(*args: Any, **kwargs: Any) -> Any:  # the common case, kept short
            limits.tick()
            return limits.built(func(*args, **kwargs))

        return update_wrapper(counted, func)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        limits.tick()
        if len(args) > at:
            value = args[at]
            if name == "join" and not isinstance(value, list | tuple):
                value = list(value)  # a generator's items are sized before they are joined
                args = (*args[:at], value, *args[at + 1 :])
            elif factor is not None and not isinstance(value, str | int | float):
                limits.refuse_over(factor * limits.size_of(value), "the value as text")
            if before is not None:
                before(*args[at:], **kwargs)
        return limits.built(func(*args, **kwargs))

    return update_wrapper(guarded, func)
