"""Where `referrals doctor` looks for each service: the services' own settings, read from the same
environment, unless a flag or DOCTOR_<SERVICE>_URL says otherwise."""

from __future__ import annotations

import pytest

from referrals.platform.errors import ConfigError
from referrals.tools.doctor.targets import parse_urls, service, services


def test_defaults_are_the_services_own_ports_and_groups() -> None:
    found = {s.name: s for s in services({}, {})}
    assert found["attribution"].url == "http://127.0.0.1:9201"
    assert found["api"].url == "http://127.0.0.1:9204"
    assert found["rewards"].group == "referrals-rewards"
    assert found["api"].group is None  # the API reads every partition, with no group


def test_the_services_environment_moves_them() -> None:
    env = {
        "REWARDS_METRICS_HOST": "0.0.0.0",
        "REWARDS_METRICS_PORT": "19202",
        "REWARDS_GROUP_ID": "t1.rewards",
    }
    rewards = service("rewards", env)
    assert (rewards.url, rewards.group) == ("http://127.0.0.1:19202", "t1.rewards")


def test_a_url_given_outright_wins_over_the_environment() -> None:
    env = {"NOTIFICATIONS_METRICS_PORT": "1", "DOCTOR_NOTIFICATIONS_URL": "http://n:9203/"}
    assert service("notifications", env).url == "http://n:9203"
    assert service("notifications", env, "http://other:1").url == "http://other:1"


def test_each_group_s_inputs_and_changelogs_come_from_its_processor() -> None:
    rewards = service("rewards", {})
    assert "referral.status.v1" in rewards.inputs
    assert rewards.changelogs == ("rewards.state.changelog",)
    assert service("notifications", {}).changelogs == (
        "notifications.advocates.changelog",
        "notifications.index.changelog",
    )


def test_url_options_are_service_equals_url() -> None:
    assert parse_urls(["api=http://10.0.0.5:9204"]) == {"api": "http://10.0.0.5:9204"}
    with pytest.raises(ConfigError, match="SERVICE=http"):
        parse_urls(["api:9204"])


def test_an_unknown_service_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown service.*billing.*attribution, rewards"):
        services({}, {}, ["rewards", "billing"])
