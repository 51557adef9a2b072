"""The committed Python stubs are what `make protos` generates from schemas/proto today."""

from __future__ import annotations

from pathlib import Path

from services.api import codegen


def test_the_committed_stubs_are_generated_from_the_current_protos(tmp_path: Path) -> None:
    for fresh in codegen.generate(tmp_path):
        committed = codegen.OUT_DIR / fresh.name
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed} is stale: run `make protos` and commit the result"
        )
