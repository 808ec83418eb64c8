"""The edge half as a flat, inference-only graph: BN folded into the convolutions, neurons explicit.

Both exporters (:mod:`.onnx`, :mod:`.nir`) write this one graph, so they describe the same
computation. Each op names its inputs and its output shape ``(C, H, W)``; the order is a
topological order. Ops: ``input``, ``conv`` (weight, bias, stride, padding), ``lif`` (tau,
v_threshold; SpikingJelly's discrete LIF with decay_input and hard reset to 0), ``maxpool``
and ``avgpool`` (kernel, stride), ``add`` (a residual sum, feeding a ``lif``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from spikingjelly.activation_based import neuron
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..bottleneck import CoInferenceModel
from ..errors import NeucodexError
from ..models.backbone import Stages
from ..models.layers import InputEncoder
from ..models.resnet import _Residual


class ExportError(NeucodexError):
    """The model cannot be written in the asked format; the message says what and why."""


@dataclass
class Op:
    name: str
    kind: str
    inputs: list[str]
    shape: tuple[int, int, int]
    attrs: dict = field(default_factory=dict)


@dataclass
class EdgeGraph:
    ops: list[Op]
    input_shape: tuple[int, int, int]

    @property
    def output(self) -> Op:
        return self.ops[-1]

    def of_kind(self, kind: str) -> list[Op]:
        return [op for op in self.ops if op.kind == kind]

    def consumers(self, name: str) -> list[Op]:
        return [op for op in self.ops if name in op.inputs]


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (eval) with every BN that follows a conv in a Sequential folded into it."""
    module = copy.deepcopy(module).eval()
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.modules.batchnorm._BatchNorm):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
    return module


def _pair(v) -> int:
    a, b = (v, v) if isinstance(v, int) else tuple(v)
    if a != b:
        raise ExportError(f"only square kernels, strides and paddings are exported, got {v}")
    return int(a)


class _Builder:
    def __init__(self, input_shape: tuple[int, int, int]) -> None:
        self.ops = [Op("input", "input", [], input_shape)]
        self.count: dict[str, int] = {}

    def add(self, kind: str, inputs: list[str], shape: tuple[int, int, int], **attrs) -> str:
        self.count[kind] = self.count.get(kind, 0) + 1
        name = f"{kind}{self.count[kind]}"
        self.ops.append(Op(name, kind, inputs, shape, attrs))
        return name

    def shape(self, name: str) -> tuple[int, int, int]:
        return next(op.shape for op in self.ops if op.name == name)

    def walk(self, m: nn.Module, src: str) -> str:
        if isinstance(m, nn.Sequential | Stages):
            for child in (m.stages if isinstance(m, Stages) else m).children():
                src = self.walk(child, src)
            return src
        if isinstance(m, InputEncoder | nn.Identity):
            return src
        if isinstance(m, _Residual):
            branch = self.walk(m.branch, src)
            short = self.walk(m.shortcut, src)
            total = self.add("add", [branch, short], self.shape(branch))
            return self.walk(m.act, total)
        c, h, w = self.shape(src)
        if isinstance(m, nn.Conv2d):
            k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
            if _pair(m.dilation) != 1 or m.groups != 1 or m.padding_mode != "zeros":
                raise ExportError("convolutions with dilation, groups or non-zero padding are not exported")
            bias = m.bias.detach() if m.bias is not None else torch.zeros(m.out_channels)
            out = (m.out_channels, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
            return self.add(
                "conv",
                [src],
                out,
                weight=m.weight.detach().float().numpy().copy(),
                bias=bias.float().numpy().copy(),
                stride=s,
                padding=p,
            )
        if isinstance(m, neuron.LIFNode):
            if not m.decay_input or m.v_reset != 0.0:
                raise ExportError("only LIF neurons with decay_input and a hard reset to 0 are exported")
            return self.add("lif", [src], (c, h, w), tau=float(m.tau), v_threshold=float(m.v_threshold))
        if isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
            k, s = _pair(m.kernel_size), _pair(m.stride)
            if _pair(m.padding) != 0 or getattr(m, "ceil_mode", False) or getattr(m, "dilation", 1) != 1:
                raise ExportError("pooling with padding, dilation or ceil_mode is not exported")
            kind = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
            return self.add(kind, [src], (c, (h - k) // s + 1, (w - k) // s + 1), kernel=k, stride=s)
        raise ExportError(f"cannot export a {type(m).__name__} layer (the edge half may hold conv, BN, LIF, pooling)")


def edge_graph(model: CoInferenceModel) -> EdgeGraph:
    """The folded inference graph of a spiking co-inference model's edge half."""
    if not isinstance(model, CoInferenceModel):
        raise ExportError("only a co-inference checkpoint has an edge half to export (neucodex finetune makes one)")
    if not model.spiking:
        raise ExportError("only spiking co-inference checkpoints are exported (this one is a DNN twin)")
    folded = fold_batchnorm(model.edge)
    for m in folded.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise ExportError("a BatchNorm layer follows no convolution and cannot be folded")
    shape = (model.in_channels, model.input_size, model.input_size)
    b = _Builder(shape)
    b.walk(folded, "input")
    graph = EdgeGraph(b.ops, shape)
    if graph.output.kind != "lif" or graph.output.shape != tuple(model.code_shape):
        raise ExportError(f"the edge half must end in the spike encoder's LIF of shape {tuple(model.code_shape)}")
    return graph


def run_reference(graph: EdgeGraph, x: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    """One timestep of ``graph`` in NumPy-through-PyTorch ops, updating ``state`` in place: the
    semantics both exporters must reproduce (used by tests and to document them)."""
    values = {"input": torch.from_numpy(np.asarray(x, np.float32))}
    for op in graph.ops[1:]:
        ins = [values[i] for i in op.inputs]
        a = op.attrs
        if op.kind == "conv":
            out = torch.nn.functional.conv2d(
                ins[0], torch.from_numpy(a["weight"]), torch.from_numpy(a["bias"]), a["stride"], a["padding"]
            )
        elif op.kind == "add":
            out = ins[0] + ins[1]
        elif op.kind == "maxpool":
            out = torch.nn.functional.max_pool2d(ins[0], a["kernel"], a["stride"])
        elif op.kind == "avgpool":
            out = torch.nn.functional.avg_pool2d(ins[0], a["kernel"], a["stride"])
        else:  # lif
            v = torch.from_numpy(state.get(op.name, np.zeros((ins[0].shape[0], *op.shape), np.float32)))
            h = v + (ins[0] - v) / a["tau"]
            out = (h >= a["v_threshold"]).float()
            state[op.name] = torch.where(out > 0, torch.zeros_like(h), h).numpy()
        values[op.name] = out
    return values[graph.output.name].numpy()
