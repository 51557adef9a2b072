"""The local broker's configuration: one node as it always was, three nodes as one cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from referrals.tools import broker
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
