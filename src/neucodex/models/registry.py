"""One ``create_model(name, **kw)`` over a registry of small entry-point functions (timm-style)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from ..errors import InvalidArgumentError, UnknownNameError
from ..plugins import load_plugins
from .backbone import Backbone

_REGISTRY: dict[str, Callable[..., Backbone]] = {}
PLUGIN_GROUP = "neucodex.models"


def _register_plugin(name: str, fn: object) -> None:
    key = name.lower().replace("_", "-")
    if callable(fn) and key not in _REGISTRY:  # a built-in name is never replaced
        _REGISTRY[key] = fn  # type: ignore[assignment]


def register_model(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
    name = fn.__name__.replace("_", "-")
    if name in _REGISTRY:
        raise InvalidArgumentError(f"model {name!r} registered twice")
    _REGISTRY[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered names, optionally filtered by a shell-style wildcard as in timm (``"resnet*"``)."""
    load_plugins(PLUGIN_GROUP, _register_plugin)
    return sorted(fnmatch.filter(_REGISTRY, pattern))


def create_model(name: str, **kwargs) -> Backbone:
    """Build a registered backbone; ``spiking=False`` gives its DNN twin.

    Common keywords: ``num_classes``, ``in_channels`` (3 images, 2 event frames),
    ``input_size``, ``T``, and the neuron options ``tau``, ``v_threshold``, ``surrogate``,
    ``detach_reset``, ``norm``.
    """
    key = name.lower().replace("_", "-")
    load_plugins(PLUGIN_GROUP, _register_plugin)
    if key not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[key](**kwargs)
