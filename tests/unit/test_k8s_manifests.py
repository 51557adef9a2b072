"""deploy/k8s: every manifest valid against the Kubernetes, Strimzi and KEDA schemas (kubeconform,
offline, schemas in tests/data/kubeconform), each overlay rendered by kustomize and valid too,
and the manifests saying what the system needs: a Deployment per service with its probes,
resources and PodDisruptionBudget, autoscaling on consumer lag up to the partition count, every
topic of the catalogue as a KafkaTopic, and KafkaUsers whose ACLs are the contract's Security
table (transcribed below; CONTRACT.md is its source).

kubeconform and kustomize are Go programs `make setup` builds into .venv/tools/bin from the Go
module proxy; without them these tests fail, naming the command that installs them."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from referrals.contract import acls
from referrals.contract.topics import (
    PAYOUTS,
    PAYOUTS_V2,
    TopicNames,
    physical_topics,
)
from referrals.tools.doctor.targets import SERVICES, service

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
SCHEMAS = REPO / "tests" / "data" / "kubeconform"
LOCATION = str(SCHEMAS / "{{ .ResourceKind }}{{ .KindSuffix }}.json")
TARGET_MEMORY = 250_000_000  # bytes: the 250 MB per service target (README, Benchmarks)
STREAM_SERVICES = ("attribution", "rewards", "notifications")


def _tool(name: str) -> str:
    path = Path(os.environ.get(name.upper()) or REPO / ".venv" / "tools" / "bin" / name)
    if not path.is_file():
        pytest.fail(f"{name} is missing at {path}: `make setup` builds it (Go module proxy)")
    return str(path)


def _kubeconform(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [_tool("kubeconform"), "-strict", "-summary", "-output", "json"]
    command += ["-schema-location", LOCATION, *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)


def _assert_valid(done: subprocess.CompletedProcess[str], what: str) -> int:
    report = json.loads(done.stdout)
    bad = [r for r in report["resources"] if r["status"] != "statusValid"]
    assert done.returncode == 0 and not bad, f"{what}: {bad or done.stderr}"
    summary = report["summary"]
    assert summary["skipped"] == 0 and summary["errors"] == 0 and summary["invalid"] == 0
    return int(summary["valid"])


def _manifests() -> list[Path]:
    return sorted(p for p in BASE.rglob("*.yaml") if p.name != "kustomization.yaml")


def _docs(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        yield from (d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)


@functools.cache
def _kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _docs(_manifests()) if d["kind"] == kind}


# -- validation against the schemas -------------------------------------------------------------
def test_every_manifest_is_valid_against_the_kubernetes_strimzi_and_keda_schemas() -> None:
    files = _manifests()
    valid = _assert_valid(_kubeconform(*map(str, files)), "deploy/k8s/base")
    assert valid == len(list(_docs(files)))


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_each_overlay_renders_and_is_valid(overlay: Path) -> None:
    built = subprocess.run(
        [_tool("kustomize"), "build", str(overlay)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    rendered = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert _assert_valid(_kubeconform("-", stdin=built.stdout), overlay.name) == len(rendered)
    namespaces = {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"}
    assert len(namespaces) == 1 and None not in namespaces


def test_a_misspelt_field_fails_the_validation() -> None:
    text = (BASE / "app" / "rewards.yaml").read_text(encoding="utf-8")
    done = _kubeconform("-", stdin=text.replace("livenessProbe:", "livenesProbe:"))
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["summary"]["invalid"] == 1


def test_the_base_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(str(p.relative_to(BASE)) for p in _manifests())


def test_the_schemas_readme_says_where_each_schema_came_from() -> None:
    readme = (REPO / "tests" / "data" / "README.md").read_text(encoding="utf-8")
    for schema in SCHEMAS.glob("*.json"):
        assert schema.stem in readme, f"tests/data/README.md does not name {schema.name}"


# -- the services -------------------------------------------------------------------------------
def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _quantity(text: str) -> int:
    units = {"Mi": 2**20, "Gi": 2**30, "M": 10**6, "G": 10**9}
    for unit, size in units.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * size
    return int(text)


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_with_probes_on_its_metrics_port_and_bounded_memory(name: str) -> None:
    deployment = _kind("Deployment")[name]
    container = _container(deployment)
    assert container["args"] == ["referrals", "run", name]
    env = {e["name"]: e.get("value") for e in container["env"]}
    port = int(env[f"{name.upper()}_METRICS_PORT"])
    assert service(name, {}).url.endswith(f":{port}")  # the README's port, doctor's default
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    resources = container["resources"]
    assert _quantity(resources["requests"]["memory"]) == TARGET_MEMORY
    limit = _quantity(resources["limits"]["memory"])
    assert TARGET_MEMORY <= limit <= 1.25 * TARGET_MEMORY
    assert env["KAFKA_SASL_USERNAME"] == name  # its own KafkaUser
    budget = _kind("PodDisruptionBudget")[name]["spec"]
    assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("name", STREAM_SERVICES)
def test_a_stream_service_scales_on_its_group_lag_up_to_the_partition_count(name: str) -> None:
    scaled = _kind("ScaledObject")[name]["spec"]
    assert scaled["scaleTargetRef"]["name"] == name
    assert "replicas" not in _kind("Deployment")[name]["spec"]  # KEDA owns the count
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == service(name, {}).group
    assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
    partitions = {t["spec"]["partitions"] for t in _kind("KafkaTopic").values()}
    assert len(partitions) == 1 and scaled["minReplicaCount"] >= 1
    assert scaled["maxReplicaCount"] <= partitions.pop()
    auth = _kind("TriggerAuthentication")[trigger["authenticationRef"]["name"]]["spec"]
    assert {r["parameter"] for r in auth["secretTargetRef"]} == {"password", "ca"}


# -- Kafka --------------------------------------------------------------------------------------
def test_kafka_runs_kraft_on_a_node_pool_with_scram_users_and_acls() -> None:
    [(name, kafka)] = _kind("Kafka").items()
    pools = [p for p in _kind("KafkaNodePool").values()]
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == name for p in pools)
    roles = {r for p in pools for r in p["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    assert sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"]) >= 3
    spec = kafka["spec"]["kafka"]
    assert spec["authorization"]["type"] == "simple"
    assert all(lis["authentication"]["type"] == "scram-sha-512" for lis in spec["listeners"])
    assert all(lis["tls"] for lis in spec["listeners"])
    config = spec["config"]
    assert config["min.insync.replicas"] == 2 and config["default.replication.factor"] == 3
    assert config["transaction.state.log.min.isr"] == 2


def test_every_topic_is_a_kafka_topic_as_the_catalogue_makes_it() -> None:
    expected = dict(physical_topics(TopicNames("")))
    for name in STREAM_SERVICES:
        expected |= {c: {"cleanup.policy": "compact"} for c in service(name, {}).changelogs}
    topics = _kind("KafkaTopic")
    assert set(topics) == set(expected)
    for name, topic in topics.items():
        spec = topic["spec"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "referrals"
        assert (spec["replicas"], spec["partitions"]) == (3, 6), name
        assert spec["config"] == {**expected[name], "min.insync.replicas": "2"}, name


Binding = tuple[str, str, str, str, str]  # (user, resource type, name, pattern, operation)
_TYPES = {"TOPIC": "topic", "GROUP": "group", "TRANSACTIONAL_ID": "transactionalId"}
_PATTERNS = {"LITERAL": "literal", "PREFIXED": "prefix"}


def _table_bindings() -> set[Binding]:
    """The contract's Security table as `referrals acl apply` applies it (`acls.bindings`,
    itself tested against the processors' inputs, stores and internal topics), in Strimzi's
    terms."""
    return {
        (
            b.principal.removeprefix("User:"),
            _TYPES[b.resource_type.name],
            b.name,
            _PATTERNS[b.pattern.name],
            b.operation.name.capitalize(),
        )
        for b in acls.bindings()
    }


def _user_bindings() -> set[Binding]:
    out: set[Binding] = set()
    for name, user in _kind("KafkaUser").items():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        for acl in user["spec"].get("authorization", {}).get("acls", ()):
            assert acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*"
            res = acl["resource"]
            out |= {
                (name, res["type"], res["name"], res["patternType"], op) for op in acl["operations"]
            }
    return out


def test_the_kafka_users_are_the_contract_s_principals_and_their_acls_its_table() -> None:
    assert set(_kind("KafkaUser")) == {*acls.PRINCIPALS, "admin"}
    assert _user_bindings() == _table_bindings()


def test_the_only_super_user_is_the_administrator_and_it_has_no_acls_of_its_own() -> None:
    [kafka] = _kind("Kafka").values()
    assert kafka["spec"]["kafka"]["authorization"]["superUsers"] == ["admin"]
    assert "authorization" not in _kind("KafkaUser")["admin"]["spec"]


def test_only_the_rewards_service_may_write_a_payout() -> None:
    writers = {b[0] for b in _user_bindings() if b[2] in (PAYOUTS, PAYOUTS_V2) and b[4] == "Write"}
    assert writers == {"rewards"}
