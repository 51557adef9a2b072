"""Regenerates the Python stubs of the API's protos (`make protos`):

    python -m services.api.codegen [OUT_DIR]      (default services/api/proto)

grpcio-tools' protoc (a dev dependency, imported only here) writes referrals_pb2.py, .pyi and
referrals_pb2_grpc.py; the gRPC stub's `import referrals_pb2` is then rewritten to the package
import, as protoc cannot. A unit test regenerates into a temporary directory and fails when the
committed stubs differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "schemas" / "proto" / "referrals" / "v1"
PROTO = PROTO_DIR / "referrals.proto"
OUT_DIR = ROOT / "services" / "api" / "proto"
GRPC_STUB = "referrals_pb2_grpc.py"
STUBS = ("referrals_pb2.py", "referrals_pb2.pyi", GRPC_STUB)
_BARE_IMPORT = re.compile(r"^import referrals_pb2 as", re.MULTILINE)


def generate(out: Path) -> list[Path]:
    """Writes the stubs into `out`; returns their paths. Raises RuntimeError if protoc fails."""
    import grpc_tools
    from grpc_tools import protoc

    includes = Path(grpc_tools.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{includes}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--pyi_out={out}",
            str(PROTO),
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status} on {PROTO}")
    stub = out / GRPC_STUB
    text = stub.read_text(encoding="utf-8")
    stub.write_text(
        _BARE_IMPORT.sub("from services.api.proto import referrals_pb2 as", text),
        encoding="utf-8",
    )
    return [out / name for name in STUBS]


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR):
        print(path)
