"""Spiking backbones (and their DNN twins) built from SpikingJelly layers."""

from . import resnet as _resnet  # noqa: F401  (each registers its entry points)
from . import vgg as _vgg  # noqa: F401
from .backbone import Backbone, Stages, from_sequential
from .layers import NeuronConfig
from .registry import create_model, list_models, register_model

__all__ = [
    "Backbone",
    "NeuronConfig",
    "Stages",
    "create_model",
    "from_sequential",
    "list_models",
    "register_model",
]
