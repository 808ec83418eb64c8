"""The torch-free edge: an exported edge half (ONNX) run by ONNX Runtime, streamed to ``neucodex serve``.

Installs with ``pip install 'neucodex[edge]'`` (NumPy, ONNX Runtime, gRPC, constriction, Pillow:
no PyTorch, SpikingJelly or Tonic); ``neucodex-edge`` is its command line.
"""

from .._lazy import exports

_EXPORTS = {
    "BundleError": ".bundle",
    "EdgeBundle": ".bundle",
    "OnnxEdge": ".client",
    "OnnxEdgeClient": ".client",
    "load_bundle": ".bundle",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
