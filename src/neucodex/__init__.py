"""neucodex: neuromorphic edge-cloud co-inference."""

from .data import DatasetSpec, build_dataset, list_datasets, register_dataset
from .models import Backbone, NeuronConfig, create_model, list_models
from .split import cut, feature_shape, feature_shapes, split_points

__all__ = [
    "Backbone",
    "DatasetSpec",
    "NeuronConfig",
    "build_dataset",
    "create_model",
    "cut",
    "feature_shape",
    "feature_shapes",
    "list_datasets",
    "list_models",
    "register_dataset",
    "split_points",
]
__version__ = "0.1.0"
