"""The local broker's configuration: one node as it always was, three nodes as one cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from referrals.contract import acls
from referrals.platform.settings import KafkaSettings
from referrals.tools import broker, broker_secure
from referrals.tools.cli_broker import broker_config


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_one_node_keeps_its_ports_layout_and_single_replicas(tmp_path: Path) -> None:
    cfg = broker.BrokerConfig(port=9092, data_dir=tmp_path)
    p = props(broker.server_properties(cfg))
    assert p["node.id"] == "1"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert p["log.dirs"] == str(tmp_path / "data")
    assert p["offsets.topic.replication.factor"] == "1"
    assert p["transaction.state.log.replication.factor"] == "1"
    assert p["transaction.state.log.min.isr"] == "1"
    assert p["min.insync.replicas"] == "1"
    assert "broker.session.timeout.ms" not in p
    assert cfg.bootstrap == "127.0.0.1:9092"
    assert broker.node(cfg, 0).data_dir == tmp_path
    assert broker.node(cfg, 0).log_file == tmp_path / "broker.log"
    assert cfg.jvm_heap == "512m"


def test_three_nodes_form_one_quorum_with_replicated_internal_topics(tmp_path: Path) -> None:
    cfg = broker.BrokerConfig(port=9092, data_dir=tmp_path, nodes=3)
    voters = "1@127.0.0.1:9095,2@127.0.0.1:9096,3@127.0.0.1:9097"
    ports: set[str] = set()
    for i in range(3):
        p = props(broker.server_properties(cfg, i))
        assert p["node.id"] == str(i + 1)
        assert p["process.roles"] == "broker,controller"
        assert p["controller.quorum.voters"] == voters
        assert p["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{9092 + i},CONTROLLER://127.0.0.1:{9095 + i}"
        )
        assert p["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{9092 + i}"
        assert p["log.dirs"] == str(tmp_path / f"node-{i}" / "data")
        assert p["offsets.topic.replication.factor"] == "3"
        assert p["transaction.state.log.replication.factor"] == "3"
        assert p["transaction.state.log.min.isr"] == "2"
        assert p["default.replication.factor"] == "3"
        assert p["min.insync.replicas"] == "2"
        assert p["broker.session.timeout.ms"] == "6000"
        ports |= {p["listeners"].split(",")[0].rsplit(":", 1)[1]}
        ports |= {p["listeners"].split(",")[1].rsplit(":", 1)[1]}
    assert len(ports) == 6  # no two listeners share a port
    assert cfg.bootstrap == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert cfg.jvm_heap == "384m"


def test_a_node_view_names_its_own_port_folder_and_files(tmp_path: Path) -> None:
    cfg = broker.BrokerConfig(port=9092, controller_port=9200, data_dir=tmp_path, nodes=3)
    two = broker.node(cfg, 2)
    assert (two.port, two.cport, two.bootstrap) == (9094, 9202, "127.0.0.1:9094")
    assert two.data_dir == tmp_path / "node-2"
    assert two.pid_file == tmp_path / "node-2" / "broker.pid"
    assert two.log_file == tmp_path / "node-2" / "broker.log"
    with pytest.raises(broker.BrokerError, match="no node 3"):
        broker.node(cfg, 3)


def test_the_cli_finds_a_clusters_nodes_in_its_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REFERRALS_BROKER_NODES", raising=False)
    assert broker_config(None, tmp_path).nodes == 1
    for i in range(3):
        (tmp_path / f"node-{i}").mkdir()
        (tmp_path / f"node-{i}" / "server.properties").write_text("")
    assert broker_config(None, tmp_path).nodes == 3
    assert broker_config(None, tmp_path, 1).nodes == 1
    monkeypatch.setenv("REFERRALS_BROKER_NODES", "2")
    assert broker_config(None, tmp_path).nodes == 2


def _fake_material(folder: Path) -> broker_secure.Material:
    """Credentials as `broker start --secure` writes them (no keytool needed to read them)."""
    folder.mkdir(parents=True)
    users = {name: f"pw-{name}" for name in (*acls.PRINCIPALS, acls.ADMIN)}
    (folder / "credentials.json").write_text(
        json.dumps({"store_password": "store-pw", "users": users})
    )
    return broker_secure.Material(folder)


def test_a_secured_node_listens_with_sasl_ssl_and_lets_only_the_nodes_reach_the_controllers(
    tmp_path: Path,
) -> None:
    cfg = broker.BrokerConfig(port=9092, data_dir=tmp_path, nodes=3, secure=True)
    mat = _fake_material(tmp_path / "security")
    p = props(broker.server_properties(cfg, 1, mat))
    assert p["listeners"] == "SASL_SSL://127.0.0.1:9093,CONTROLLER://127.0.0.1:9096"
    assert p["advertised.listeners"] == "SASL_SSL://127.0.0.1:9093"
    assert p["listener.security.protocol.map"] == "CONTROLLER:SSL,SASL_SSL:SASL_SSL"
    assert p["listener.name.controller.ssl.client.auth"] == "required"
    assert p["inter.broker.listener.name"] == "SASL_SSL"
    assert p["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert p["authorizer.class.name"] == ("org.apache.kafka.metadata.authorizer.StandardAuthorizer")
    assert p["allow.everyone.if.no.acl.found"] == "false"
    assert p["super.users"] == "User:admin;User:CN=referrals-broker"
    assert (
        'username="admin" password="pw-admin"'
        in p["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    assert p["ssl.keystore.location"] == str(tmp_path / "security" / "broker.p12")
    # Every principal of the contract's table, and the admin, is made at format time.
    made = broker_secure.scram_arguments(mat)
    assert "--add-scram=SCRAM-SHA-512=[name=rewards,password=pw-rewards]" in made
    assert len(made) == len(acls.PRINCIPALS) + 1


def test_a_principals_env_file_holds_every_kafka_setting_a_process_reads(tmp_path: Path) -> None:
    cfg = broker.BrokerConfig(port=9092, data_dir=tmp_path, nodes=3, secure=True)
    mat = _fake_material(tmp_path / "security")
    env = dict(line.split("=", 1) for line in broker_secure.env_text(cfg, mat, "finance").split())
    settings = KafkaSettings.from_env(env)
    assert settings.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert (settings.security_protocol, settings.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (settings.sasl_username, settings.sasl_password) == ("finance", "pw-finance")
    assert settings.ssl_cafile == str(tmp_path / "security" / "ca.pem")
    assert settings.sasl_user == "finance"
    assert KafkaSettings.from_env(settings.as_env()) == settings


def test_a_folder_formatted_without_security_is_not_secured_in_place(tmp_path: Path) -> None:
    cfg = broker.BrokerConfig(port=9092, data_dir=tmp_path, secure=True)
    with pytest.raises(broker_secure.SecurityError, match="started without --secure"):
        broker_secure.ensure(cfg, formatted=True)
    assert not (tmp_path / "security").exists()
    # A folder holding security material starts secured even without --secure.
    plain = broker.BrokerConfig(port=9092, data_dir=tmp_path)
    assert not broker_secure.secured(plain)
    _fake_material(tmp_path / "security")
    assert broker_secure.secured(plain)
