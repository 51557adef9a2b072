"""The whole pipeline on the secured broker, every process as its own principal with nothing
but its KAFKA_* settings: the three services (attribution, rewards, notifications), the CLI as
operator (`program put`, `approve`) and as platform (`publish`), finance reading the payout
read_committed in a consumer group of its own. A referral goes from the platform's profile,
share, conversion and WON deal to a reward held for approval, approved by the operator, paid out
on rewards.payouts.v1 exactly once; the audit log records who the operator said they were and
the SCRAM user the CLI authenticated as; the advocate was thanked by mail, and a message the
relay refuses for good is dead-lettered (notifications may write that dead letter too)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    OperatorCommand,
    PayoutCommand,
    ReferralStatus,
    ReferralStatusChanged,
)
from referrals.contract.topics import (
    NOTIFICATIONS_SENT,
    OPERATOR_COMMANDS,
    PAYOUTS,
    STATUS,
    dlq_of,
)
from referrals.streams.dlq import header_dict
from referrals.streams.kafka import make_consumer
from referrals.tools.program_year import MailCatcher, stop_processes

from ..conftest import REPO, SecureBroker, _free_port
from .helpers import read_topic

pytestmark = pytest.mark.broker

PROGRAM = """program_id: secure-flow
currency: USD
rewards:
  tiers:
    - {from_referral: 1, amount: "50.00", reward_type: GIFT_CARD}
  approval_threshold: "40.00"
"""
SERVICES = ("attribution", "rewards", "notifications")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


REFUSED = "bounce@example.com"  # the relay refuses this address for good


def _referral(
    who: str, email: str, email_sha256: str, now: datetime, won: bool
) -> dict[str, dict[str, object]]:
    """The platform's records of one referral of `who`: profile, share, conversion by code, and
    a WON deal if `won`."""
    at = {step: _iso(now - timedelta(minutes=10 - i)) for i, step in enumerate("pscd")}
    records: dict[str, dict[str, object]] = {
        "referral.advocates.v1": {
            "program_id": "secure-flow",
            "advocate_id": who,
            "email": email,
            "display_name": "Sec Advocate",
            "email_sha256": email_sha256,
            "opted_out": False,
            "tax_form_on_file": True,
            "updated_at": at["p"],
        },
        "referral.shares.v1": {
            "event_id": f"sh-{who}",
            "program_id": "secure-flow",
            "advocate_id": who,
            "channel": "EMAIL",
            "referral_code": f"CODE-{who}",
            "occurred_at": at["s"],
        },
        "referral.conversions.v1": {
            "event_id": f"cv-{who}",
            "program_id": "secure-flow",
            "prospect_id": f"pr-{who}",
            "referral_code": f"CODE-{who}",
            "occurred_at": at["c"],
        },
    }
    if won:
        records["referral.deals.v1"] = {
            "event_id": f"dl-{who}",
            "program_id": "secure-flow",
            "deal_id": f"deal-{who}",
            "prospect_id": f"pr-{who}",
            "stage": "WON",
            "amount_minor": 100000,
            "currency": "USD",
            "occurred_at": at["d"],
        }
    return records


class Relay(MailCatcher):
    """The SMTP catcher, refusing one address for good (550), as a real relay would."""

    async def handle_RCPT(
        self, server: object, session: object, envelope: Any, address: str, options: object
    ) -> str:
        if address == REFUSED:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class Services:
    """The three services as processes, each with its own principal's environment."""

    def __init__(self, secured: SecureBroker, work: Path, smtp_port: int) -> None:
        self.ports = {name: _free_port() for name in SERVICES}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = work / "logs"
        self.logs.mkdir(parents=True)
        for name in SERVICES:
            up = name.upper()
            env = secured.env(
                name,
                **{
                    f"{up}_METRICS_PORT": str(self.ports[name]),
                    f"{up}_STATE_DIR": str(work / "state" / name),
                    "NOTIFICATIONS_SMTP_PORT": str(smtp_port),
                    "NOTIFICATIONS_UNSUBSCRIBE_PORT": str(_free_port()),
                    "NOTIFICATIONS_UNSUBSCRIBE_SECRET": "secure-pipeline-test-secret-0123456789",
                },
            )
            assert env["KAFKA_SASL_USERNAME"] == name
            with (self.logs / f"{name}.log").open("wb") as log:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "referrals.tools.cli", "run", name],
                    env=env,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def await_ready(self, within: float = 90.0) -> None:
        pending, deadline = set(SERVICES), time.monotonic() + within
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                assert self.procs[name].poll() is None, f"{name} exited:\n{self.log(name)}"
                try:
                    url = f"http://127.0.0.1:{self.ports[name]}/readyz"
                    with urllib.request.urlopen(url, timeout=2):
                        pending.discard(name)
                except OSError:
                    pass
            time.sleep(0.3)
        assert not pending, "not ready: " + ", ".join(f"{n}:\n{self.log(n)}" for n in pending)

    def stop(self) -> dict[str, int]:
        return stop_processes(self.procs)


@pytest.fixture
def services(secure_broker: SecureBroker, tmp_path: Path) -> Iterator[tuple[Services, MailCatcher]]:
    with Relay(_free_port()) as mail:
        running = Services(secure_broker, tmp_path, mail.controller.port)
        try:
            running.await_ready()
            yield running, mail
        finally:
            codes = running.stop()
            assert codes == dict.fromkeys(SERVICES, 0), {n: running.log(n) for n in SERVICES}


async def _held_payout(secured: SecureBroker, within: float = 60.0) -> str:
    """The payout_id of the referral's reward once rewards holds it (read as the operator)."""
    codec, deadline = AvroCodec(), time.monotonic() + within
    while time.monotonic() < deadline:
        for msg in await read_topic(secured.settings("operator"), STATUS, quiet=0.5):
            status = codec.decode(msg.value, "ReferralStatusChanged")
            assert isinstance(status, ReferralStatusChanged)
            if status.advocate_id == "adv-sec" and status.status is ReferralStatus.REWARD_HELD:
                assert status.reason == "NEEDS_APPROVAL" and status.payout_id
                return status.payout_id
        await asyncio.sleep(1.0)
    raise AssertionError(f"no REWARD_HELD for adv-sec on {STATUS} within {within} s")


async def _finance_reads_payouts(secured: SecureBroker, expect: int) -> list[PayoutCommand]:
    """What finance's own consumer group reads from rewards.payouts.v1, read_committed."""
    settings = secured.settings("finance")
    consumer = make_consumer(
        settings, secured.prefix + PAYOUTS, group_id="finance-payouts", client_id="finance"
    )
    await consumer.start()
    found: list[PayoutCommand] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(found) < expect:
            batch = await consumer.getmany(timeout_ms=500)
            for msg in (m for ms in batch.values() for m in ms):
                payout = AvroCodec().decode(msg.value, "PayoutCommand")
                assert isinstance(payout, PayoutCommand)
                found.append(payout)
        await asyncio.sleep(1.0)  # a duplicate would show now
        batch = await consumer.getmany(timeout_ms=500)
        found += [AvroCodec().decode(m.value, "PayoutCommand") for ms in batch.values() for m in ms]
        await consumer.commit()  # finance's group may commit its offsets
    finally:
        await consumer.stop()
    return found


async def test_a_referral_is_paid_once_with_every_process_as_its_own_principal(
    secure_broker: SecureBroker,
    services: tuple[Services, MailCatcher],
    tmp_path: Path,
) -> None:
    running, mail = services
    program = tmp_path / "program.yaml"
    program.write_text(PROGRAM)
    put = await asyncio.to_thread(secure_broker.cli, "operator", "program", "put", str(program))
    assert put.returncode == 0, put.stderr
    now = datetime.now(UTC)
    paid_one = _referral("adv-sec", "sec@example.com", "ab" * 32, now, won=True)
    bounced = _referral("adv-bounce", REFUSED, "cd" * 32, now, won=False)
    for topic, record in paid_one.items():
        lines = "\n".join(json.dumps(r) for r in (record, bounced.get(topic)) if r)
        done = await asyncio.to_thread(
            secure_broker.cli, "platform", "publish", topic, "-", stdin=lines
        )
        assert done.returncode == 0, f"{topic}: {done.stderr}"

    payout_id = await _held_payout(secure_broker)
    approve = await asyncio.to_thread(
        secure_broker.cli, "operator", "approve", payout_id, "--by", "alice", "--reason", "ok"
    )
    assert approve.returncode == 0, approve.stderr + running.log("rewards")
    assert f"approval of payout {payout_id} applied" in approve.stdout

    paid = await _finance_reads_payouts(secure_broker, expect=1)
    assert [(p.payout_id, p.attempt, p.amount_minor) for p in paid] == [(payout_id, 1, 5000)]

    # The audit log: who the operator said they were, and who the broker authenticated.
    commands = await read_topic(secure_broker.settings("operator"), OPERATOR_COMMANDS, expect=1)
    logged = [AvroCodec().decode(m.value, "OperatorCommand") for m in commands]
    mine = [c for c in logged if isinstance(c, OperatorCommand) and c.target_id == payout_id]
    assert [(c.by, c.principal) for c in mine] == [("alice", "kafka:operator")]

    sent = await read_topic(secure_broker.settings("operator"), NOTIFICATIONS_SENT, expect=1)
    assert sent and mail.count >= 1  # notifications read statuses and recorded what it sent
    # The refused address: notifications dead-letters the delivery in its transaction.
    dead = await read_topic(
        secure_broker.settings("operator"), dlq_of(NOTIFICATIONS_SENT), expect=1, within=60
    )
    assert dead, running.log("notifications")
    headers = header_dict(dead[0].headers)
    assert headers["dlq.service"] == "notifications" and dead[0].key == b"adv-bounce"
