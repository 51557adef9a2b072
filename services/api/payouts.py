"""`Payouts`: operators' approve / deny / retry and finance's reconciliation, through the code
`referrals approve|deny|retry` and `referrals reconcile` run (the rewards service's
`operator` and `payout_reports` adapters), so the API and the CLI cannot disagree.

A command waits for the rewards service's answer for the call's deadline (API_COMMAND_TIMEOUT_S
without one): APPLIED is OK, REFUSED is FAILED_PRECONDITION naming the payout's current state,
no answer in time is DEADLINE_EXCEEDED (the command stays in the audit log and is applied when
the service reads it). `by` is the token's name, or, for a token without one, the request's
`by` with the token's id (`auth.Caller.identity`): never only what the caller typed.
Reconcile pages its rows (lines, then errors) so no response exceeds the size limit.
"""

from __future__ import annotations

import grpc

from referrals.contract.records import CommandOutcome, RewardAction
from referrals.platform.settings import KafkaSettings
from services.api.auth import current_caller
from services.api.errors import abort, bad_request
from services.api.proto import referrals_pb2 as pb
from services.api.proto import referrals_pb2_grpc as rpc
from services.rewards.adapters import operator, payout_reports
from services.rewards.domain.reconcile import Line, Report, Totals

# Room kept from the call's deadline to answer DEADLINE_EXCEEDED ourselves, with the command
# id, before the caller's own clock gives up.
ANSWER_MARGIN_S = 0.25
DEFAULT_PAGE = 500
MAX_PAGE = 5000


class PayoutsService(rpc.PayoutsServicer):
    def __init__(
        self, kafka: KafkaSettings, *, command_timeout_s: float, max_response_bytes: int
    ) -> None:
        self.kafka = kafka
        self.command_timeout_s = command_timeout_s
        self.max_response_bytes = max_response_bytes

    async def ApproveReward(
        self, request: pb.PayoutCommandRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResponse:
        return await self._command(RewardAction.APPROVE, request, context)

    async def DenyReward(
        self, request: pb.PayoutCommandRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResponse:
        return await self._command(RewardAction.DENY, request, context)

    async def RetryPayout(
        self, request: pb.PayoutCommandRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommandResponse:
        return await self._command(RewardAction.RETRY, request, context)

    async def _command(
        self,
        action: RewardAction,
        request: pb.PayoutCommandRequest,
        context: grpc.aio.ServicerContext,
    ) -> pb.CommandResponse:
        caller = current_caller()
        by = caller.identity(request.by)
        problems = []
        if not request.payout_id.strip():
            problems.append(("payout_id", "is empty"))
        if not by:
            problems.append(("by", "is empty and the token has no name: who asks?"))
        if problems:
            await bad_request(context, "incomplete command", problems)
        reason = request.reason if request.HasField("reason") else None
        # The token the interceptor authenticated: its name, or its id for an unnamed one.
        principal = f"api-token:{caller.name or 'sha256:' + caller.token_id}"
        command = operator.new_command(action, request.payout_id, by, reason, principal=principal)
        remaining = context.time_remaining()
        wait = self.command_timeout_s if remaining is None else remaining - ANSWER_MARGIN_S
        try:
            answer = await operator.request(self.kafka, command, max(wait, 0.01))
        except operator.NoAnswer as late:
            await abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, str(late))
        if answer.result.outcome is CommandOutcome.REFUSED:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, operator.answer_text(answer))
        return pb.CommandResponse(command_id=command.command_id, state=answer.result.state or "")

    async def Reconcile(
        self, request: pb.ReconcileRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReconcileResponse:
        size = request.page_size or DEFAULT_PAGE
        start = 0
        if request.page_token:
            try:
                start = int(request.page_token)
            except ValueError:
                start = -1
        if size < 0 or size > MAX_PAGE or start < 0:
            await bad_request(
                context,
                "bad paging",
                [("page_size", f"must be 0 (default {DEFAULT_PAGE}) to {MAX_PAGE}")]
                if size < 0 or size > MAX_PAGE
                else [("page_token", "is not a token this server gave")],
            )
        report = await payout_reports.reconcile(self.kafka)
        wanted = request.program_id if request.HasField("program_id") else None
        return page(rows(report, wanted), start, size, self.max_response_bytes)


Row = pb.ReconcileLine | pb.ReconcileError


def rows(report: Report, program_id: str | None) -> list[Row]:
    """The report's lines (for one program, or all), then its errors (DUPLICATE_PAYOUT,
    PAID_TWICE, V1_V2_MISMATCH), as `referrals reconcile --json` lists them."""
    out: list[Row] = [
        line_message(line)
        for line in report.lines
        if program_id is None or line.program_id == program_id
    ]
    out += [
        pb.ReconcileError(
            payout_id=p, attempt=a, error="DUPLICATE_PAYOUT", detail=f"{n} copies on {t}"
        )
        for t, p, a, n in report.duplicates
    ]
    out += [
        pb.ReconcileError(
            payout_id=p,
            attempt=max(attempts),
            error="PAID_TWICE",
            detail="PAID on attempts " + ", ".join(str(a) for a in attempts),
        )
        for p, attempts in report.paid_twice
    ]
    out += [
        pb.ReconcileError(
            payout_id=m.payout_id, attempt=m.attempt, error="V1_V2_MISMATCH", detail=m.problem
        )
        for m in report.mismatches
    ]
    return out


def line_message(line: Line) -> pb.ReconcileLine:
    def totals(t: Totals) -> pb.Totals:
        return pb.Totals(count=t.count, amount_minor=t.amount_minor)

    return pb.ReconcileLine(
        program_id=line.program_id,
        currency=line.currency,
        issued=totals(line.issued),
        paid=totals(line.paid),
        failed=totals(line.failed),
        outstanding=totals(line.outstanding),
        attempts=line.attempts,
        clawed_back=totals(line.clawed_back),
        friends_issued=totals(line.friends.issued),
        paid_twice=totals(line.paid_twice),
    )


def page(found: list[Row], start: int, size: int, max_bytes: int) -> pb.ReconcileResponse:
    """Rows `start` onwards: at most `size`, and never more bytes than `max_bytes` (less a
    margin for framing); `next_page_token` is where the next page starts."""
    response = pb.ReconcileResponse()
    budget = max_bytes - 1024
    used = 0
    end = start
    for row in found[start : start + size]:
        cost = row.ByteSize() + 8  # the field's tag and length
        if used + cost > budget and end > start:
            break
        (response.lines if isinstance(row, pb.ReconcileLine) else response.errors).append(row)
        used += cost
        end += 1
    if end < len(found):
        response.next_page_token = str(end)
    return response
