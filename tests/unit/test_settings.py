"""Settings come from `<PREFIX>_<FIELD>` environment variables, read once; defaults fill the rest,
and a value that does not parse names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from referrals.platform.errors import ConfigError
from referrals.platform.settings import EnvSettings, KafkaSettings, ServiceSettings, load


class DemoSettings(EnvSettings):
    port: int = 8000
    ratio: float = 0.5
    enabled: bool = False
    name: str = "demo"
    token: str | None = "default-token"
    limit: int | None = None
    state_dir: Path = Path(".local/demo")


class ReportSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REPORT_")

    port: int = 8000


class Unsupported(EnvSettings):
    hosts: list[str] | None = None
    tags: tuple[str, ...] = ()


def test_unset_variables_keep_the_defaults() -> None:
    assert load(DemoSettings, "DEMO", {}) == DemoSettings()


def test_each_type_is_read_from_its_prefixed_variable() -> None:
    env = {
        "DEMO_PORT": "9100",
        "DEMO_RATIO": "0.25",
        "DEMO_ENABLED": "true",
        "DEMO_NAME": "rewards",
        "DEMO_TOKEN": "s3cret",
        "DEMO_LIMIT": "7",
        "DEMO_STATE_DIR": "/var/lib/referrals",
    }
    assert load(DemoSettings, "DEMO", env) == DemoSettings(
        port=9100,
        ratio=0.25,
        enabled=True,
        name="rewards",
        token="s3cret",
        limit=7,
        state_dir=Path("/var/lib/referrals"),
    )


def test_variables_with_another_prefix_are_ignored() -> None:
    assert load(DemoSettings, "DEMO", {"OTHER_PORT": "1", "PORT": "2", "DEMOPORT": "3"}) == (
        DemoSettings()
    )


@pytest.mark.parametrize(
    "spelling", ["1", "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", " true "]
)
def test_every_spelling_of_true_is_true(spelling: str) -> None:
    assert load(DemoSettings, "DEMO", {"DEMO_ENABLED": spelling}).enabled is True


@pytest.mark.parametrize(
    "spelling", ["0", "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", " off "]
)
def test_every_spelling_of_false_is_false(spelling: str) -> None:
    settings = load(DemoSettings, "DEMO", {"DEMO_ENABLED": spelling})
    assert settings.enabled is False


@pytest.mark.parametrize("spelling", ["", "maybe", "2", "y", "enabled"])
def test_anything_else_for_a_bool_is_a_config_error_naming_the_variable(spelling: str) -> None:
    with pytest.raises(ConfigError, match="DEMO_ENABLED"):
        load(DemoSettings, "DEMO", {"DEMO_ENABLED": spelling})


def test_an_empty_string_makes_an_optional_setting_none() -> None:
    settings = load(DemoSettings, "DEMO", {"DEMO_TOKEN": "", "DEMO_LIMIT": ""})
    assert settings.token is None
    assert settings.limit is None


def test_an_optional_int_is_still_parsed_as_an_int() -> None:
    assert load(DemoSettings, "DEMO", {"DEMO_LIMIT": "12"}).limit == 12


def test_an_empty_string_for_a_plain_str_is_the_empty_string() -> None:
    assert load(DemoSettings, "DEMO", {"DEMO_NAME": ""}).name == ""


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEMO_PORT", "eighty"),
        ("DEMO_PORT", "80.5"),
        ("DEMO_PORT", ""),
        ("DEMO_RATIO", "half"),
        ("DEMO_LIMIT", "many"),
    ],
)
def test_a_value_that_does_not_parse_is_a_config_error_naming_the_variable(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(DemoSettings, "DEMO", {variable: value})
    assert variable in str(caught.value)
    assert repr(value) in str(caught.value)
    assert caught.value.reason == "CONFIG"


def test_a_list_setting_that_is_not_json_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="UNS_TAGS"):
        load(Unsupported, "UNS", {"UNS_TAGS": "a,b"})


def test_building_settings_with_keywords_reads_no_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_PORT", "9200")
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", "from-the-shell.")
    assert DemoSettings(name="by-hand") == DemoSettings(port=8000, name="by-hand")
    assert KafkaSettings(bootstrap_servers="b:9092").topic_prefix == ""


def test_only_the_upper_case_variable_name_counts() -> None:
    assert load(DemoSettings, "DEMO", {"demo_port": "1", "Demo_Port": "2"}) == DemoSettings()


def test_load_defaults_to_the_class_s_own_prefix() -> None:
    settings = load(ReportSettings, env={"REPORT_PORT": "9300", "DEMO_PORT": "1"})
    assert settings.port == 9300


def test_a_bad_value_in_a_service_s_settings_names_the_service_s_variable() -> None:
    with pytest.raises(ConfigError, match="REPORT_MAX_BATCH='lots'"):
        load(ReportSettings, env={"REPORT_MAX_BATCH": "lots"})


def test_settings_are_immutable() -> None:
    settings = load(DemoSettings, "DEMO", {})
    with pytest.raises(ValidationError, match="frozen"):
        settings.port = 1


def test_load_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_PORT", "9200")
    assert load(DemoSettings, "DEMO").port == 9200


def test_kafka_settings_read_kafka_bootstrap_servers() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "broker-1:9093,broker-2:9093", "KAFKA_TOPIC_PREFIX": "t1."}
    settings = KafkaSettings.from_env(env)
    assert settings.bootstrap_servers == "broker-1:9093,broker-2:9093"
    assert settings.topic_prefix == "t1."
    assert settings.security_protocol == "PLAINTEXT"


def test_kafka_settings_honour_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "10.0.0.5:9092")
    monkeypatch.delenv("KAFKA_TOPIC_PREFIX", raising=False)
    assert KafkaSettings.from_env().bootstrap_servers == "10.0.0.5:9092"


def test_kafka_settings_default_to_the_local_broker() -> None:
    assert KafkaSettings.from_env({}).bootstrap_servers == "127.0.0.1:9092"


def test_service_settings_read_their_own_prefix() -> None:
    env = {
        "REWARDS_GROUP_ID": "rewards",
        "REWARDS_METRICS_PORT": "9400",
        "REWARDS_STATE_DIR": "/tmp/state",
        "REWARDS_UNKNOWN_PROGRAM_WAIT_S": "60",
        "KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092",
    }
    settings = load(ServiceSettings, "REWARDS", env)
    assert settings.group_id == "rewards"
    assert settings.metrics_port == 9400
    assert settings.state_dir == Path("/tmp/state")
    assert settings.unknown_program_wait_s == 60.0
    assert settings.instance_id  # the default factory still runs


def test_amount_ceilings_default_to_ten_to_the_ten_and_are_read_per_currency() -> None:
    from referrals.platform.settings import AmountLimits

    assert load(AmountLimits, env={}).ceiling("USD") == 10**10
    limits = load(
        AmountLimits,
        env={
            "REFERRALS_MAX_AMOUNT_MINOR": "500",
            "REFERRALS_AMOUNT_CEILINGS": '{"JPY": 70000, "KRW": 900000}',
        },
    )
    assert (limits.ceiling("USD"), limits.ceiling("JPY"), limits.ceiling(None)) == (500, 70000, 500)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REFERRALS_AMOUNT_CEILINGS", '{"XYZ": 5}'),
        ("REFERRALS_AMOUNT_CEILINGS", '{"JPY": 0}'),
        ("REFERRALS_MAX_AMOUNT_MINOR", "-1"),
    ],
)
def test_a_bad_amount_ceiling_is_a_config_error_naming_the_variable(
    variable: str, value: str
) -> None:
    from referrals.platform.settings import AmountLimits

    with pytest.raises(ConfigError, match=variable):
        load(AmountLimits, env={variable: value})
