"""One ``create_model(name, **kw)`` over a registry of small entry-point functions (timm-style)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from ..errors import InvalidArgumentError, UnknownNameError
from .backbone import Backbone

_REGISTRY: dict[str, Callable[..., Backbone]] = {}


def register_model(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
    name = fn.__name__.replace("_", "-")
    if name in _REGISTRY:
        raise InvalidArgumentError(f"model {name!r} registered twice")
    _REGISTRY[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered names, optionally filtered by a shell-style wildcard as in timm (``"resnet*"``)."""
    return sorted(fnmatch.filter(_REGISTRY, pattern))


def create_model(name: str, **kwargs) -> Backbone:
    """Build a registered backbone; ``spiking=False`` gives its DNN twin.

    Common keywords: ``num_classes``, ``in_channels`` (3 images, 2 event frames),
    ``input_size``, ``T``, and the neuron options ``tau``, ``v_threshold``, ``surrogate``,
    ``detach_reset``, ``norm``.
    """
    key = name.lower().replace("_", "-")
    if key not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[key](**kwargs)
