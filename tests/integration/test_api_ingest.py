"""Ingest and Programs through a real server and client on the real broker: each method
publishes what `referrals publish` / `program put` would, a request with one bad record
publishes nothing and names it (`deals[2].occurred_at`), and programs read back at their latest
version."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    PayoutResult,
    PayoutStatus,
    ProgramConfig,
    ShareEvent,
)
from referrals.contract.topics import ADVOCATES, CONVERSIONS, DEALS, PAYOUT_RESULTS, SHARES
from referrals.platform.settings import KafkaSettings
from services.api.proto import referrals_pb2 as pb

from ..conftest import REPO
from .api_support import bad_request, running_api
from .helpers import read_topic

pytestmark = pytest.mark.broker
CODEC = AvroCodec()
ACME = (REPO / "deploy" / "programs" / "acme-b2b.yaml").read_text()
AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
HASH = "ab" * 32


def stamp(when: datetime = AT) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


def deal(n: int, **changes: object) -> pb.DealEvent:
    fields: dict[str, object] = {
        "event_id": f"ev-deal-{n}",
        "program_id": "acme-b2b",
        "deal_id": f"deal-{n}",
        "prospect_id": f"pro-{n}",
        "stage": pb.DEAL_STAGE_WON,
        "amount_minor": 125_000,
        "currency": "USD",
        "occurred_at": stamp(),
    }
    fields.update(changes)
    return pb.DealEvent(**{k: v for k, v in fields.items() if v is not None})


async def values(topics: KafkaSettings, topic: str) -> list[object]:
    return [CODEC.decode(m.value) for m in await read_topic(topics, topic, quiet=0.5)]


async def test_each_ingest_method_publishes_records_as_referrals_publish_does(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    async with running_api(topics, tmp_path) as api:
        sent = {
            "PublishAdvocates": pb.PublishAdvocatesRequest(
                advocates=[
                    pb.AdvocateProfile(
                        program_id="acme-b2b",
                        advocate_id="adv-1",
                        email="ada@example.com",
                        display_name="Ada",
                        email_sha256=HASH,
                        tax_form_on_file=True,
                        locale="en-GB",
                        updated_at=stamp(),
                    )
                ]
            ),
            "PublishShares": pb.PublishSharesRequest(
                shares=[
                    pb.ShareEvent(
                        event_id="ev-s1",
                        program_id="acme-b2b",
                        advocate_id="adv-1",
                        channel=pb.CHANNEL_SHARE_URL,
                        referral_code="ADA-1",
                        occurred_at=stamp(),
                    )
                ]
            ),
            "PublishConversions": pb.PublishConversionsRequest(
                conversions=[
                    pb.ConversionEvent(
                        event_id="ev-c1",
                        program_id="acme-b2b",
                        prospect_id="pro-1",
                        referral_code="ADA-1",
                        occurred_at=stamp(),
                    )
                ]
            ),
            "PublishDeals": pb.PublishDealsRequest(
                deals=[deal(1), deal(2, amount_minor=None, currency=None)]
            ),
        }
        for method, request in sent.items():
            response = await api.call(f"/referrals.v1.Ingest/{method}", request, "ingest")
            assert response.accepted == len(next(iter(request.ListFields()))[1])
        results = pb.PublishPayoutResultsRequest(
            results=[
                pb.PayoutResult(
                    payout_id="po-1",
                    attempt=1,
                    status=pb.PAYOUT_STATUS_FAILED,
                    reason="BOUNCED",
                    occurred_at=stamp(),
                )
            ]
        )
        answer = await api.call("/referrals.v1.Ingest/PublishPayoutResults", results, "finance")
        assert answer.accepted == 1
        empty = await api.call(
            "/referrals.v1.Ingest/PublishDeals", pb.PublishDealsRequest(), "ingest"
        )
        assert empty.accepted == 0

    assert await values(topics, ADVOCATES) == [
        AdvocateProfile(
            "acme-b2b", "adv-1", "ada@example.com", "Ada", HASH, False, True, AT, locale="en-GB"
        )
    ]
    assert await values(topics, SHARES) == [
        ShareEvent("ev-s1", "acme-b2b", "adv-1", Channel.SHARE_URL, "ADA-1", AT)
    ]
    assert await values(topics, CONVERSIONS) == [
        ConversionEvent("ev-c1", "acme-b2b", "pro-1", AT, referral_code="ADA-1")
    ]
    assert sorted(await values(topics, DEALS), key=repr) == [
        DealEvent("ev-deal-1", "acme-b2b", "deal-1", "pro-1", DealStage.WON, AT, 125_000, "USD"),
        DealEvent("ev-deal-2", "acme-b2b", "deal-2", "pro-2", DealStage.WON, AT),
    ]
    assert await values(topics, PAYOUT_RESULTS) == [
        PayoutResult("po-1", 1, PayoutStatus.FAILED, AT, "BOUNCED")
    ]


async def test_one_bad_record_publishes_nothing_and_every_bad_one_is_named(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    async with running_api(topics, tmp_path) as api:
        batch = [
            deal(0),
            deal(1),
            deal(2, occurred_at=stamp(datetime(1999, 1, 1, tzinfo=UTC))),
            deal(3, stage=pb.DEAL_STAGE_UNSPECIFIED),
            deal(4, currency="XYZ"),
            deal(5, occurred_at=None),
            deal(6, prospect_id=" "),
        ]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await api.call(
                "/referrals.v1.Ingest/PublishDeals", pb.PublishDealsRequest(deals=batch), "ingest"
            )
        shares = pb.PublishSharesRequest(
            shares=[
                pb.ShareEvent(
                    event_id="e",
                    program_id="p",
                    advocate_id="a",
                    referral_code="c",
                    prospect_email_sha256="not-a-hash",
                    occurred_at=stamp(),
                )
            ]
        )
        with pytest.raises(grpc.aio.AioRpcError) as unspecified:
            await api.call("/referrals.v1.Ingest/PublishShares", shares, "ingest")
        with pytest.raises(grpc.aio.AioRpcError) as too_many:
            await api.call(
                "/referrals.v1.Ingest/PublishDeals",
                pb.PublishDealsRequest(deals=[deal(n) for n in range(51)]),
                "ingest",
            )

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "5 bad record(s); nothing was published" in (caught.value.details() or "")
    violations = bad_request(caught.value)
    assert set(violations) == {
        "deals[2].occurred_at",
        "deals[3].stage",
        "deals[4].currency",
        "deals[5].occurred_at",
        "deals[6].prospect_id",
    }
    assert "before 2000" in violations["deals[2].occurred_at"]
    assert "DEAL_STAGE_UNSPECIFIED" in violations["deals[3].stage"]
    assert "missing" in violations["deals[5].occurred_at"]
    # the first problem of a record is reported: the unspecified channel comes before the hash
    assert set(bad_request(unspecified.value)) == {"shares[0].channel"}
    assert too_many.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "API_MAX_RECORDS" in (too_many.value.details() or "")
    assert await read_topic(topics, DEALS, quiet=1.0) == []
    assert await read_topic(topics, SHARES, quiet=0.3) == []


async def test_programs_are_validated_put_and_read_back_at_their_latest_version(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    bad = ACME.replace("currency: USD", "currency: DOLLARS")
    async with running_api(topics, tmp_path) as api:
        ok = await api.call(
            "/referrals.v1.Programs/ValidateProgram",
            pb.ValidateProgramRequest(document=ACME),
            "operator",
        )
        assert list(ok.violations) == []
        found = await api.call(
            "/referrals.v1.Programs/ValidateProgram",
            pb.ValidateProgramRequest(document=bad),
            "operator",
        )
        assert [v.path for v in found.violations] == ["currency"]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.call(
                "/referrals.v1.Programs/PutProgram", pb.PutProgramRequest(document=bad), "operator"
            )
        first = await api.call(
            "/referrals.v1.Programs/PutProgram", pb.PutProgramRequest(document=ACME), "operator"
        )
        second = await api.call(
            "/referrals.v1.Programs/PutProgram",
            pb.PutProgramRequest(document=ACME),
            "anon-operator",
        )
        got = await api.call(
            "/referrals.v1.Programs/GetProgram",
            pb.GetProgramRequest(program_id="acme-b2b"),
            "operator",
        )
        listed = await api.call(
            "/referrals.v1.Programs/ListPrograms", pb.ListProgramsRequest(), "operator"
        )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await api.call(
                "/referrals.v1.Programs/GetProgram",
                pb.GetProgramRequest(program_id="no-such"),
                "operator",
            )

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request(refused.value)) == {"currency"}
    assert (first.program_id, first.version, second.version) == ("acme-b2b", 1, 2)
    anon = hashlib.sha256(api.tokens["anon-operator"].encode()).hexdigest()[:12]
    unnamed = f"unnamed operator token sha256:{anon}"  # which token, not just "an operator"
    assert (got.program_id, got.version, got.published_by) == ("acme-b2b", 2, unnamed)
    assert [(p.program_id, p.version) for p in listed.programs] == [("acme-b2b", 2)]
    configs = [
        c for c in await values(topics, "programs.config.v1") if isinstance(c, ProgramConfig)
    ]
    assert [(c.version, c.published_by) for c in configs] == [
        (1, "ops-anna"),
        (2, unnamed),
    ]
    assert got.document == configs[1].document and got.document_sha256 == configs[1].document_sha256
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
