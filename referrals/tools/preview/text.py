"""The preview as a person reads it: the money table, totals, holds, and the changed outcomes."""

from __future__ import annotations

from referrals.tools.preview.compare import Preview, Tally, money, to_dict

CHANGES_SHOWN = 50  # more are counted; `--json` lists every one


def to_text(preview: Preview, limit: int = CHANGES_SHOWN) -> str:
    since = f" since {preview.since.isoformat()}" if preview.since else ""
    lines = [
        f"Preview of {preview.document} as {preview.program_id} version {preview.version}: "
        f"{preview.events:,} recorded events replayed at {preview.now.isoformat()}{since}.",
        "",
        f"{'recipient':<9} {'tier':>4} {'reward_type':<12} {'would issue':>24} "
        f"{'issued':>24} {'difference':>26}",
    ]
    for row in to_dict(preview)["rewards"]:
        lines.append(
            f"{row['recipient']:<9} {row['tier']:>4} {row['reward_type']:<12} "
            + _cells(row["would_issue"], row["issued"], row["currency"])
        )
    for currency, (would, issued) in sorted(preview.totals().items()):
        lines.append(f"{'total':<9} {'':>4} {'':<12} " + _cells_of(would, issued, currency))
    for currency, (would, issued) in sorted(preview.clawbacks.items()):
        lines.append(f"{'clawbacks':<9} {'':>4} {'':<12} " + _cells_of(would, issued, currency))
    if len(lines) == 3:
        lines.append("(no payouts, recorded or replayed)")
    if preview.held:
        held = ", ".join(
            f"{reason} {would} (now {now})" for reason, (would, now) in sorted(preview.held.items())
        )
        lines += ["", f"held at the end (would be held, held now): {held}"]
    lines += ["", _changes_title(preview)]
    for change in preview.changes[:limit]:
        lines.append(
            f"  {change.referral_id}  {change.advocate_id}  {change.before} -> {change.after}"
        )
    if len(preview.changes) > limit:
        lines.append(f"  ... and {len(preview.changes) - limit} more (--json lists them all)")
    return "\n".join(lines)


def _changes_title(preview: Preview) -> str:
    count = len(preview.changes)
    if count == 0:
        return "No referral's outcome changes."
    return f"{count} referral outcome(s) change (referral, advocate, before -> after):"


def _cells(would: dict[str, int], issued: dict[str, int], currency: str) -> str:
    return _cells_of(
        Tally(would["count"], would["amount_minor"]),
        Tally(issued["count"], issued["amount_minor"]),
        currency,
    )


def _cells_of(would: Tally, issued: Tally, currency: str) -> str:
    count = would.count - issued.count
    amount = would.amount_minor - issued.amount_minor
    sign = "+" if amount >= 0 else "-"
    difference = f"{count:+d} {sign}{money(abs(amount), currency)}"
    return (
        f"{would.count:>6} {money(would.amount_minor, currency):>17} "
        f"{issued.count:>6} {money(issued.amount_minor, currency):>17} {difference:>26}"
    )
