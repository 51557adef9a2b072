"""`referrals doctor` checks the broker's ACLs against the contract's principal x topic table:
on the secured broker (as the admin principal) every principal holds exactly its rows; a grant
beyond the table and a missing one are each reported against their principal, with the fix;
on an unsecured broker there is nothing to check, and doctor says so without a problem."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from referrals.contract import acls
from referrals.contract.topics import PAYOUTS
from referrals.platform.acls import AclBinding, AclOperation, PatternType, ResourceType
from referrals.platform.acls import user as user_principal
from referrals.platform.settings import KafkaSettings
from referrals.streams.acls import _Create, _Delete, describe
from referrals.streams.kafka import make_admin

from ..conftest import SecureBroker
from .helpers import run_cli

ONLY_ACLS = ("--skip", "services", "--skip", "lag", "--skip", "programs", "--skip", "topics")


def _acl_findings(stdout: str) -> dict[str, dict[str, Any]]:
    report = json.loads(stdout)
    return {f["subject"]: f for f in report["findings"] if f["check"] == "acls"}


async def test_doctor_reports_acls_beyond_or_missing_from_the_table(
    secure_broker: SecureBroker,
) -> None:
    healthy = await asyncio.to_thread(secure_broker.cli, "admin", "doctor", "--json", *ONLY_ACLS)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    found = _acl_findings(healthy.stdout)
    assert set(found) == set(acls.PRINCIPALS)
    assert all(f["status"] == "ok" for f in found.values()), found

    payouts = secure_broker.prefix + PAYOUTS
    stray = AclBinding(  # attribution may write payouts: what the table exists to prevent
        user_principal("attribution"),
        ResourceType.TOPIC,
        payouts,
        PatternType.LITERAL,
        AclOperation.WRITE,
    )
    needed = AclBinding(  # rewards may no longer write them: payouts would stop
        user_principal("rewards"),
        ResourceType.TOPIC,
        payouts,
        PatternType.LITERAL,
        AclOperation.WRITE,
    )
    admin = make_admin(secure_broker.settings("admin"), "tests-doctor-acl")
    await admin.start()
    try:
        node = admin._client.get_random_node()
        created = await admin._client.send(node, _Create([stray]))
        assert [r[0] for r in created.creation_responses] == [0]
        deleted = await admin._client.send(node, _Delete([needed]))
        assert [r[0] for r in deleted.filter_responses] == [0]
        for _ in range(100):  # until the authorizer holds both changes
            present = await describe(admin)
            if stray in present and needed not in present:
                break
            await asyncio.sleep(0.1)

        drifted = await asyncio.to_thread(
            secure_broker.cli, "admin", "doctor", "--json", *ONLY_ACLS
        )
        assert drifted.returncode == 1, drifted.stdout + drifted.stderr
        found = _acl_findings(drifted.stdout)
        assert found["attribution"]["status"] == "problem"
        assert "beyond the table" in found["attribution"]["detail"]
        assert str(stray) in found["attribution"]["detail"]
        assert found["rewards"]["status"] == "problem"
        assert "missing" in found["rewards"]["detail"] and str(needed) in found["rewards"]["detail"]
        assert "referrals acl apply" in found["rewards"]["fix"]
        others = set(acls.PRINCIPALS) - {"attribution", "rewards"}
        assert all(found[p]["status"] == "ok" for p in others), found
    finally:
        await admin.close()
        restored = await asyncio.to_thread(secure_broker.cli, "admin", "acl", "apply")
        assert restored.returncode == 0, restored.stderr


def test_doctor_on_a_broker_without_an_authorizer_has_no_acls_to_check(
    kafka: KafkaSettings,
) -> None:
    done = run_cli(kafka, "doctor", "--json", *ONLY_ACLS)
    assert done.returncode == 0, done.stdout + done.stderr
    [finding] = _acl_findings(done.stdout).values()
    assert finding["status"] == "ok" and "not secured" in finding["detail"]
