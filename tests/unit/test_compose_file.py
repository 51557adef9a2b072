"""docker-compose.yml conforms to the Compose specification and wires the whole system together.

Validated statically (no Docker engine) against tests/data/compose_spec.json, taken unchanged
from the docker-compose 1.29.2 wheel.
"""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import Draft201909Validator, validator_for

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SPEC = ROOT / "tests" / "data" / "compose_spec.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SERVICE_NAMES = {"attribution", "rewards", "notifications", "api"}


def _load_yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path} is not a YAML mapping"
    return document


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def validator() -> Validator:
    schema = json.loads(COMPOSE_SPEC.read_text(encoding="utf-8"))
    # The schema declares draft 2019-09 as "http://json-schema.org/draft/2019-09/schema#", a
    # spelling jsonschema does not recognise, so the declared draft is also given as the default.
    validator_class = validator_for(schema, default=Draft201909Validator)
    validator_class.check_schema(schema)
    return validator_class(schema)


@pytest.fixture(scope="module")
def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Long-running services built from the application image, keyed by `referrals run` target."""
    built = [s for s in compose["services"].values() if "build" in s]
    return {_command(s)[2]: s for s in built if _command(s)[:2] == ["referrals", "run"]}


def test_compose_file_conforms_to_the_compose_specification(
    compose: dict[str, Any], validator: Validator
) -> None:
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_a_broken_compose_file_is_rejected_by_the_specification(
    compose: dict[str, Any], validator: Validator
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["kafka"]["ports"] = 9092
    error = best_match(validator.iter_errors(broken))
    assert error is not None
    assert list(error.absolute_path) == ["services", "kafka", "ports"]


def test_every_built_service_runs_an_existing_service_package_or_creates_topics(
    compose: dict[str, Any], app_services: dict[str, dict[str, Any]]
) -> None:
    for name, service in compose["services"].items():
        if "build" in service and _command(service)[:2] != ["referrals", "run"]:
            assert _command(service) == ["referrals", "topics", "create"], name
    assert set(app_services) == SERVICE_NAMES
    for target in app_services:
        assert (ROOT / "services" / target / "__init__.py").is_file(), target


def test_every_app_service_publishes_its_metrics_port_and_is_scraped_by_prometheus(
    app_services: dict[str, dict[str, Any]],
) -> None:
    scrape_configs = _load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
    scraped = {
        (job.get("metrics_path", "/metrics"), target)
        for job in scrape_configs
        for static in job["static_configs"]
        for target in static["targets"]
    }
    for name, service in app_services.items():
        env = _environment(service)
        port = env[f"{name.upper()}_METRICS_PORT"]
        assert env[f"{name.upper()}_METRICS_HOST"] == "0.0.0.0", name
        assert f"{port}:{port}" in [str(p) for p in service["ports"]], name
        assert ("/metrics", f"{name}:{port}") in scraped, name
        assert f"http://localhost:{port}/healthz" in " ".join(service["healthcheck"]["test"])


def test_the_dockerfile_exists_and_copies_the_schemas(compose: dict[str, Any]) -> None:
    builds = [s["build"] for s in compose["services"].values() if "build" in s]
    assert builds
    for build in builds:
        assert build.get("dockerfile") == "deploy/docker/Dockerfile"
        dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), dockerfile
        lines = dockerfile.read_text(encoding="utf-8").splitlines()
        assert any(line.split()[:2] == ["COPY", "schemas/"] for line in lines), dockerfile


def test_the_api_serves_grpc_with_the_repositorys_tokens_file_mounted(
    app_services: dict[str, dict[str, Any]],
) -> None:
    api = app_services["api"]
    env = _environment(api)
    assert (env["API_GRPC_HOST"], env["API_GRPC_PORT"]) == ("0.0.0.0", "9300")
    assert "9300:9300" in [str(p) for p in api["ports"]]
    mounts = dict(str(v).split(":", 2)[:2] for v in api["volumes"])
    source = next(src for src, target in mounts.items() if target == env["API_TOKENS_FILE"])
    assert (ROOT / source).is_file()


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to the compose file) of a service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        out[target] = source
    return out


def test_prometheus_loads_the_alert_rules_mounted_beside_its_config(
    compose: dict[str, Any],
) -> None:
    mounts = _mounts(compose["services"]["prometheus"])
    config_dir = Path("/etc/prometheus")
    config = _load_yaml(PROMETHEUS_CONFIG)
    assert mounts[str(config_dir / "prometheus.yml")] == "./deploy/prometheus/prometheus.yml"
    for rule_file in config["rule_files"]:
        source = mounts[str(config_dir / rule_file)]  # Prometheus resolves it beside its config
        assert (ROOT / source).is_file(), source


def test_grafana_is_provisioned_with_the_dashboards_and_the_prometheus_data_source(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    mounts = _mounts(grafana)
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    assert "prometheus" in grafana["depends_on"]
    [provider] = _load_yaml(provisioning / "dashboards" / "referrals.yml")["providers"]
    dashboards = ROOT / mounts[provider["options"]["path"]]
    assert sorted(p.name for p in dashboards.glob("*.json")), dashboards
    home = _environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent == Path(provider["options"]["path"])
    assert (dashboards / Path(home).name).is_file()
    [source] = _load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert "9090:9090" in [str(p) for p in compose["services"]["prometheus"]["ports"]]
    for path in dashboards.glob("*.json"):
        uids = {t["datasource"]["uid"] for t in _targets(json.loads(path.read_text()))}
        assert uids == {source["uid"]}, path


def _targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_unsubscribe_secret_must_come_from_the_operator_never_from_the_file(
    app_services: dict[str, dict[str, Any]],
) -> None:
    # `${VAR:?message}`: docker compose refuses to start without it; no secret is written here.
    secret = _environment(app_services["notifications"])["NOTIFICATIONS_UNSUBSCRIBE_SECRET"]
    assert secret.startswith("${NOTIFICATIONS_UNSUBSCRIBE_SECRET:?") and secret.endswith("}")
