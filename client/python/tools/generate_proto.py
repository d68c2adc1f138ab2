"""Generates the protobuf and gRPC modules of `lexum.v1` from `proto/`.

    python tools/generate_proto.py             # rewrite src/lexum/v1
    python tools/generate_proto.py --out DIR   # write DIR/lexum/v1 instead

The generated files are committed; `tests/test_generated.py` regenerates
them into a scratch directory and fails when they differ from the committed
ones, so a change to a `.proto` file must come with `generate_proto.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent.parent / "proto"
# The Raft transport is between nodes only; the SDK does not speak it.
PROTOS = ("lexum/v1/types.proto", "lexum/v1/client.proto", "lexum/v1/worker.proto")


def generate(out: Path) -> None:
    """Writes the modules under `out/lexum/v1` (out is a source root)."""
    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).resolve().parent / "_proto"
    # mypy-protobuf's plugins sit beside this interpreter (in the virtualenv).
    bindir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(PROTO_ROOT / p) for p in PROTOS),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed for {', '.join(PROTOS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "src", help="source root to write into")
    args = parser.parse_args()
    generate(args.out)
    print(f"generated {len(PROTOS)} protos into {args.out / 'lexum' / 'v1'}", file=sys.stderr)


if __name__ == "__main__":
    main()
