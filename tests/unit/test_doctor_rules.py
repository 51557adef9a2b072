"""`referrals doctor`'s rules without Kafka: what makes a topic, a program, a service or a consumer
group a problem, and the fix each problem names."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from referrals.contract.avro import AvroCodec
from referrals.contract.records import ProgramConfig
from referrals.contract.topics import TopicNames, physical_topics
from referrals.programs.document import canonical_json, parse_document, validate
from referrals.tools.doctor.findings import (
    NO_BROKER,
    PROBLEMS,
    Finding,
    Report,
    Status,
    ok,
    problem,
    to_json,
    to_text,
)
from referrals.tools.doctor.topicrules import Seen, Wanted, judge_topics
from referrals.tools.doctor.verdicts import (
    GroupLag,
    ProgramRecord,
    Readiness,
    judge_lag,
    judge_programs,
    judge_readiness,
    lag_of,
)

B = "kafka:9092"


def _seen(name: str, partitions: int = 6, replicas: int = 3, **configs: str) -> Seen:
    return Seen(name, partitions, replicas, {"min.insync.replicas": "2", **configs})


def _problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status is Status.PROBLEM]


# -- topics -------------------------------------------------------------------------------------
def test_topics_as_created_on_three_brokers_are_one_ok_finding() -> None:
    wanted = [Wanted("a", {"cleanup.policy": "compact"}), Wanted("b", {"retention.ms": "-1"})]
    seen = {
        "a": _seen("a", **{"cleanup.policy": "compact"}),
        "b": _seen("b", **{"retention.ms": "-1"}),
    }
    findings = judge_topics(wanted, seen, brokers=3, partitions=None, bootstrap=B)
    assert [f.status for f in findings] == [Status.OK]
    assert "all 2 topics" in findings[0].detail and "min.insync.replicas 2" in findings[0].detail


def test_a_missing_topic_is_a_problem_whose_fix_creates_it_with_the_others_partition_count() -> (
    None
):
    wanted = [Wanted("a", {}), Wanted("b", {})]
    findings = judge_topics(wanted, {"a": _seen("a")}, brokers=3, partitions=None, bootstrap=B)
    [missing] = _problems(findings)
    assert (missing.subject, missing.detail) == ("b", "missing")
    assert missing.fix.startswith("referrals topics create --partitions 6")


def test_missing_topics_are_grouped_by_what_creates_them() -> None:
    wanted = [Wanted(n, {}) for n in "abc"] + [Wanted("r.changelog", {}, "start rewards")]
    findings = judge_topics(wanted, {}, brokers=1, partitions=None, bootstrap=B)
    assert [(f.subject, f.fix) for f in findings] == [
        ("3 topics", "referrals topics create"),
        ("r.changelog", "start rewards"),
    ]
    assert findings[0].detail == "missing: a, b, c"


def test_a_topic_missing_for_a_sasl_user_may_be_one_it_may_not_see() -> None:
    findings = judge_topics(
        [Wanted("a", {})], {}, brokers=1, partitions=None, bootstrap=B, user="ops"
    )
    assert findings[0].detail == (
        "missing (or not visible to User:ops; doctor needs to describe every topic)"
    )


def test_the_topic_whose_partition_count_differs_from_the_others_is_the_problem() -> None:
    wanted = [Wanted(n, {}) for n in "abcd"]
    seen = {n: _seen(n, partitions=6) for n in "abc"} | {"d": _seen("d", partitions=8)}
    [wrong] = _problems(judge_topics(wanted, seen, brokers=3, partitions=None, bootstrap=B))
    assert wrong.subject == "d" and wrong.detail.startswith("8 partitions, expected 6")
    assert "cannot remove partitions" in wrong.fix and "--delete --topic d" in wrong.fix


def test_partitions_named_on_the_command_line_are_the_expected_count() -> None:
    wanted = [Wanted(n, {}) for n in "ab"]
    seen = {n: _seen(n, partitions=6) for n in "ab"}
    found = _problems(judge_topics(wanted, seen, brokers=3, partitions=12, bootstrap=B))
    assert [f.subject for f in found] == ["a", "b"]
    assert all("--alter --topic" in f.fix and "--partitions 12" in f.fix for f in found)


def test_replication_must_be_the_smaller_of_three_and_the_brokers() -> None:
    wanted = [Wanted("a", {})]
    one = {"a": Seen("a", 6, 1, {"min.insync.replicas": "1"})}
    assert not _problems(judge_topics(wanted, one, brokers=1, partitions=None, bootstrap=B))
    assert not _problems(
        judge_topics(wanted, {"a": _seen("a")}, brokers=5, partitions=None, bootstrap=B)
    )
    found = _problems(judge_topics(wanted, one, brokers=3, partitions=None, bootstrap=B))
    assert {f.detail for f in found} == {
        "replication factor 1, expected 3 (min(3, brokers) with 3 brokers)",
        "min.insync.replicas is 1, expected 2",
    }


def test_a_config_that_differs_from_the_catalogue_names_the_command_that_sets_it() -> None:
    wanted = [Wanted("ads", {"cleanup.policy": "compact"})]
    seen = {"ads": _seen("ads", **{"cleanup.policy": "delete"})}
    [wrong] = _problems(judge_topics(wanted, seen, brokers=3, partitions=None, bootstrap=B))
    assert wrong.detail == "cleanup.policy is delete, expected compact"
    assert wrong.fix == (
        "kafka-configs.sh --bootstrap-server kafka:9092 --alter --entity-type topics "
        "--entity-name ads --add-config cleanup.policy=compact"
    )


def test_the_expected_topics_are_the_catalogue_s_with_compaction_where_it_says() -> None:
    wanted = physical_topics(TopicNames("p."))
    assert wanted["p.programs.config.v1"]["cleanup.policy"] == "compact"
    assert wanted["p.referral.advocates.v1"]["cleanup.policy"] == "compact"
    assert wanted["p.referral.deals.v1"].get("cleanup.policy", "delete") == "delete"


# -- programs -----------------------------------------------------------------------------------
DOC = canonical_json(
    validate(
        parse_document(
            "program_id: acme\ncurrency: USD\nrewards:\n  tiers:\n"
            '    - {from_referral: 1, amount: "50.00", reward_type: GIFT_CARD}\n'
        )
    )
)


def _program(version: int, document: str = DOC, sha: str | None = None) -> bytes:
    digest = sha or hashlib.sha256(document.encode()).hexdigest()
    config = ProgramConfig("acme", version, document, digest, datetime(2026, 1, 1, tzinfo=UTC))
    return AvroCodec().encode(config)


def test_programs_that_parse_are_named_with_their_version() -> None:
    records = [ProgramRecord(0, 0, b"acme", _program(1)), ProgramRecord(0, 1, b"acme", _program(2))]
    [finding] = judge_programs("programs.config.v1", records)
    assert finding.status is Status.OK and finding.detail.endswith("acme v2")


def test_a_program_whose_newest_record_is_refused_keeps_the_version_before() -> None:
    records = [
        ProgramRecord(0, 0, b"acme", _program(1)),
        ProgramRecord(0, 1, b"acme", _program(2, sha="0" * 64)),
    ]
    [refused] = judge_programs("programs.config.v1", records)
    assert refused.status is Status.PROBLEM and refused.subject == "acme"
    assert "offset 1" in refused.detail and "BAD_PROGRAM_DOCUMENT" in refused.detail
    assert "version 1 stays in force" in refused.detail
    assert "referrals program put" in refused.fix


def test_undecodable_bytes_on_the_programs_topic_are_a_problem() -> None:
    [refused] = judge_programs("programs.config.v1", [ProgramRecord(2, 7, b"x", b"not avro")])
    assert refused.subject == "x" and "BAD_MAGIC" in refused.detail
    assert "no version is in force" in refused.detail


def test_a_bad_record_followed_by_a_good_version_is_history_not_a_problem() -> None:
    records = [ProgramRecord(0, 0, b"acme", b"junk"), ProgramRecord(0, 1, b"acme", _program(1))]
    assert [f.status for f in judge_programs("t", records)] == [Status.OK]


def test_no_program_at_all_is_a_problem() -> None:
    [none] = judge_programs("programs.config.v1", [])
    assert none.status is Status.PROBLEM and "UNKNOWN_PROGRAM" in none.detail
    assert none.fix == "referrals program put FILE"


# -- services -----------------------------------------------------------------------------------
def test_a_service_that_answers_200_is_ready() -> None:
    seen = Readiness("rewards", "http://h:1/readyz", 200, {"ok": True})
    assert judge_readiness(seen, "referrals run rewards").status is Status.OK


def test_an_unready_service_lists_the_problems_it_reports() -> None:
    body = {"ok": False, "problems": {"broker": "no broker answers", "timers": "failing"}}
    seen = Readiness("rewards", "http://h:1/readyz", 503, body)
    found = judge_readiness(seen, "referrals run rewards")
    assert found.status is Status.PROBLEM
    assert found.detail.endswith("broker: no broker answers; timers: failing")


def test_a_service_nothing_answers_for_is_to_be_started_or_pointed_at() -> None:
    seen = Readiness("api", "http://h:1/readyz", None, error="connection refused")
    found = judge_readiness(seen, "referrals run api")
    assert "connection refused" in found.detail
    assert "referrals run api" in found.fix and "--url api=" in found.fix


# -- lag ----------------------------------------------------------------------------------------
def _group(lag: dict[tuple[str, int], int], members: int = 1) -> GroupLag:
    return GroupLag("rewards", "g", "Stable" if members else "Empty", members, lag, 6)


def test_a_group_within_the_threshold_is_ok() -> None:
    assert judge_lag(_group({("s", 0): 3, ("s", 1): 2}), 5, "run").status is Status.OK


def test_a_group_past_the_threshold_names_its_worst_partition() -> None:
    found = judge_lag(_group({("s", 0): 3, ("s", 1): 9}), 5, "run")
    assert found.status is Status.PROBLEM
    assert "12 records behind" in found.detail and "s[1]: 9" in found.detail
    assert "at most 6" in found.fix


def test_a_lagging_group_with_no_member_is_to_be_started() -> None:
    found = judge_lag(_group({("s", 0): 50}, members=0), 5, "referrals run rewards")
    assert found.fix.startswith("no instance of rewards is consuming")


def test_lag_counts_from_the_log_start_where_the_group_committed_nothing() -> None:
    ends = {("s", 0): 100, ("s", 1): 100, ("s", 2): 40}
    starts = {("s", 0): 0, ("s", 1): 30, ("s", 2): 0}
    assert lag_of(ends, starts, {("s", 0): 90, ("s", 2): -1}) == {
        ("s", 0): 10,
        ("s", 1): 70,
        ("s", 2): 40,
    }


# -- the report ---------------------------------------------------------------------------------
def test_the_exit_status_is_0_healthy_1_problems_2_no_broker() -> None:
    fine, bad = ok("broker", "", "reachable"), problem("topics", "a", "missing", "create it")
    assert Report(B, "", (fine,), broker_reached=True).exit_status == 0
    assert Report(B, "", (fine, bad), broker_reached=True).exit_status == PROBLEMS
    assert Report(B, "", (bad,), broker_reached=False).exit_status == NO_BROKER


def test_the_text_report_puts_each_fix_under_its_problem() -> None:
    bad = problem("topics", "a", "missing", "first line\nsecond line")
    text = to_text(Report(B, "p.", (ok("broker", "", "reachable"), bad), True))
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("PROBLEM"))
    assert lines[at].split() == ["PROBLEM", "topics", "a:", "missing"]
    assert lines[at + 1].strip() == "fix: first line"
    assert lines[at + 2].strip() == "second line"
    assert lines[-1] == "1 problem found (exit status 1)"


def test_the_json_report_has_every_finding_and_the_verdict() -> None:
    bad = problem("lag", "rewards", "behind", "scale out")
    data = json.loads(to_json(Report(B, "", (ok("broker", "", "reachable"), bad), True)))
    assert data["healthy"] is False and data["exit_status"] == 1 and data["problems"] == 1
    assert data["findings"][1] == {
        "check": "lag",
        "subject": "rewards",
        "status": "problem",
        "detail": "behind",
        "fix": "scale out",
    }
