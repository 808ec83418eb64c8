"""The wire protocol: ``neucodex.proto`` and its generated modules, kept in the package.

The generated ``neucodex_pb2*.py`` are committed so that running needs only ``grpcio`` and
``protobuf``; ``python -m neucodex.runtime.protocol`` regenerates them (needs ``grpcio-tools``)
and a test checks they match the ``.proto``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "neucodex.proto"
GENERATED = ("neucodex_pb2.py", "neucodex_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc on the ``.proto``; the modules land in ``out_root/neucodex/runtime/``."""
    from grpc_tools import protoc

    src_root = HERE.parent.parent  # the folder holding the ``neucodex`` package
    (out_root / "neucodex" / "runtime").mkdir(parents=True, exist_ok=True)
    rel = PROTO.relative_to(src_root)
    rc = protoc.main(["protoc", f"-I{src_root}", f"--python_out={out_root}", f"--grpc_python_out={out_root}", str(rel)])
    if rc != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {rc})")
    return [out_root / "neucodex" / "runtime" / name for name in GENERATED]


if __name__ == "__main__":
    for path in generate(HERE.parent.parent):
        print(f"wrote {path}", file=sys.stderr)
