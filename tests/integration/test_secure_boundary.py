"""The secured broker (`referrals broker start --secure`, the contract's ACLs from `referrals acl
apply`) enforces the contract's principal x topic table: each principal is refused every topic
the table does not give it and allowed the ones it does; a wrong password, an unknown user, a
client that does not trust the broker's CA or speaks PLAINTEXT get nowhere; nobody without the
nodes' certificate reaches the controllers; `acl apply` removes what the table does not give."""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest
from aiokafka.errors import KafkaConnectionError

from referrals.contract import acls
from referrals.contract.topics import (
    ADVOCATES,
    CATALOGUE,
    PAYOUT_RESULTS,
    PAYOUTS,
    PAYOUTS_V2,
    PROGRAMS,
    STATUS,
    Role,
)
from referrals.platform.acls import AclBinding, AclOperation, PatternType, ResourceType, allows
from referrals.platform.acls import user as user_principal
from referrals.platform.settings import KafkaSettings
from referrals.streams.acls import _Create, describe
from referrals.streams.kafka import make_admin
from referrals.tools import broker_secure

from ..conftest import SecureBroker
from .helpers import run_cli
from .secure_probes import can_read, can_write

pytestmark = pytest.mark.broker

PUBLIC = [spec.name for spec in CATALOGUE if spec.role is not Role.INTERNAL]


# -- the named refusals of the issue, each on its own ----------------------------------------
@pytest.mark.parametrize(
    ("principal", "topic"),
    [
        ("attribution", PAYOUTS),  # a compromised attribution must not pay anyone
        ("notifications", PAYOUTS_V2),
        ("platform", STATUS),  # a platform team cannot fake a WON status
        ("finance", PROGRAMS),  # finance cannot change the rules it is paid by
        ("rewards", PAYOUT_RESULTS),  # rewards cannot report its own payouts PAID
    ],
)
async def test_a_principal_cannot_write_a_topic_the_table_does_not_give_it(
    secure_broker: SecureBroker, principal: str, topic: str
) -> None:
    assert not await can_write(secure_broker, principal, topic)


async def test_notifications_cannot_read_the_payouts(secure_broker: SecureBroker) -> None:
    assert not await can_read(secure_broker.settings("notifications"), PAYOUTS)


async def test_the_platform_principal_cannot_read_any_topic(secure_broker: SecureBroker) -> None:
    platform = secure_broker.settings("platform")
    refused = await asyncio.gather(*(can_read(platform, topic) for topic in PUBLIC))
    assert not any(refused)


async def test_the_payout_writer_and_finance_are_allowed_their_part(
    secure_broker: SecureBroker,
) -> None:
    assert await can_write(secure_broker, "rewards", PAYOUTS)
    assert await can_read(secure_broker.settings("finance"), PAYOUTS)
    assert await can_write(secure_broker, "finance", PAYOUT_RESULTS)


# -- the whole table, topic by topic --------------------------------------------------------
@pytest.mark.parametrize("principal", acls.PRINCIPALS)
async def test_the_broker_enforces_the_table_for_every_contract_topic(
    secure_broker: SecureBroker, principal: str
) -> None:
    table = acls.bindings(secure_broker.prefix, secure_broker.groups)
    who = user_principal(principal)
    settings = secure_broker.settings(principal)
    writes, reads = await asyncio.gather(
        asyncio.gather(*(can_write(secure_broker, principal, t) for t in PUBLIC)),
        asyncio.gather(*(can_read(settings, t) for t in PUBLIC)),
    )
    expected_writes, expected_reads = [], []
    for topic in PUBLIC:
        physical = secure_broker.prefix + topic
        expected_writes.append(allows(table, who, ResourceType.TOPIC, physical, AclOperation.WRITE))
        expected_reads.append(allows(table, who, ResourceType.TOPIC, physical, AclOperation.READ))
    assert dict(zip(PUBLIC, writes, strict=True)) == dict(
        zip(PUBLIC, expected_writes, strict=True)
    ), "writes"
    assert dict(zip(PUBLIC, reads, strict=True)) == dict(
        zip(PUBLIC, expected_reads, strict=True)
    ), "reads"
    assert any(expected_writes)  # every principal writes something


# -- who gets in at all ---------------------------------------------------------------------
async def _refused(secure_broker: SecureBroker, **changes: object) -> None:
    settings = secure_broker.settings("operator").model_copy(update=changes)
    admin = make_admin(settings, "tests-intruder")
    try:
        with pytest.raises(KafkaConnectionError):
            await admin.start()
    finally:
        await admin.close()


async def test_a_wrong_password_or_an_unknown_user_is_refused(
    secure_broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        await _refused(secure_broker, sasl_password="not-the-password")
        await _refused(secure_broker, sasl_username="mallory")
        # Another principal's password is a wrong password too.
        await _refused(secure_broker, sasl_password=secure_broker.settings("admin").sasl_password)
    failures = [r.getMessage() for r in caplog.records if "SaslAuthenticationFailed" in r.message]
    assert len(failures) >= 3, caplog.text


async def test_a_client_that_does_not_trust_the_ca_or_skips_tls_is_refused(
    secure_broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        await _refused(secure_broker, ssl_cafile=None)  # the system's CAs: not this broker's
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    await _refused(secure_broker, security_protocol="SASL_PLAINTEXT")
    await _refused(secure_broker, security_protocol="PLAINTEXT", sasl_mechanism=None)


async def test_the_controllers_talk_only_to_holders_of_the_nodes_certificate(
    secure_broker: SecureBroker,
) -> None:
    """A client trusting the CA (any principal's password would not help: the controller
    listener takes no SASL) cannot complete TLS with the controller listener: it asks for a
    client certificate only the nodes hold."""
    context = ssl.create_default_context(
        cafile=str(broker_secure.material(secure_broker.cfg).ca_pem)
    )
    host, port = secure_broker.cfg.host, secure_broker.cfg.cport
    _, writer = await asyncio.open_connection(host, secure_broker.cfg.port, ssl=context)
    writer.close()  # the client listener: TLS completes (then SASL would follow)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        try:
            writer.write(b"\x00\x00\x00\x00")
            await writer.drain()
            # TLS 1.3: the server's refusal of the missing certificate arrives on first read.
            if not await asyncio.wait_for(reader.read(1), 10):
                raise ConnectionError("closed by the controller")
        finally:
            writer.close()


# -- applying the table ---------------------------------------------------------------------
async def test_acl_apply_removes_a_grant_beyond_the_table_and_needs_the_admin(
    secure_broker: SecureBroker,
) -> None:
    platform = secure_broker.settings("platform")
    extra = AclBinding(
        user_principal("platform"),
        ResourceType.TOPIC,
        secure_broker.prefix + ADVOCATES,
        PatternType.LITERAL,
        AclOperation.READ,
    )
    admin = make_admin(secure_broker.settings("admin"), "tests-acl")
    await admin.start()
    try:
        response = await admin._client.send(admin._client.get_random_node(), _Create([extra]))
        assert [r[0] for r in response.creation_responses] == [0]
        for _ in range(100):  # until the broker's authorizer applied it
            if extra in await describe(admin):
                break
            await asyncio.sleep(0.1)
        assert await can_read(platform, ADVOCATES)  # the stray grant works...

        dry = await asyncio.to_thread(secure_broker.cli, "admin", "acl", "apply", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"- {extra}" in dry.stdout and "would delete 1" in dry.stderr
        assert await can_read(platform, ADVOCATES)  # ...and a dry run changes nothing

        denied = await asyncio.to_thread(secure_broker.cli, "operator", "acl", "apply")
        assert denied.returncode == 1
        assert "ClusterAuthorizationFailed" in denied.stderr, denied.stderr

        done = await asyncio.to_thread(secure_broker.cli, "admin", "acl", "apply")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f"- {extra}"]
        assert "created 0, deleted 1" in done.stderr
        assert not await can_read(platform, ADVOCATES)
        assert extra not in await describe(admin)
    finally:
        await admin.close()


def test_acl_apply_on_a_broker_without_an_authorizer_says_so(kafka: KafkaSettings) -> None:
    done = run_cli(kafka, "acl", "apply")
    assert done.returncode == 1
    assert "the cluster has no authorizer" in done.stderr
    assert "referrals broker start --secure" in done.stderr
