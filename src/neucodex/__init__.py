"""neucodex: neuromorphic edge-cloud co-inference.

Exports load on first use, so ``import neucodex.lite`` (the torch-free edge) imports no PyTorch.
"""

from ._lazy import exports

_EXPORTS = {
    "Backbone": ".models",
    "DatasetSpec": ".data",
    "NeuronConfig": ".models",
    "build_dataset": ".data",
    "create_model": ".models",
    "cut": ".split",
    "feature_shape": ".split",
    "feature_shapes": ".split",
    "from_sequential": ".models",
    "list_datasets": ".data",
    "list_models": ".models",
    "register_dataset": ".data",
    "split_points": ".split",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"
__getattr__, __dir__ = exports(__name__, _EXPORTS)
