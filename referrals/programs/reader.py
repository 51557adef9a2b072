"""Reading documents people write: YAML or JSON without silent surprises.

`load` refuses a key given twice: YAML and JSON parsers both keep the last one silently, so by
the time pydantic sees the data the first value is gone and cannot be reported. That is why this
stays hand-written, in front of the pydantic models of `referrals.programs.schema`. PyYAML's
SafeLoader builds no Python objects from tags (`!!python/object` is an error).

Documents nest at most `MAX_NESTING` levels, counted before a parser recurses that deep.
YAML aliases (`*name`, repeating what `&name` anchors) are bounded: at most `MAX_ALIASES` in a
document, an alias may not refer to a node containing it, and the document with its aliases
written out may hold at most `MAX_EXPANDED` nodes and characters. An alias costs nothing to
parse but everything after it (validation, error messages, the canonical JSON) works on the
written-out document: nine nested levels of nine aliases are 387 million values.

Only people write YAML: `referrals program put|validate` and the API's ValidateProgram and
PutProgram read it here. Services read `programs.config.v1`, whose documents are the canonical
JSON `program put` writes, with `load_json` (JSON only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable
from typing import Any

import yaml

MAX_ALIASES = 50
MAX_EXPANDED = 1_000_000
# A program document nests about six levels (notifications.templates.LEAD.en-US.text); the
# parsers recurse per level, and a limit of our own keeps far from the interpreter's.
MAX_NESTING = 32


class _Loader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping, and aliases past the limits."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}  # id of a node -> its size written out
        self._open: list[Any] = []  # the start events of the collections being composed

    # PyYAML's composer is untyped where it matters (its stubs disagree with its code): the
    # overrides take and give Any.
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event: Any = self.peek_event()  # type: ignore[no-untyped-call]
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._alias(target, event.start_mark)
            return super().compose_node(parent, index)
        node = super().compose_node(parent, index)
        if isinstance(node, yaml.ScalarNode):
            self._grow(len(node.value) + 1, node.start_mark)
        return node

    def compose_sequence_node(self, anchor: Any) -> Any:
        return self._collection(super().compose_sequence_node, anchor)

    def compose_mapping_node(self, anchor: Any) -> Any:
        return self._collection(super().compose_mapping_node, anchor)

    def _collection(self, compose: Callable[[Any], Any], anchor: Any) -> Any:
        # PyYAML registers an anchor before composing its children; until they are done the
        # node is open, and an alias to it would make the document contain itself.
        if len(self._open) >= MAX_NESTING:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nests deeper than {MAX_NESTING} levels (the limit)",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        self._open.append(self.peek_event())  # type: ignore[no-untyped-call]
        try:
            node = compose(anchor)
        finally:
            self._open.pop()
        self._grow(1, node.start_mark)
        return node

    def _alias(self, target: yaml.Node, mark: yaml.Mark) -> None:
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_ALIASES} aliases (the limit in a document)", mark
            )
        if any(target.start_mark.index == e.start_mark.index for e in self._open):
            raise yaml.composer.ComposerError(
                None, None, "an alias may not refer to a node containing it", mark
            )
        self._grow(self._size(target), mark)

    def _grow(self, size: int, mark: yaml.Mark) -> None:
        self._expanded += size
        if self._expanded > MAX_EXPANDED:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"with its aliases (*name) written out, the document holds more than "
                f"{MAX_EXPANDED} nodes and characters (the limit)",
                mark,
            )

    def _size(self, node: yaml.Node) -> int:
        """Nodes and characters of `node` with its aliases written out (each node sized once)."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.ScalarNode):
            size = len(node.value) + 1
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._size(child) for child in node.value)
        else:
            size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
        self._sizes[id(node)] = size
        return size

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: list[object] = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.append(key)
        return super().construct_mapping(node, deep)


class DuplicateKey(ValueError):
    """A JSON object naming one key twice."""


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise DuplicateKey(f"key {key!r} appears twice")
    return dict(pairs)


def load(text: str) -> object:
    """YAML, or JSON when the text starts with `{` (JSON's own errors say more)."""
    if text.lstrip().startswith("{"):
        return load_json(text)
    return yaml.load(text, Loader=_Loader)


class TooDeep(ValueError):
    """A JSON document nesting deeper than MAX_NESTING."""


_JSON_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_BRACKET = re.compile(r"[\[\]{}]")


def load_json(text: str) -> object:
    """JSON only (a document from a topic: what `program put` wrote), a key twice refused."""
    depth = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_NESTING:
            raise TooDeep(f"nests deeper than {MAX_NESTING} levels (the limit)")
    return json.loads(text, object_pairs_hook=_unique)
