"""The program year's last word: the top advocate's portal, as the gRPC API serves it.

The year runs the API as a fourth process (`referrals run api`, `ServiceProcesses`) with a
tokens file holding one `portal` token made here; once the year has drained, `portal_view`
asks the API for the advocate who earned the most (`GetAdvocate`, `ListReferrals`) and words
the answer, waiting until the portal's read model shows every payout finance saw.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from pathlib import Path

import grpc

from referrals.platform.money import to_major
from services.api.proto import referrals_pb2 as pb
from services.api.proto import referrals_pb2_grpc as pb_grpc

WAIT_S = 30.0


def write_tokens(path: Path) -> str:
    """A tokens file with one new `portal` token (named "demo"); returns the token."""
    token = secrets.token_urlsafe(24)
    digest = hashlib.sha256(token.encode()).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# made by the program year for its portal view\nportal {digest} demo\n")
    return token


async def portal_view(
    port: int, token: str, advocate_id: str, issued_minor: int
) -> tuple[str, int]:
    """The advocate's portal page in a few lines, once the API shows `issued_minor` issued (or
    after WAIT_S, showing what it has); and the amount issued the API shows."""
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.AdvocatesStub(channel)  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                advocate = await stub.GetAdvocate(
                    pb.GetAdvocateRequest(advocate_id=advocate_id), metadata=metadata, timeout=5
                )
                if sum(r.issued_minor for r in advocate.rewards) >= issued_minor:
                    break
            except grpc.aio.AioRpcError as err:  # still catching up
                if time.monotonic() > deadline:
                    raise
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                    raise
            if time.monotonic() > deadline:
                break  # show what it has
            await asyncio.sleep(0.5)
        page = await stub.ListReferrals(
            pb.ListReferralsRequest(advocate_id=advocate_id, page_size=5),
            metadata=metadata,
            timeout=5,
        )
    shown = sum(r.issued_minor for r in advocate.rewards)
    return words(advocate, list(page.referrals)), shown


def words(advocate: pb.Advocate, referrals: list[pb.Referral]) -> str:
    lines = [
        f"{advocate.display_name or advocate.advocate_id} ({advocate.advocate_id}), "
        f"program {advocate.program_id}: {advocate.referrals_total} referrals, "
        f"{advocate.referrals_won_in_period} won in the current period"
    ]
    for r in advocate.rewards:
        money = {
            name: to_major(getattr(r, f"{name}_minor"), r.currency)
            for name in ("issued", "paid", "held", "failed")
        }
        lines.append(
            f"  rewards {r.currency}: issued {money['issued']}, paid {money['paid']}, "
            f"held {money['held']}, failed {money['failed']}"
        )
    if advocate.HasField("next_tier"):
        tier = advocate.next_tier
        currency = advocate.rewards[0].currency if advocate.rewards else ""
        reward = (
            f"{tier.percent}% of the deal"
            if tier.WhichOneof("reward") == "percent"
            else f"{currency} {to_major(tier.amount_minor, currency or 'USD')}"
        )
        kind = pb.RewardType.Name(tier.reward_type).removeprefix("REWARD_TYPE_")
        lines.append(
            f"  next tier: {tier.referrals_to_go} more won deal(s) to tier {tier.from_referral} "
            f"({reward}, {kind})"
        )
    else:
        lines.append("  next tier: at the top tier")
    lines.append("  newest referrals:")
    for ref in referrals:
        status = pb.ReferralStatus.Name(ref.status).removeprefix("REFERRAL_STATUS_")
        lines.append(f"    {ref.referral_id[:14]}… {status:<14} {ref.explanation}")
    return "\n".join(lines)
