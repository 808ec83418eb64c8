"""The deployable runtime: a gRPC cloud server and an edge client streaming spike packets.

Exports load on first use: ``neucodex.runtime.stream`` and ``.protocol`` need no PyTorch.
"""

from .._lazy import exports

_EXPORTS = {
    "EdgeClient": ".edge",
    "RuntimeFailure": ".protocol",
    "SampleResult": ".stream",
    "Server": ".server",
    "StreamingClient": ".stream",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
