"""Split points by name, and cutting a backbone into its edge and cloud parts."""

from __future__ import annotations

import torch
from torch import nn

from .errors import NeucodexError, UnknownNameError, short
from .models import Backbone, Stages, from_sequential


def split_points(model: Backbone) -> list[str]:
    """The ordered names of the places ``model`` can be cut (after each block / conv unit)."""
    return list(model.split_points)


def stage_index(model: Backbone, point: str) -> int:
    if point not in model.split_points:
        raise UnknownNameError(
            f"{point!r} is not a split point of {model.arch}; choose from {', '.join(model.split_points)}"
        )
    return model.names().index(point)


def cut(model: Backbone | nn.Module, point: str, **own) -> tuple[Stages, Stages]:
    """``(edge, cloud)``: input … ``point`` and the rest, sharing ``model``'s modules.

    ``model``: a neucodex backbone, or your own model made of named children run in order (split
    points are their names; ``own`` goes to :func:`neucodex.models.from_sequential`, e.g.
    ``input_size``). Both parts run in either step mode; ``cloud(edge(x)) == model(x)``.
    """
    if not isinstance(model, Backbone):
        model = from_sequential(model, **own)
    k = stage_index(model, point)
    # New containers over the same modules: SpikingJelly 2.0 keys its reset_net module cache by
    # container, so each part collects its own list on first reset and the model's stays valid.
    return model.slice(0, k + 1), model.slice(k + 1)


@torch.no_grad()
def feature_shapes(model: Backbone, input_size: int | None = None) -> dict[str, tuple[int, int, int]]:
    """``{point: (C, H, W)}``: one timestep's tensor crossing each cut, from one dry run."""
    size = input_size or model.input_size
    mode, training = model.step_mode, model.training
    model.eval().set_step_mode("s")
    x = torch.zeros(1, model.in_channels, size, size, device=next(model.parameters()).device)
    shapes = {}
    try:
        for name, stage in model.stages.named_children():
            if name == "head":
                break
            x = stage(x)
            if name in model.split_points:
                shapes[name] = tuple(x.shape[1:])
    except RuntimeError as e:  # a pooling or conv layer with nothing left to work on
        raise NeucodexError(
            f"{model.arch}: a {size}x{size} input is too small for its layers ({short(str(e), 120)}); "
            "use a larger input size"
        ) from None
    finally:
        model.reset_state()
        model.set_step_mode(mode)
        model.train(training)
    return shapes


def feature_shape(model: Backbone, point: str, input_size: int | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` of one timestep's tensor crossing the cut at ``point``."""
    stage_index(model, point)
    return feature_shapes(model, input_size)[point]
