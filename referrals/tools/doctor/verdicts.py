"""The programs, services and lag checks' rules, without Kafka or HTTP: facts in, findings out.

- programs: the newest record of each program on programs.config.v1 must pass the checks every
  service applies (decodes, checksum, document valid and naming its program), or the services
  dead-letter it and keep the version before.
- services: each one's /readyz answers 200; a 503 lists the problems that keep it unready.
- lag: a consumer group's committed offsets trail its inputs' ends by at most the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from referrals.contract.avro import AvroCodec
from referrals.contract.records import ProgramConfig
from referrals.platform.errors import ReferralsError
from referrals.programs.catalog import ProgramCatalog
from referrals.tools.doctor.findings import Finding, ok, problem

SHOWN = 10  # programs named in the ok line


# -- programs -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProgramRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def judge_programs(topic: str, records: Iterable[ProgramRecord]) -> list[Finding]:
    """Replays the topic as a service does (`ProgramCatalog`), noting whether each program's
    newest record was accepted."""
    catalog, codec = ProgramCatalog(), AvroCodec()
    newest: dict[bytes | None, tuple[ProgramRecord, str]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.value is None:  # a tombstone: compaction removes the program
            newest.pop(record.key, None)
            continue
        try:
            config = codec.decode(record.value, "ProgramConfig")
            assert isinstance(config, ProgramConfig)
            catalog.apply(config)
            newest[record.key] = (record, "")
        except ReferralsError as err:
            newest[record.key] = (record, f"{err.reason}: {err}")
    findings = [_refused(catalog, key, *seen) for key, seen in newest.items() if seen[1]]
    if not newest:
        findings.append(_no_program(topic))
    elif len(findings) < len(newest):
        findings.insert(0, ok("programs", "", _parsed(catalog, newest)))
    return findings


def _refused(
    catalog: ProgramCatalog, key: bytes | None, record: ProgramRecord, why: str
) -> Finding:
    name = key.decode("utf-8", "replace") if key is not None else "(no key)"
    program = catalog.get(name)
    kept = f"version {program.version} stays in force" if program else "no version is in force"
    detail = (
        f"its newest record (partition {record.partition}, offset {record.offset}) is refused "
        f"by every service ({why}); {kept}"
    )
    fix = "correct the document: referrals program validate FILE && referrals program put FILE"
    return problem("programs", name, detail, fix)


def _no_program(topic: str) -> Finding:
    detail = (
        f"no program on {topic}: every event waits for its program, then goes to its .dlq as "
        f"UNKNOWN_PROGRAM"
    )
    return problem("programs", "", detail, "referrals program put FILE")


def _parsed(catalog: ProgramCatalog, newest: Mapping[bytes | None, object]) -> str:
    programs = [catalog.get(k.decode("utf-8", "replace")) for k in newest if k is not None]
    named = [f"{p.program_id} v{p.version}" for p in programs if p is not None]
    more = f" and {len(named) - SHOWN} more" if len(named) > SHOWN else ""
    return f"{len(named)} program(s) parse as the services read them: " + (
        ", ".join(named[:SHOWN]) + more
    )


# -- services -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Readiness:
    service: str
    url: str
    status: int | None  # the HTTP status; None when nothing answered
    body: Mapping[str, Any] | None = None
    error: str = ""  # why nothing answered


def judge_readiness(seen: Readiness, start_hint: str) -> Finding:
    if seen.status is None:
        detail = f"nothing answers at {seen.url} ({seen.error})"
        fix = (
            f"start it: {start_hint}\n"
            f"if it runs elsewhere, tell doctor where: --url {seen.service}=http://HOST:PORT"
        )
        return problem("services", seen.service, detail, fix)
    if seen.status == 200:
        return ok("services", seen.service, f"ready ({seen.url})")
    problems = (seen.body or {}).get("problems") or {}
    if isinstance(problems, Mapping) and problems:
        why = "; ".join(f"{name}: {text}" for name, text in sorted(problems.items()))
        detail = f"not ready (HTTP {seen.status} at {seen.url}): {why}"
        fix = (
            "the problems say what it cannot reach or do; its log (JSON lines on standard "
            "error) has a line when each began. It becomes ready by itself once they clear"
        )
    else:
        detail = f"not ready yet (HTTP {seen.status} at {seen.url}): still starting"
        fix = "wait for its global tables to load and its group to form; if it stays, see its log"
    return problem("services", seen.service, detail, fix)


# -- consumer lag -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GroupLag:
    service: str
    group: str
    state: str  # the group's state at the coordinator: Stable, Empty, Dead, ...
    members: int
    lag: Mapping[tuple[str, int], int]  # (physical topic, partition) -> records not committed
    partitions: int  # partitions per input: the most instances that can share the work


def judge_lag(group: GroupLag, max_lag: int, start_hint: str) -> Finding:
    """A problem when the group trails its inputs by more than `max_lag` records in all.

    A transaction's commit marker takes an offset of its own, so a group that has read
    everything may still trail by one per partition written transactionally: keep the
    threshold above the partition count."""
    total = sum(group.lag.values())
    members = f"{group.members} member{'s' if group.members != 1 else ''}, {group.state}"
    if total <= max_lag:
        detail = f"group {group.group}: {total:,} records behind (threshold {max_lag:,}); {members}"
        return ok("lag", group.service, detail)
    (topic, partition), worst = max(group.lag.items(), key=lambda item: item[1])
    detail = (
        f"group {group.group}: {total:,} records behind, above the threshold of {max_lag:,} "
        f"(most on {topic}[{partition}]: {worst:,}); {members}"
    )
    if group.members == 0:
        fix = f"no instance of {group.service} is consuming: start it: {start_hint}"
    else:
        fix = (
            f"{group.service} is not keeping up: its /metrics referrals_consumer_lag shows where; "
            f"check its readiness and log, or add instances (at most {group.partitions}, one per "
            f"partition)"
        )
    return problem("lag", group.service, detail, fix)


def lag_of(
    ends: Mapping[tuple[str, int], int],
    starts: Mapping[tuple[str, int], int],
    committed: Mapping[tuple[str, int], int],
) -> dict[tuple[str, int], int]:
    """Records not yet committed per partition: from the committed offset, or from the log's
    start where the group committed nothing yet (a new group reads from the beginning)."""
    out = {}
    for tp, end in ends.items():
        done = committed.get(tp, -1)
        position = done if done >= 0 else starts.get(tp, 0)
        out[tp] = max(0, end - position)
    return out


def partitions_per_input(lag: Sequence[tuple[str, int]]) -> int:
    counts: dict[str, int] = {}
    for topic, _ in lag:
        counts[topic] = counts.get(topic, 0) + 1
    return max(counts.values(), default=0)
