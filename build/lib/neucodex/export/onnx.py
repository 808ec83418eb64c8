"""The edge graph as ONNX: one timestep per call, every LIF's membrane potential in and out.

Inputs ``input`` ``[N, C, H, W]`` float32 (the image scaled to [0, 1], or event frame t) and
one ``v_in.<lif>`` per LIF layer ``[N, C, H, W]`` (zeros at the first timestep of a sample);
outputs ``code`` ``[N, C', H', W']`` (0/1 float32 spikes) and ``v_out.<lif>`` — feed these back
as ``v_in`` at the next timestep. Standard operators only (Conv, Add, Sub, Div, GreaterOrEqual,
Cast, Where, MaxPool, AveragePool), opset 17; the batch dimension is dynamic.

The LIF step is SpikingJelly's: ``h = v + (x - v) / tau``; spike ``s = h >= v_threshold``;
``v' = 0 where s else h``. BN is folded into each convolution's weight and bias.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .graph import EdgeGraph

OPSET = 17


def state_names(graph: EdgeGraph) -> list[tuple[str, str, tuple[int, int, int]]]:
    """``(input name, output name, shape)`` of every LIF's membrane potential, in graph order."""
    return [(f"v_in.{op.name}", f"v_out.{op.name}", op.shape) for op in graph.of_kind("lif")]


def to_onnx(graph: EdgeGraph, producer: str = "neucodex") -> onnx.ModelProto:
    nodes, inits = [], []
    tensor = lambda shape, name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])  # noqa: E731
    inputs = [tensor(graph.input_shape, "input")]
    outputs = [tensor(graph.output.shape, "code")]

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    const("zero", 0.0)
    for op in graph.ops[1:]:
        a, out = op.attrs, op.name
        if op is graph.output:
            out = "code"
        if op.kind == "conv":
            w, b = const(f"{op.name}.weight", a["weight"]), const(f"{op.name}.bias", a["bias"])
            k = a["weight"].shape[-1]
            nodes.append(
                helper.make_node(
                    "Conv",
                    [op.inputs[0], w, b],
                    [out],
                    kernel_shape=[k, k],
                    strides=[a["stride"]] * 2,
                    pads=[a["padding"]] * 4,
                )
            )
        elif op.kind == "add":
            nodes.append(helper.make_node("Add", op.inputs, [out]))
        elif op.kind in ("maxpool", "avgpool"):
            kind = "MaxPool" if op.kind == "maxpool" else "AveragePool"
            nodes.append(
                helper.make_node(kind, op.inputs, [out], kernel_shape=[a["kernel"]] * 2, strides=[a["stride"]] * 2)
            )
        else:  # lif
            v_in, v_out, x = f"v_in.{op.name}", f"v_out.{op.name}", op.inputs[0]
            inputs.append(tensor(op.shape, v_in))
            outputs.append(tensor(op.shape, v_out))
            tau, vth = const(f"{op.name}.tau", a["tau"]), const(f"{op.name}.v_threshold", a["v_threshold"])
            p = op.name
            nodes += [
                helper.make_node("Sub", [x, v_in], [f"{p}.x_minus_v"]),
                helper.make_node("Div", [f"{p}.x_minus_v", tau], [f"{p}.leak"]),
                helper.make_node("Add", [v_in, f"{p}.leak"], [f"{p}.h"]),
                helper.make_node("GreaterOrEqual", [f"{p}.h", vth], [f"{p}.fire"]),
                helper.make_node("Cast", [f"{p}.fire"], [out], to=TensorProto.FLOAT),
                helper.make_node("Where", [f"{p}.fire", "zero", f"{p}.h"], [v_out]),
            ]
    g = helper.make_graph(nodes, "neucodex_edge", inputs, outputs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=producer)
    model.ir_version = 8  # readable by ONNX Runtime ≥ 1.10
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx(graph: EdgeGraph, path: Path) -> Path:
    onnx.save_model(to_onnx(graph), str(path))
    return path
