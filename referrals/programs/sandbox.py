"""The Jinja2 environment marketing's templates run in: a sandbox with limits built in.

`ImmutableSandboxedEnvironment` already keeps templates away from Python internals (no
attribute starting with `_`, no mutation of lists and dicts) and we give it no loader (no
include, import or extends) and only the `range` and `dict` globals. This adds the limits of
`render_limits`, at the points where a template does work:

- the code generator wraps every loop's iterable (`render_limits.iterate`: iterations and the
  clock), the template's text where a loop repeats it (`charge`), and every `~` concatenation
  (sized before it is built), and refuses loops nested deeper than MAX_LOOP_NESTING; every
  `{{ }}` value is counted as it is printed (`_finalize`);
- the operators `+ * % **` are checked before they run (`call_binop`);
- every call goes through `call`: macros (nesting depth), recursive loops, the two globals,
  the read-only methods of dicts and lists, and the methods of text on a list
  (`SAFE_STR_METHODS`, or checked first: `CHECKED_STR_METHODS`); anything else is refused;
- `str.format` runs with a formatter that sizes each field before formatting it;
- every filter is wrapped (`template_filters`): a check before it runs for those whose
  arguments decide the size of the result (center, indent, wordwrap, replace, join, format,
  batch, slice, sum, tojson; a list turned into text), and a count of what it built after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import update_wrapper
from string import Formatter
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext, Macro, Undefined
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    safe_range,
)
from markupsafe import Markup

from referrals.programs import render_limits as limits
from referrals.programs.template_filters import guarded_filters

_MAX_RANGE = 1_000  # one loop over range() has no business running longer


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with the limits' hooks written into the template's code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._iterables: list[nodes.Node] = []  # the iterables of the loops being written

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if len(self._iterables) >= limits.MAX_LOOP_NESTING:
            self.fail(f"loops nest deeper than {limits.MAX_LOOP_NESTING}", node.lineno)
        self._iterables.append(node.iter)
        try:
            super().visit_For(node, frame)
        finally:
            self._iterables.pop()

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if not any(node is iterable for iterable in self._iterables):
            return super().visit(node, *args, **kwargs)
        # A loop's iterable: counted as the loop consumes it (iterations and the clock).
        self.write("environment.limits.iterate(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.concat_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        # The template's own text, counted where a loop repeats it; elsewhere it is bounded
        # by the source's length. (`{{ }}` values are counted by `_finalize`.)
        text = super()._output_const_repr(group)
        return f"environment.limits.charge({text})" if self._iterables else text


class _BoundedFormatter(SandboxedFormatter):
    """`str.format` in the sandbox, refusing before formatting a field that would make the
    result longer than the limit (`"{:>99999999}".format(x)`)."""

    def __init__(self, env: jinja2.Environment, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._size = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        self._size += limits.spec_size(value, format_spec)
        limits.refuse_over(self._size, "the formatted text")
        return super().format_field(value, format_spec)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        limits.refuse_over(limits.size_of(value), "the formatted field")
        return super().convert_field(value, conversion)


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


def _small_range(*args: int) -> range:
    rng = safe_range(*args)
    if len(rng) > _MAX_RANGE:
        raise SecurityError(f"range() is limited to {_MAX_RANGE} items")
    return rng


def _finalize(value: Any) -> Any:
    """What `{{ }}` prints (in the body, a macro, a `set` block), counted; a list or dict is
    sized before it is turned into text."""
    if type(value) is str:
        limits.printed(len(value))
    else:
        size = limits.size_of(value)
        limits.refuse_over(size, "the printed value")
        limits.printed(size)
    return value


class Environment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"+", "*", "%", "**"})
    limits = limits

    def __init__(self, *, html: bool) -> None:
        # trim_blocks/lstrip_blocks: a `{% if %}` line leaves no blank line behind in plain text.
        super().__init__(
            undefined=jinja2.StrictUndefined,
            autoescape=html,
            loader=None,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_finalize,
        )
        self.globals = {"range": _small_range, "dict": dict}
        self.filters = guarded_filters()

    @staticmethod
    def concat_parts(parts: tuple[Any, ...]) -> tuple[Any, ...]:
        size = sum(limits.size_of(part) for part in parts)
        limits.refuse_over(size, "the joined text")
        limits.produced(size)
        return parts

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limits.tick()
        limits.check_binop(operator, left, right)
        return limits.built(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        limits.tick()
        if isinstance(__obj, Macro):
            with limits.Nested():
                return __self._call(__context, __obj, args, kwargs)
        if isinstance(__obj, LoopContext):  # a recursive loop going one level down
            if __obj.depth >= limits.MAX_DEPTH:
                raise SecurityError(f"recursive loops nest deeper than {limits.MAX_DEPTH}")
            args = tuple(limits.iterate(a) for a in args[:1]) + args[1:]
            return __self._call(__context, __obj, args, kwargs)
        # Jinja passes the loop's and block's variables along, for functions taking the context.
        _allowed(__obj, args, {k: v for k, v in kwargs.items() if k not in _JINJA_KWARGS})
        if isinstance(getattr(__obj, "__self__", None), str) and __obj.__name__ == "join":
            args = (limits.joined(__obj.__self__, args[0]), *args[1:]) if args else args
        return __self._call(__context, __obj, args, kwargs)

    def _call(self, context: Context, obj: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
        return limits.built(super().call(context, obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `format_map`, with the bounded formatter (Jinja's own, otherwise)."""
        if not callable(value) or getattr(value, "__name__", "") not in ("format", "format_map"):
            return None
        owner = getattr(value, "__self__", None)
        if not isinstance(owner, str):
            return None
        formatter: Formatter
        if isinstance(owner, Markup):
            formatter = _BoundedEscapeFormatter(self, escape=owner.escape)
        else:
            formatter = _BoundedFormatter(self)
        is_map, text_type = value.__name__ == "format_map", type(owner)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                return text_type(formatter.vformat(owner, (), args[0]))
            return text_type(formatter.vformat(owner, args, kwargs))

        checked = update_wrapper(wrapper, value)
        checked.referrals_bounded_format = True  # type: ignore[attr-defined]
        return checked


_JINJA_KWARGS = ("_loop_vars", "_block_vars")
_READ_ONLY = {
    "loop": ("cycle", "changed"),
    "dict": ("items", "keys", "values", "get"),
    "list": ("index", "count"),
}


def _kind(owner: Any) -> str:
    if isinstance(owner, LoopContext):
        return "loop"
    if isinstance(owner, dict):
        return "dict"
    return "list" if isinstance(owner, list | tuple) else ""


def _allowed(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuses a call the sandbox has no business making; checks the size of a text method's
    result first where its arguments decide it."""
    if obj is _small_range or obj is dict or isinstance(obj, Undefined):
        return  # (calling an undefined value raises its own error)
    if getattr(obj, "referrals_bounded_format", False):
        return
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if isinstance(owner, str):
        check = limits.CHECKED_STR_METHODS.get(name)
        if check is not None:
            check(owner, *args, **kwargs)
            return
        if name in limits.SAFE_STR_METHODS or name == "join":
            return
    elif name in _READ_ONLY.get(_kind(owner), ()):
        return
    what = f"{type(owner).__name__}.{name}" if owner is not None else type(obj).__name__
    raise SecurityError(f"calling {what} is not allowed in a template")
