"""Makes the JSON schemas kubeconform validates deploy/k8s against (tests/data/README.md says
where each input came from). Not run by the tests: run it by hand to refresh the schemas.

    python make_schemas.py kubernetes _definitions.json OUT GROUP/VERSION/KIND...
        Kubernetes' own kinds, as yannh/kubernetes-json-schema's "standalone-strict" flavour
        does: the kind's definition with every $ref inlined, `additionalProperties: false` on
        every object that lists its properties (the root too), apiVersion and kind pinned.
    python make_schemas.py slim FILE...
        Drops the `description` strings (they take no part in validation) and rewrites the
        file with sorted keys, so the schemas stay small and diff well. Run on the output of
        kubeconform's scripts/openapi2jsonschema.py for the CRDs, and on the files above.

Files are named as kubeconform looks them up with the schema location
`tests/data/kubeconform/{{ .ResourceKind }}{{ .KindSuffix }}.json`: `deployment-apps-v1.json`,
`service-v1.json`, `kafka-kafka-v1.json` (the first part of the group, then the version).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def strict(schema: Any) -> Any:
    """`additionalProperties: false` wherever properties are listed and nothing else is said
    (kubeconform's openapi2jsonschema.additional_properties, applied to the root too)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def inline(schema: Any, definitions: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """`schema` with each `#/definitions/NAME` reference replaced by the definition itself."""
    if isinstance(schema, list):
        return [inline(value, definitions, seen) for value in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            raise ValueError(f"{name} refers to itself: cannot inline it")
        rest = {k: inline(v, definitions, seen) for k, v in schema.items() if k != "$ref"}
        return {**inline(definitions[name], definitions, (*seen, name)), **rest}
    return {key: inline(value, definitions, seen) for key, value in schema.items()}


def slim(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            key: slim(value)
            for key, value in schema.items()
            if not (key == "description" and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [slim(value) for value in schema]
    return schema


def write(path: Path, schema: Any) -> None:
    path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def kubernetes(definitions_file: Path, out: Path, kinds: list[str]) -> None:
    definitions = json.loads(definitions_file.read_text(encoding="utf-8"))["definitions"]
    for wanted in kinds:
        *groups, version, kind = wanted.split("/")  # apps/v1/Deployment, v1/Service
        group = "/".join(groups)
        name = next(
            name
            for name, schema in definitions.items()
            if {"group": group, "version": version, "kind": kind}
            in schema.get("x-kubernetes-group-version-kind", [])
        )
        schema = strict(inline(definitions[name], definitions))
        api_version = f"{group}/{version}" if group else version
        schema["properties"]["apiVersion"]["enum"] = [api_version]
        schema["properties"]["kind"]["enum"] = [kind]
        schema["$schema"] = "http://json-schema.org/schema#"
        suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
        write(out / f"{kind.lower()}{suffix}.json", slim(schema))


def main(argv: list[str]) -> None:
    if argv[:1] == ["kubernetes"] and len(argv) >= 4:
        kubernetes(Path(argv[1]), Path(argv[2]), argv[3:])
    elif argv[:1] == ["slim"]:
        for name in argv[1:]:
            path = Path(name)
            write(path, slim(json.loads(path.read_text(encoding="utf-8"))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
