"""The figures a benchmark measures, in one shape every bench script writes and the report reads.

Each bench script measures one part (the limit, the peers, the pipeline, the API) and writes its
figures to `bench/results/<part>.json` with `save`; `bench/report.py` (the suite's last step)
reads every part back with `load_all` and writes the table, the chart and the verdicts.

A figure is one number: what was measured, in which unit, and (where there is one) the target
it is held to and the baseline it is shown beside, both measured in the same run.
"""

from __future__ import annotations

import json
import platform
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

RESULTS = Path(__file__).resolve().parent / "results"

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Figure:
    part: str  # "limit", "peers", "pipeline", "api", ...
    name: str  # what was measured, e.g. "year mix: input events/s to the last message"
    value: float
    unit: str  # "events/s", "ms", "MB", "s", "cpu-s/1k referrals", ...
    better: Better = "higher"
    target: float | None = None  # the value to meet (>= when higher is better, <= when lower)
    baseline: str | None = None  # the name of the figure (same part) this one is shown beside
    note: str = ""
    # What was checked beside the clock, e.g. {"inputs": 30000, "outputs": {...}, "ok": true}
    # (figures saved before this field existed load with it empty).
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value <= self.target


@dataclass
class Part:
    part: str
    figures: list[Figure] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    machine: dict[str, object] = field(default_factory=lambda: machine())

    def add(self, name: str, value: float, unit: str, **kw: object) -> Figure:
        fig = Figure(self.part, name, value, unit, **kw)  # type: ignore[arg-type]
        self.figures.append(fig)
        verdict = "" if fig.met is None else ("  [target met]" if fig.met else "  [target MISSED]")
        print(f"{self.part:<9} {name:<60} {value:>12,.2f} {unit}{verdict}", flush=True)
        return fig


def machine() -> dict[str, object]:
    """The machine the figures were measured on (they mean nothing without it)."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_mb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_mb": mem_mb,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        # Other work on the machine when the part started: 1, 5 and 15 minute load averages.
        "load": [round(x, 1) for x in os.getloadavg()],
    }


def save(part: Part, results: Path = RESULTS) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{part.part}.json"
    doc = {
        "part": part.part,
        "started": part.started,
        "machine": part.machine,
        "figures": [asdict(f) for f in part.figures],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def load_all(results: Path = RESULTS) -> list[Part]:
    parts = []
    for path in sorted(results.glob("*.json")):
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or "figures" not in doc or "part" not in doc:
            continue  # the combined report or another file, not a part
        part = Part(doc["part"], started=doc["started"], machine=doc["machine"])
        part.figures = [Figure(**f) for f in doc["figures"]]
        parts.append(part)
    return parts
