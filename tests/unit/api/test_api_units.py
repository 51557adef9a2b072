"""The API's pieces without a server: the tokens file, `referrals api token`, Reconcile's
pages, proto -> JSON for the shared publish checks."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner

from referrals.platform.errors import ConfigError
from referrals.tools.cli import cli
from services.api.auth import Caller, Role, digest, load_tokens, new_token, parse_tokens
from services.api.convert import to_json_object
from services.api.interceptor import authorize
from services.api.payouts import page
from services.api.proto import referrals_pb2 as pb


def test_referrals_api_token_prints_a_token_and_the_line_that_admits_it() -> None:
    result = CliRunner().invoke(cli, ["api", "token", "--role", "operator", "--name", "ops-anna"])
    assert result.exit_code == 0, result.output
    token = result.stderr.split("shown once): ", 1)[1].split()[0]
    line = result.stdout.strip()
    assert line == f"operator {hashlib.sha256(token.encode()).hexdigest()} ops-anna"
    assert token not in result.stdout  # the file gets the hash, never the token
    assert parse_tokens(line).find(token) == (frozenset({Role.OPERATOR}), "ops-anna")


def test_a_token_name_must_be_one_word() -> None:
    result = CliRunner().invoke(cli, ["api", "token", "--role", "finance", "--name", "a b"])
    assert result.exit_code == 2


def test_the_tokens_file_takes_comments_names_and_several_roles_per_token() -> None:
    digest = "ab" * 32
    tokens = parse_tokens(f"# callers\n\nportal {digest}  # the portal\nfinance {digest} fin\n")
    assert tokens.entries[digest] == (frozenset({Role.PORTAL, Role.FINANCE}), "fin")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("admin " + "ab" * 32, "line 1: unknown role 'admin'"),
        ("portal s3cret-token", "line 1: the second word must be the token's SHA-256 in hex"),
        ("portal", "expected `<role> <sha256 hex of the token> [name]`"),
        ("# nothing\n", "no tokens"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_line_not_its_text(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tokens(text, "tokens.txt")
    assert problem in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_without_a_tokens_file_the_api_does_not_start() -> None:
    with pytest.raises(ConfigError, match="API_TOKENS_FILE is not set"):
        load_tokens(None)


def test_reconcile_pages_by_count_and_by_bytes() -> None:
    rows = [pb.ReconcileLine(program_id=f"p{n}", currency="USD") for n in range(5)] + [
        pb.ReconcileError(payout_id="po-1", error="PAID_TWICE", detail="x" * 3000)
    ]
    first = page(rows, 0, 2, 4 * 1024 * 1024)
    assert [r.program_id for r in first.lines] == ["p0", "p1"] and first.next_page_token == "2"
    last = page(rows, 4, 10, 4 * 1024 * 1024)
    assert len(last.lines) == 1 and len(last.errors) == 1 and last.next_page_token == ""
    small = page(rows, 0, 10, 3 * 1024)  # the 3 kB error does not fit beside the lines
    assert len(small.lines) == 5 and not small.errors and small.next_page_token == "5"
    assert small.ByteSize() <= 3 * 1024


def test_a_proto_record_becomes_the_json_a_publish_line_holds() -> None:
    deal = pb.DealEvent(event_id="e", stage=pb.DEAL_STAGE_WON, currency="USD")
    deal.occurred_at.FromMilliseconds(1_715_938_215_123)
    assert to_json_object(deal) == {
        "event_id": "e",
        "program_id": "",
        "deal_id": "",
        "prospect_id": "",
        "stage": "WON",
        "currency": "USD",
        "occurred_at": 1_715_938_215_123,
    }
    assert to_json_object(pb.ShareEvent())["channel"] == "CHANNEL_UNSPECIFIED"
    assert "occurred_at" not in to_json_object(pb.ShareEvent())


def test_the_audit_log_records_the_tokens_name_or_the_claim_with_the_token() -> None:
    named = Caller(Role.OPERATOR, "ops-anna", "0123456789ab")
    unnamed = Caller(Role.OPERATOR, None, "0123456789ab")
    assert named.identity("somebody else") == "ops-anna"
    assert unnamed.identity("  ops  bob ") == "ops bob (unnamed operator token sha256:0123456789ab)"
    assert unnamed.identity("") == ""
    assert unnamed.token == "unnamed operator token sha256:0123456789ab"


def test_the_caller_carries_the_id_of_the_token_it_presented() -> None:
    token, line = new_token(Role.OPERATOR)
    caller = authorize(
        parse_tokens(line), "/referrals.v1.Payouts/ApproveReward", Role.OPERATOR,
        (("authorization", f"Bearer {token}"),),
    )  # fmt: skip
    assert caller.token_id == digest(token)[:12] and caller.name is None
    assert token not in caller.identity("ops-bob")
