"""The suite's last step: every part's figures in one table, one chart and the verdicts.

Reads each `bench/results/<part>.json` (`figures.load_all`) and writes
- `latest.json`: every figure, the cross-part ratios, the machine and the date;
- `latest.md`: a table per part (figure, value, unit, its baseline beside it, target, verdict)
  and the notes that say what each figure is;
- `latest.svg`: the chart: horizontal bars per part (the limit, ours beside the peers, the
  pipeline's rates), latencies against their targets.
It prints every target as met or MISSED and always exits 0: a missed target is news, not a
failure.

    .venv/bin/python bench/report.py [--results DIR]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import common
from figures import Figure, Part, load_all, machine

# The same palette as the program report (referrals/tools/report_html.py).
BLUE, ORANGE, GREY, RED, GREEN = "#2f6fdf", "#f08c2e", "#9aa5b1", "#cf222e", "#1a7f37"
ORDER = ("limit", "peers", "pipeline", "api")


@dataclass(frozen=True)
class Ratio:
    name: str
    numerator: str  # "part/figure"
    denominator: str
    value: float
    target: float

    @property
    def met(self) -> bool:
        return self.value >= self.target


def ratios(parts: list[Part]) -> list[Ratio]:
    """Figures held to a target relative to a figure of another part, where both exist."""
    by = {(p.part, f.name): f for p in parts for f in p.figures}
    out = []
    pipeline, chain = (
        by.get(("pipeline", "all-WON blast")),
        by.get(("limit", "chain transactional")),
    )
    if pipeline and chain and chain.value > 0:
        out.append(
            Ratio(
                "pipeline all-WON / chain transactional",
                "pipeline/all-WON blast",
                "limit/chain transactional",
                pipeline.value / chain.value,
                0.5,
            )
        )
    return out


def ordered(parts: list[Part]) -> list[Part]:
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(parts, key=lambda p: (rank.get(p.part, len(ORDER)), p.part))


def failed(f: Figure) -> bool:
    return f.detail.get("ok") is False


def problem(f: Figure) -> str:
    """What went wrong beside the clock ("" if nothing was checked or all was right)."""
    if not failed(f):
        return ""
    if f.detail.get("failed"):
        return "calls FAILED"
    return "did not finish" if f.value == 0 else "outputs WRONG"


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.1f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def verdict(f: Figure) -> str:
    if f.met is None:
        return ""
    return "met" if f.met else "MISSED"


def markdown(parts: list[Part], found: list[Ratio], when: str, box: dict[str, object]) -> str:
    lines = [
        "# Benchmarks: latest run",
        "",
        f"Run {when} on {box.get('cpus')} CPUs ({box.get('cpu')}), {box.get('memory_mb'):,} MB,"
        f" {box.get('system')}, Python {box.get('python')}. Chart: [latest.svg](latest.svg).",
        "",
    ]
    for part in ordered(parts):
        by = {f.name: f for f in part.figures}
        load = part.machine.get("load")
        lines += [
            f"## {part.part}",
            "",
            f"Started {part.started}" + (f", load average {load[0]} (1 min)." if load else "."),
            "",
            "| figure | value | unit | baseline | target | verdict |",
            "|---|---:|---|---|---|---|",
        ]
        for f in part.figures:
            base = by.get(f.baseline) if f.baseline else None
            beside = f"{f.baseline}: {fmt(base.value, base.unit)}" if base else ""
            if base and base.value:
                beside += f" ({f.value / base.value:.2f}x)"
            sign = ">=" if f.better == "higher" else "<="
            target = f"{sign} {fmt(f.target, f.unit)}" if f.target is not None else ""
            value = "did not finish" if failed(f) and f.value == 0 else fmt(f.value, f.unit)
            mark = " ".join(x for x in (verdict(f), problem(f)) if x)
            if f.detail.get("fallback"):
                mark += " not exactly once (see below)"
            lines.append(f"| {f.name} | {value} | {f.unit} | {beside} | {target} | {mark} |")
        lines.append("")
        lines += [f"- **{f.name}**: {f.note}" for f in part.figures if f.note]
        lines.append("")
    if found:
        lines += [
            "## across parts",
            "",
            "| ratio | value | target | verdict |",
            "|---|---:|---|---|",
        ]
        lines += [
            f"| {r.name} | {r.value:.2f} | >= {r.target:.2f} | {'met' if r.met else 'MISSED'} |"
            for r in found
        ]
        lines.append("")
    return "\n".join(lines)


def _bars(
    title: str, rows: list[tuple[str, float, str, str]], y: int, width: int
) -> tuple[list[str], int]:
    """A titled panel of horizontal bars (label, value, text beside, colour); returns (svg, y)."""
    label_w, bar_h, gap = 190, 16, 6
    plot_w = width - label_w - 150
    top = max((v for _, v, _, _ in rows), default=0.0) or 1.0
    out = [f'<text x="0" y="{y + 14}" font-size="14" font-weight="bold">{escape(title)}</text>']
    y += 24
    for label, value, text, colour in rows:
        w = round(plot_w * value / top, 1)
        out.append(f'<text x="0" y="{y + 12}" font-size="12">{escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + w + 5}" y="{y + 12}" font-size="11">{escape(text)}</text>')
        y += bar_h + gap
    return out, y + 14


def _latency(rows: list[Figure], y: int, width: int) -> tuple[list[str], int]:
    """Latencies as bars with their target as a tick; a bar past its target is red."""
    label_w, bar_h, gap = 190, 16, 6
    plot_w = width - label_w - 150
    top = max(max(f.value, f.target or 0) for f in rows) or 1.0
    title = "Latency, ms (lower is better; the black tick is the target)"
    out = [f'<text x="0" y="{y + 14}" font-size="14" font-weight="bold">{title}</text>']
    y += 24
    for f in rows:
        w = round(plot_w * f.value / top, 1)
        colour = RED if f.met is False else GREEN
        label = f"{f.part}: {f.name}"[:34]
        out.append(f'<text x="0" y="{y + 12}" font-size="12">{escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{colour}"/>')
        if f.target is not None:
            tx = label_w + round(plot_w * f.target / top, 1)
            out.append(
                f'<line x1="{tx}" y1="{y - 2}" x2="{tx}" y2="{y + bar_h + 2}" '
                'stroke="black" stroke-width="2"/>'
            )
        text = f"{fmt(f.value, f.unit)} ms" + (
            f" (target {fmt(f.target, 'ms')})" if f.target else ""
        )
        out.append(f'<text x="{label_w + w + 5}" y="{y + 12}" font-size="11">{text}</text>')
        y += bar_h + gap
    return out, y + 14


def chart(parts: list[Part], found: list[Ratio], when: str, box: dict[str, object]) -> str:
    width = 820
    title = "make bench: the limit, ours beside the peers, the pipeline, the API"
    body = [f'<text x="0" y="18" font-size="16" font-weight="bold">{title}</text>']
    y = 34
    colours = {"limit": ORANGE, "peers": GREY, "pipeline": BLUE}
    for part in ordered(parts):
        rates = [f for f in part.figures if f.unit.endswith("/s") and f.better == "higher"]
        if not rates:
            continue
        groups: dict[str, list[Figure]] = {}
        for f in rates:  # one panel per unit and scale: Kafka's tools dwarf a Python chain
            key = "kafka" if f.name.startswith("kafka ") else f.unit
            groups.setdefault(key, []).append(f)
        for key, figs in groups.items():
            rows = []
            for f in figs:
                colour = BLUE if f.name == "ours" else colours.get(part.part, GREY)
                text = f"{fmt(f.value, f.unit)} {f.unit}"
                if f.detail.get("fallback"):
                    text += " (not exactly once: see latest.md)"
                if failed(f):
                    wrong = problem(f) if f.value == 0 else f"{text}, {problem(f)}"
                    colour, text = RED, wrong
                rows.append((f.name, f.value, text, colour))
            what = "Kafka's own tools" if key == "kafka" else key
            panel, y = _bars(f"{part.part}: {what} (higher is better)", rows, y, width)
            body += panel
    latencies = [
        f for p in ordered(parts) for f in p.figures if f.unit == "ms" and f.target is not None
    ]
    if latencies:
        panel, y = _latency(latencies, y, width)
        body += panel
    for r in found:
        mark = "met" if r.met else "MISSED"
        body.append(
            f'<text x="0" y="{y + 12}" font-size="12">{escape(r.name)} = {r.value:.2f} '
            f"(target &gt;= {r.target:.2f}: {mark})</text>"
        )
        y += 20
    foot = f"{when}, {box.get('cpus')} CPUs, {box.get('cpu')}, Python {box.get('python')}"
    body.append(f'<text x="0" y="{y + 12}" font-size="11" fill="#6b7785">{escape(foot)}</text>')
    height = y + 24
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui,sans-serif" role="img" '
        'aria-label="make bench: latest figures">'
        f'<rect width="{width}" height="{height}" fill="white"/>'
    )
    return head + "".join(body) + "</svg>\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=common.results_dir())
    args = parser.parse_args()
    parts = load_all(args.results)
    if not parts:
        print(f"no figures in {args.results}: run a bench part first")
        return
    when = datetime.now(UTC).isoformat(timespec="seconds")
    box = machine()
    found = ratios(parts)
    doc = {
        "date": when,
        "machine": box,
        "parts": [
            {
                "part": p.part,
                "started": p.started,
                "machine": p.machine,
                "figures": [{**asdict(f), "met": f.met} for f in p.figures],
            }
            for p in ordered(parts)
        ],
        "ratios": [{**asdict(r), "met": r.met} for r in found],
    }
    (args.results / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.results / "latest.md").write_text(markdown(parts, found, when, box))
    (args.results / "latest.svg").write_text(chart(parts, found, when, box))
    print(f"\nTargets ({args.results}/latest.md):")
    any_target = False
    for p in ordered(parts):
        for f in p.figures:
            if f.target is not None or failed(f):
                any_target = True
                wrong = f" ({problem(f)}: see latest.md)" if failed(f) else ""
                print(
                    f"  {verdict(f) or '-':<7} {p.part}/{f.name}: {fmt(f.value, f.unit)} {f.unit}"
                    f"{'' if f.target is None else f' (target {f.target:g})'}{wrong}"
                )
    for r in found:
        any_target = True
        print(f"  {'met' if r.met else 'MISSED':<7} {r.name}: {r.value:.2f} (target >= {r.target})")
    if not any_target:
        print("  (no figure has a target)")


if __name__ == "__main__":
    main()
