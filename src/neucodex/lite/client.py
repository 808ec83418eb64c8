"""An exported edge run by ONNX Runtime, one timestep per call, and its streaming client."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError
from ..runtime.stream import SampleResult, StreamingClient
from .bundle import ONNX_FILE, BundleError, EdgeBundle, load_bundle

__all__ = ["OnnxEdge", "OnnxEdgeClient", "SampleResult"]


class OnnxEdge:
    """The edge half of an export: ``reset()`` between samples, ``step(x)`` per timestep → code.

    The membrane potentials live here as NumPy arrays, fed in and read back at every call (the
    ONNX graph itself is stateless).
    """

    def __init__(self, bundle: EdgeBundle | str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.bundle = bundle if isinstance(bundle, EdgeBundle) else load_bundle(bundle)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # an edge device's budget; also keeps runs comparable
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.bundle.path(ONNX_FILE)), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types on a bad graph
            raise BundleError(f"ONNX Runtime cannot load {self.bundle.path(ONNX_FILE)}: {e}") from None
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.state: dict[str, np.ndarray] = {}
        self.reset()

    def reset(self, batch: int = 1) -> None:
        self.state = {i: np.zeros((batch, *shape), np.float32) for i, _, shape in self.bundle.states}

    def step(self, x: np.ndarray) -> np.ndarray:
        """One timestep: ``x`` ``[N, C, H, W]`` float32 → code ``[N, C', H', W']`` (0/1 float32)."""
        out = dict(zip(self.outputs, self.session.run(None, {"input": x, **self.state}), strict=True))
        self.state = {i: out[o] for i, o, _ in self.bundle.states}
        return out["code"]


class OnnxEdgeClient(StreamingClient):
    """The torch-free edge: an exported edge half streamed to the cloud that holds its checkpoint.

    Same protocol, pipelining, retries and replay as the PyTorch edge; a sample the cloud cannot
    answer in time ends ``failed`` (the export holds no cloud half to fall back on).
    """

    def __init__(self, model: str | Path | EdgeBundle, server: str, *, threads: int = 1, **kwargs) -> None:
        self.edge = OnnxEdge(model, threads)
        b = self.edge.bundle
        kwargs.setdefault("codec_format", b.codec_format)
        super().__init__(server, model_id=b.model_id, T=b.T, probs=b.probs, context_probs=b.context_probs, **kwargs)

    def _check(self, x) -> None:
        b = self.edge.bundle
        x = np.asarray(x)
        if b.kind == "events":
            ok, what = x.ndim == 4 and x.shape[1:] == b.input_shape and x.shape[0] >= b.T, "[T, C, H, W] event frames"
        else:
            ok, what = x.shape == b.input_shape, "[C, H, W] image"
        if not ok:
            want = ("T", *b.input_shape) if b.kind == "events" else b.input_shape
            raise InvalidArgumentError(f"this edge takes one {what} of shape {want}; got shape {x.shape}")

    def _reset(self) -> None:
        self.edge.reset()

    def _code(self, x, t: int) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return self.edge.step((x[t] if x.ndim == 4 else x)[None])[0]
