"""Export the edge half of a co-inference checkpoint for an edge without PyTorch.

``export_edge(checkpoint, "onnx" | "nir", out)`` writes the graph file(s) and ``edge.json``
(:mod:`neucodex.lite.bundle`): what ``neucodex-edge`` (ONNX Runtime) or a neuromorphic
toolchain (NIR) needs to stand in for the PyTorch edge.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import Checkpoint, load_checkpoint
from ..lite.bundle import NIR_FILE, ONNX_FILE, write_manifest
from .graph import EdgeGraph, ExportError, edge_graph, fold_batchnorm, run_reference
from .nir import DT, write_nir
from .onnx import OPSET, state_names, write_onnx

FORMATS = ("onnx", "nir")

__all__ = ["FORMATS", "EdgeGraph", "ExportError", "edge_graph", "export_edge", "fold_batchnorm", "run_reference"]


def _writable(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create --out {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK):
        raise ExportError(f"--out {out} is not writable")
    return out


def _sensor(dataset: dict):
    """The sensor the edge frames recordings on: stored at training, or the dataset's (older checkpoints)."""
    if "sensor" in dataset or dataset.get("kind") != "events":
        return dataset.get("sensor")
    from ..data import dataset_spec
    from ..errors import UnknownNameError

    try:
        sensor = dataset_spec(str(dataset.get("name"))).sensor
    except UnknownNameError:
        return None
    return list(sensor) if isinstance(sensor, tuple) else sensor


def export_edge(checkpoint: str | Path | Checkpoint, formats: str | list[str], out: str | Path) -> Path:
    """Write the edge half in ``formats`` (``onnx``, ``nir`` or both) plus ``edge.json`` to ``out``."""
    formats = [formats] if isinstance(formats, str) else list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format {unknown[0] if unknown else '(none)'!r}; choose from onnx, nir")
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    graph = edge_graph(ck.model)
    out = _writable(Path(out))
    files = []
    if "onnx" in formats:
        write_onnx(graph, out / ONNX_FILE)
        files.append(ONNX_FILE)
    if "nir" in formats:
        write_nir(graph, out / NIR_FILE)
        files.append(NIR_FILE)
    info, model = ck.info, ck.model
    manifest = {
        "model_id": ck.model_id,
        "model": info.model.to_dict(),
        "T": info.model.steps,
        "input": {
            "kind": info.dataset.get("kind", "static"),
            "shape": list(graph.input_shape),
            "scaling": "8-bit images divided by 255 (values in [0, 1]); event frames as the dataset gives them",
            "sensor": _sensor(info.dataset),
        },
        "code_shape": list(model.code_shape),
        "codec": {
            "format": "auto",
            "channel_probs": None if info.channel_probs is None else list(info.channel_probs),
            "context_probs": info.context_probs,
        },
        "exit_policy": info.policy.to_dict(),
        "states": [{"input": i, "output": o, "shape": list(s)} for i, o, s in state_names(graph)],
        "onnx": {"opset": OPSET, "inputs": "input, v_in.*", "outputs": "code, v_out.*"},
        "nir": {"dt": DT if "nir" in formats else None},
        "metrics": {k: info.metrics[k] for k in ("test_accuracy", "bits") if k in info.metrics},
    }
    write_manifest(out, manifest, files)
    return out
