"""The program report as one self-contained HTML page: inline CSS and SVG, no scripts or fonts.

Two charts answer the first questions at a glance: how the channels compare (share of referrals
beside conversion rate) and how referrals spread over advocates (referrals per advocate, and the
share of the top 1% and 10%). Tables below hold rewards, rejections, payouts and latencies; with
a ground truth, every figure the generator knows is listed beside it with a match mark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from html import escape
from typing import Any

from referrals.platform.money import to_major
from referrals.tools.report_compare import Comparison
from referrals.tools.report_figures import Report

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1080px;color:#1f2933;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
.tiles{display:flex;flex-wrap:wrap;gap:.8em}.tile{background:#f4f6f8;border-radius:8px;
padding:.6em 1em;min-width:140px}.tile b{display:block;font-size:1.5em}
.charts{display:flex;flex-wrap:wrap;gap:2em}table{border-collapse:collapse;margin:.5em 0}
td,th{padding:.25em .8em;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.ok{color:#1a7f37}.bad{color:#cf222e;font-weight:bold}
.muted{color:#6b7785;font-size:.9em}
"""
_BLUE, _ORANGE, _GREY = "#2f6fdf", "#f08c2e", "#9aa5b1"


def render(report: Report, comparisons: Sequence[Comparison] | None = None) -> str:
    """The whole page; the table of comparisons with a ground truth only when given."""
    figures = report.figures.to_dict()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Referral program report: {escape(report.program_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Referral program report: {escape(report.program_id)}</h1>",
        '<p class="muted">Measured from the program\'s topics (profiles, shares, statuses,'
        " payouts, payout results, notifications).</p>",
        _tiles(report, figures),
        "<h2>Channels and advocates</h2>",
        f'<div class="charts">{channel_chart(figures)}{advocate_chart(figures)}</div>',
    ]
    if comparisons is not None:
        parts.append(_comparisons(comparisons))
    parts += [
        _rewards(report),
        _rejections(report),
        _payouts(report),
        _money_moves(report),
        _latency(report),
    ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _money(report: Report, minor: int) -> str:
    return f"{escape(report.currency)} {Decimal(to_major(minor, report.currency)):,}"


def _tiles(report: Report, figures: Mapping[str, Any]) -> str:
    tiles = [
        ("advocates enrolled", f"{figures['enrolled']:,}"),
        ("active (1+ referral)", _pct(figures["active_share"])),
        ("referrals attributed", f"{figures['referrals_attributed']:,}"),
        (
            "won (conversion)",
            f"{figures['referrals_won']:,} ({_pct(figures['conversion_overall'])})",
        ),
        ("rewards issued", f"{report.payouts['issued']:,}"),
        ("average reward", _money(report, report.rewards["average_minor"])),
    ]
    body = "".join(
        f'<div class="tile">{escape(label)}<b>{value}</b></div>' for label, value in tiles
    )
    return f'<div class="tiles">{body}</div>'


def _bar_rows(
    rows: Iterable[tuple[str, Sequence[tuple[float, str]]]], width: int, title: str
) -> str:
    """Horizontal bars: one group per row label, one bar per (value 0..1, colour)."""
    rows = list(rows)
    per_group = max((len(bars) for _, bars in rows), default=1)
    bar_h, label_w, plot_w = 14, 110, width - 170
    group_h = per_group * (bar_h + 3) + 10
    height = 40 + group_h * len(rows)
    top = max((v for _, bars in rows for v, _ in bars), default=0.0) or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, bars) in enumerate(rows):
        y0 = 32 + i * group_h
        out.append(f'<text x="0" y="{y0 + bar_h}" font-size="12">{escape(label)}</text>')
        for j, (value, colour) in enumerate(bars):
            y = y0 + j * (bar_h + 3)
            w = round(plot_w * value / top, 1)
            out.append(
                f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{colour}" />'
            )
            x = label_w + w + 4
            out.append(f'<text x="{x}" y="{y + bar_h - 3}" font-size="11">{_pct(value)}</text>')
    out.append("</svg>")
    return "".join(out)


def _legend(items: Iterable[tuple[str, str]]) -> str:
    return "".join(
        f'<span style="color:{colour}">&#9632;</span> {escape(text)} &nbsp;'
        for text, colour in items
    )


def channel_chart(figures: Mapping[str, Any]) -> str:
    """Per channel: its share of attributed referrals (blue) and its conversion rate (orange)."""
    rows = [
        (channel.replace("_", " ").lower(), ((c["share"], _BLUE), (c["conversion"], _ORANGE)))
        for channel, c in figures["channels"].items()
    ]
    legend = _legend((("share of referrals", _BLUE), ("conversion to won deal", _ORANGE)))
    chart = _bar_rows(rows, 480, "Channels: share of referrals and conversion")
    return f'<figure id="channel-chart">{chart}<figcaption>{legend}</figcaption></figure>'


def advocate_chart(figures: Mapping[str, Any]) -> str:
    """Active advocates by referrals made, and the share of referrals/deals of the top ones."""
    shares = figures["referrals_per_advocate_share"]
    rows: list[tuple[str, Sequence[tuple[float, str]]]] = [
        (f"{bucket} referral{'s' if bucket != '1' else ''}", ((shares[bucket], _BLUE),))
        for bucket in shares
    ]
    for label, top in figures["top_advocates"].items():
        rows.append(
            (f"top {label}", ((top["referrals_share"], _GREY), (top["deals_share"], _ORANGE)))
        )
    legend = _legend(
        (
            ("share of active advocates", _BLUE),
            ("share of referrals", _GREY),
            ("share of won deals", _ORANGE),
        )
    )
    chart = _bar_rows(rows, 480, "Advocates: referrals per advocate, top advocates")
    return f'<figure id="advocate-chart">{chart}<figcaption>{legend}</figcaption></figure>'


def _table(title: str, head: Sequence[str], rows: Iterable[Sequence[str]], note: str = "") -> str:
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    note_html = f'<p class="muted">{escape(note)}</p>' if note else ""
    return f"<h2>{escape(title)}</h2>{note_html}<table><tr>{header}</tr>{body}</table>"


def _value(value: float, exact: bool) -> str:
    return f"{int(value):,}" if exact else _pct(value)


def _rule(c: Comparison) -> str:
    if c.informational:
        return "informational"
    return "exact" if c.exact else f"&#177; {c.tolerance * 100:g} pct. pt."


def _comparisons(comparisons: Sequence[Comparison]) -> str:
    rows = [
        (
            escape(c.name),
            _value(c.measured, c.exact),
            _value(c.truth, c.exact),
            "" if c.published is None else _pct(c.published),
            _rule(c),
            '<span class="ok">&#10003; match</span>'
            if c.ok
            else '<span class="bad">&#10007; differs</span>',
        )
        for c in comparisons
    ]
    note = (
        "Ground truth: what the generator knows it produced. Counts must match exactly, ratios"
        " within the stated tolerance. Published: the program figures the generator reproduces."
        " Pause holds depend on how far the services were when the program was paused: shown"
        " beside the won deals that arrived in the paused stretch, for information."
    )
    head = ("figure", "measured", "ground truth", "published", "rule", "")
    return _table("Measured vs ground truth", head, rows, note)


def _rewards(report: Report) -> str:
    r = report.rewards
    rows = [
        (escape(t.replace("_", " ").lower()), f"{v['count']:,}", _money(report, v["amount_minor"]))
        for t, v in r["by_type"].items()
    ]
    rows.append(
        ("<b>all</b>", f"<b>{r['count']:,}</b>", f"<b>{_money(report, r['amount_minor'])}</b>")
    )
    bands = {"below_41": "under 41", "41_to_100": "41 to 100", "above_100": "over 100"}
    band_rows = [
        (bands[b], f"{n:,}", _pct(n / r["count"]) if r["count"] else "-")
        for b, n in r["by_band"].items()
    ]
    holds = [(escape(reason), f"{n:,}") for reason, n in report.holds.items()] or [("none", "0")]
    return (
        _table("Rewards by type", ("type", "rewards", "amount"), rows)
        + _table(
            f"Rewards by amount ({report.currency})",
            ("band", "rewards", "share"),
            band_rows,
            f"Average reward: {_money(report, r['average_minor'])}",
        )
        + _table("Rewards held, by reason", ("reason", "referrals"), holds)
    )


def _rejections(report: Report) -> str:
    rows = [(escape(reason), f"{n:,}") for reason, n in report.rejections.items()] or [
        ("none", "0")
    ]
    return _table("Rejected claims, by reason", ("reason", "claims"), rows)


def _payouts(report: Report) -> str:
    p = report.payouts
    rows = [
        ("issued", f"{p['issued']:,}", _money(report, p["issued_amount_minor"])),
        ("attempts", f"{p['attempts']:,}", ""),
        ("paid", f"{p['paid']:,}", _money(report, p["paid_amount_minor"])),
        ("failed", f"{p['failed']:,}", ""),
    ]
    return _table("Payouts", ("", "count", "amount"), rows)


def _money_moves(report: Report) -> str:
    """Friend rewards and clawbacks (rewards.payouts.v2), denials and review holds."""
    m = report.money
    if not m:
        return ""
    friends, clawbacks = m["friend_rewards"], m["clawbacks"]
    rows = [
        ("friend rewards issued", f"{friends['count']:,}", _money(report, friends["amount_minor"])),
        ("friend rewards paid", f"{friends['paid']:,}", ""),
        ("clawbacks", f"{clawbacks['count']:,}", _money(report, clawbacks["amount_minor"])),
        ("denied by an operator (REJECTED DENIED)", f"{m['denials']:,}", ""),
        ("held for fraud review (FRAUD_REVIEW)", f"{m['fraud_holds']:,}", ""),
        ("held while paused (PROGRAM_PAUSED)", f"{m['pause_holds']:,}", ""),
    ]
    note = "From rewards.payouts.v2 (every money movement) and the referral statuses."
    return _table("Friend rewards, clawbacks and reviews", ("", "count", "amount"), rows, note)


def _latency(report: Report) -> str:
    labels = {
        "won_to_reward_issued": "deal won to reward issued",
        "won_to_thank_you": "deal won to thank-you sent",
    }
    rows = [
        (
            labels.get(name, escape(name)),
            f"{lat.samples:,}",
            "-" if lat.median_ms is None else f"{lat.median_ms:,} ms",
            "-" if lat.p95_ms is None else f"{lat.p95_ms:,} ms",
        )
        for name, lat in report.latency.items()
    ]
    note = (
        "From the Kafka timestamp of the WON status to the payout record / the message's sent_at."
    )
    return _table("Latency", ("", "referrals", "median", "p95"), rows, note)
