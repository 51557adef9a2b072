"""Reading documents people write: YAML or JSON without silent surprises.

`load` refuses a key given twice: YAML and JSON parsers both keep the last one silently, so by
the time pydantic sees the data the first value is gone and cannot be reported. That is why this
stays hand-written, in front of the pydantic models of `referrals.programs.schema`. PyYAML's
SafeLoader builds no Python objects from tags (`!!python/object` is an error).
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping."""

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
        return json.loads(text, object_pairs_hook=_unique)
    return yaml.load(text, Loader=_Loader)
