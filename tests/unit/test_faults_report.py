"""The fault report's verdict and the fleet's count of instances that exited on their own,
checked without a broker or the services."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from referrals.platform.settings import KafkaSettings
from referrals.tools.faults.check import Checked
from referrals.tools.faults.inject import Fleet, Instance
from referrals.tools.faults.report import FaultReport, Step

UP = {"live": True, "ready": True, "unexpected_exits": []}


def _report(**changes: Any) -> FaultReport:
    report = FaultReport("bounded", 10, {"WON": 6})
    report.checked = Checked(expected=6, seen=6)
    report.services = {"rewards-1": dict(UP), "rewards-2": dict(UP)}
    report.steps = [Step(1.0, "sigkill (one of two)", "rewards-1", "", ok=True)]
    for name, value in changes.items():
        setattr(report, name, value)
    return report


def test_a_clean_run_is_ok_and_its_json_has_every_figure_the_bounded_test_reads() -> None:
    out = _report().to_json()
    assert out["ok"] is True
    assert out["unexpected_exits"] == {} and out["takeover_ok"] is True
    assert out["wrong_amount"] == 0 and out["valid_dead_lettered"] == {}
    assert out["accepted_but_dead_lettered"] == []


@pytest.mark.parametrize(
    "spoil",
    [
        lambda r: r.services["rewards-2"].update(unexpected_exits=[1]),  # a zombie that died
        lambda r: setattr(r.steps[0], "ok", False),  # the other did not take over
        lambda r: r.checked.wrong_amount.append("po-1: 1 != 5000"),
        lambda r: r.checked.valid_dead_lettered.update({"deals BAD_BODY (attribution)": 1}),
        lambda r: r.checked.accepted_but_dead_lettered.append("duplicate_event_id on deals"),
    ],
)
def test_each_fault_finding_fails_the_verdict(spoil: Any) -> None:
    report = _report()
    spoil(report)
    assert report.ok is False and report.to_json()["ok"] is False
    assert report.findings()


def test_the_suites_own_kills_are_not_unexpected_exits_but_an_instance_dying_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = Fleet(tmp_path, KafkaSettings(), {"rewards": 1}, {})
    restarted: list[Instance] = []
    monkeypatch.setattr(fleet, "start", lambda inst, port: restarted.append(inst))
    [inst] = fleet.instances
    inst.proc = subprocess.Popen(["sleep", "30"])
    fleet.kill(inst)  # the suite's SIGKILL
    assert fleet.reap(0) == [] and inst.unexpected_exits == [] and restarted == []
    inst.proc = subprocess.Popen(["sh", "-c", "exit 3"])  # exits on its own
    inst.proc.wait()
    assert fleet.reap(0) == ["rewards-1 exited with status 3"]
    assert inst.unexpected_exits == [3] and restarted == [inst]
    assert fleet.health()["rewards-1"]["unexpected_exits"] == [3]


def test_an_instance_that_dies_is_reported_with_the_error_its_log_ends_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = Fleet(tmp_path, KafkaSettings(), {"notifications": 1}, {})
    monkeypatch.setattr(fleet, "start", lambda inst, port: None)
    [inst] = fleet.instances
    log = tmp_path / "logs" / "notifications-1.log"
    earlier = '{"level": "ERROR", "msg": "an error the previous start logged"}\n'
    traceback = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "    start()\n"
        "aiokafka.errors.KafkaConnectionError: KafkaConnectionError: Unable to bootstrap\n"
    )
    log.write_text(earlier + '{"level": "INFO", "msg": "started"}\n' + traceback)
    inst.proc = subprocess.Popen(["sh", "-c", "exit 1"])
    inst.proc.wait()
    assert fleet.reap(0) == [
        "notifications-1 exited with status 1 (aiokafka.errors.KafkaConnectionError: "
        "KafkaConnectionError: Unable to bootstrap)"
    ]
    # No traceback: the last ERROR line says why (a refused setting, status 2).
    log.write_text(traceback + earlier.replace("the previous start logged", "cannot continue"))
    inst.proc = subprocess.Popen(["sh", "-c", "exit 2"])
    inst.proc.wait()
    assert fleet.reap(0) == ["notifications-1 exited with status 2 (an error cannot continue)"]
