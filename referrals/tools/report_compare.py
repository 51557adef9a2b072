"""The program report against the simulator's ground truth: which figures agree.

Counts must be exact; ratios may differ by `TOLERANCE` (1 percentage point), since the
simulator's published figures are targets a finite sample approaches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from referrals.tools.report_figures import BUCKETS, CHANNELS, TOLERANCE, TOPS, Report


@dataclass(frozen=True, slots=True)
class Comparison:
    """A measured figure beside the generator's ground truth; `ok` if equal (exact) or within
    `tolerance` (absolute)."""

    name: str
    measured: float
    truth: float
    exact: bool
    ok: bool
    tolerance: float = 0.0
    published: float | None = None  # the published figure the generator reproduces
    informational: bool = False  # shown beside the truth, never a mismatch


def compare(report: Report, truth: Mapping[str, Any]) -> list[Comparison]:
    """Each figure the generator knows, measured vs its ground truth (`Simulation.truth`).

    Counts the system must get exactly right: advocates enrolled and active, referrals
    attributed and won, rejections by reason, rewards owed (won referrals less denied ones) vs
    payouts issued, and the money rules' figures: friend rewards and clawbacks (count and
    amount, from rewards.payouts.v2), denials and fraud holds. The simulated year is planned so
    that these do not depend on the order in which a live run processes close events
    (`referrals.tools.simulate_money`). Pause holds depend on where the services were when the
    program was paused: shown beside the WONs that arrived in the stretch, informational.
    Ratios are compared within TOLERANCE (1 percentage point): they derive from those exact
    counts, so in a correct run they are equal too; the margin absorbs a conflicting claim
    that a live multi-partition run happens to decide after the deal was won. Ratios also
    carry the published figure the generator aims at (`truth["targets"]`), for the reader.
    """
    mine, theirs = report.figures.to_dict(), truth["figures"]
    out = [
        _exact(label, mine[key], theirs[key])
        for label, key in (
            ("advocates enrolled", "enrolled"),
            ("advocates active", "active"),
            ("referrals attributed", "referrals_attributed"),
            ("referrals won", "referrals_won"),
        )
    ]
    for reason in sorted(set(report.rejections) | set(truth["rejections"])):
        found, expected = report.rejections.get(reason, 0), truth["rejections"].get(reason, 0)
        out.append(_exact(f"rejected {reason}", found, expected))
    out.append(_exact("rewards owed vs issued", report.payouts["issued"], truth["rewards_owed"]))
    out += _money(report.money, truth)
    targets = truth.get("targets", {})
    for name, path, target_path in _RATIOS:
        published = _dig(targets, target_path) if target_path else None
        out.append(_near(name, _dig(mine, path), _dig(theirs, path), published))
    return out


# (name, path in Figures.to_dict(), path in the generator's published targets)
_RATIOS: list[tuple[str, tuple[str, ...], tuple[str, ...] | None]] = [
    ("share of advocates active", ("active_share",), ("active_share",)),
    *(
        (
            f"active advocates making {b} referral{'' if b == '1' else 's'}",
            ("referrals_per_advocate_share", b),
            ("referrals_per_advocate_share", b),
        )
        for b in BUCKETS
    ),
    *(
        row
        for ch in CHANNELS
        for row in (
            (f"channel mix {ch.value}", ("channels", ch.value, "share"), ("channel_mix", ch.value)),
            (
                f"conversion {ch.value}",
                ("channels", ch.value, "conversion"),
                ("conversion", ch.value),
            ),
        )
    ),
    ("conversion overall", ("conversion_overall",), ("conversion_overall",)),
    *(
        row
        for label in TOPS
        for row in (
            (
                f"top {label} share of referrals",
                ("top_advocates", label, "referrals_share"),
                ("top_advocates_referrals_share", label),
            ),
            (f"top {label} share of deals", ("top_advocates", label, "deals_share"), None),
        )
    ),
]


def _money(mine: Mapping[str, Any], truth: Mapping[str, Any]) -> list[Comparison]:
    if "friend_rewards" not in truth:  # a truth file from before the money rules
        return []
    out = [
        _exact(f"{label} {what}", mine[key][field], truth[key][field])
        for key, label in (("friend_rewards", "friend rewards"), ("clawbacks", "clawbacks"))
        for field, what in (("count", "issued"), ("amount_minor", "amount (minor units)"))
    ]
    out.append(_exact("fraud holds (FRAUD_REVIEW)", mine["fraud_holds"], truth["fraud_holds"]))
    out.append(_exact("denials (REJECTED DENIED)", mine["denials"], truth["denials"]))
    expected = truth["pause"]["held_expected"]
    out.append(
        Comparison(
            "pause holds (PROGRAM_PAUSED)",
            mine["pause_holds"],
            expected,
            False,
            True,
            informational=True,
        )
    )
    return out


def _dig(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        data = data.get(key, {}) if isinstance(data, Mapping) else {}
    return None if isinstance(data, Mapping) else data


def _exact(name: str, measured: int, truth: int) -> Comparison:
    return Comparison(name, measured, truth, exact=True, ok=measured == truth)


def _near(name: str, measured: float, truth: float, published: float | None) -> Comparison:
    ok = abs(measured - truth) <= TOLERANCE + 1e-12
    return Comparison(name, measured, truth, False, ok, TOLERANCE, published)
