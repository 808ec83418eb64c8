"""neucodex: neuromorphic edge-cloud co-inference."""

from .models import Backbone, NeuronConfig, create_model, list_models
from .split import cut, feature_shape, feature_shapes, split_points

__all__ = [
    "Backbone",
    "NeuronConfig",
    "create_model",
    "cut",
    "feature_shape",
    "feature_shapes",
    "list_models",
    "split_points",
]
__version__ = "0.1.0"
