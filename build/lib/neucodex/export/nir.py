"""The edge graph as NIR (the Neuromorphic Intermediate Representation), for neuromorphic toolchains.

Mapping (``dt`` is the time one timestep stands for; NIR's neurons are continuous-time):

- SpikingJelly's discrete LIF, ``h = v + (x - v) / tau`` with hard reset to 0, is NIR's LIF
  ``tau_nir · dv/dt = (v_leak - v) + r · I`` integrated by forward Euler over one step ``dt``:
  ``tau_nir = tau · dt``, ``r = 1``, ``v_leak = 0``, ``v_reset = 0``, same ``v_threshold``.
- conv + BN → ``Conv2d`` with the BN folded into weight and bias.
- residual add → two edges into the block's LIF (NIR sums a node's inputs).
- max-pool over binary spikes → ``AvgPool2d`` then a memoryless LIF (``tau_nir = dt``) with
  threshold ``1 / (2 k²)``: it fires iff any input in the window fired, which is the max of
  0/1 spikes exactly. (NIR has no max-pool.)
- average pool → ``AvgPool2d``.

The default ``dt = 1e-4`` s is the step snnTorch's ``import_from_nir`` assumes; a consumer with
another convention reads ``dt`` from the graph's metadata.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from .graph import EdgeGraph, ExportError

DT = 1e-4


def _lif(shape, tau: float, v_threshold: float) -> nir.LIF:
    full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
    return nir.LIF(tau=full(tau), r=full(1.0), v_leak=full(0.0), v_threshold=full(v_threshold), v_reset=full(0.0))


def to_nir(graph: EdgeGraph, dt: float = DT) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input({"input": np.array(graph.input_shape)})}
    edges: list[tuple[str, str]] = []
    sources: dict[str, list[str]] = {"input": ["input"]}  # op name → NIR nodes its value comes from
    for op in graph.ops[1:]:
        a = op.attrs
        feeds = [src for i in op.inputs for src in sources[i]]
        if op.kind == "add":
            if any(c.kind != "lif" for c in graph.consumers(op.name)):
                raise ExportError("a residual sum must feed a LIF layer to be written as NIR")
            sources[op.name] = feeds  # NIR sums the inputs of the LIF it feeds
            continue
        if op.kind == "conv":
            h, w = next(o.shape for o in graph.ops if o.name == op.inputs[0])[1:]
            nodes[op.name] = nir.Conv2d(
                input_shape=(h, w),
                weight=a["weight"],
                stride=a["stride"],
                padding=a["padding"],
                dilation=1,
                groups=1,
                bias=a["bias"],
            )
        elif op.kind == "lif":
            nodes[op.name] = _lif(op.shape, a["tau"] * dt, a["v_threshold"])
        elif op.kind in ("maxpool", "avgpool"):
            k = a["kernel"]
            nodes[op.name] = nir.AvgPool2d(
                kernel_size=np.array([k, k]), stride=np.array([a["stride"]] * 2), padding=np.array([0, 0])
            )
            if op.kind == "maxpool":
                producer = next(o for o in graph.ops if o.name == op.inputs[0])
                if producer.kind != "lif":
                    raise ExportError("max-pool is written to NIR only over spikes (after a LIF layer)")
                fire = f"{op.name}.any"
                nodes[fire] = _lif(op.shape, dt, 1.0 / (2 * k * k))
                edges += [(src, op.name) for src in feeds] + [(op.name, fire)]
                sources[op.name] = [fire]
                continue
        edges += [(src, op.name) for src in feeds]
        sources[op.name] = [op.name]
    nodes["output"] = nir.Output({"output": np.array(graph.output.shape)})
    edges += [(src, "output") for src in sources[graph.output.name]]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "producer": "neucodex"})


def write_nir(graph: EdgeGraph, path: Path, dt: float = DT) -> Path:
    nir.write(str(path), to_nir(graph, dt))
    return path
