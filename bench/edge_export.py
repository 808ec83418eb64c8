"""The exported edge against the PyTorch edge: equality, per-timestep latency, process memory.

For a co-inference checkpoint: exports ONNX + NIR, then on ``--samples`` images of
``--dataset`` (default: the checkpoint's test split; ``cifar10-demo`` for the zoo's CIFAR-10
models) runs every timestep of every sample through

- the PyTorch edge (``model.edge``, single-step, ``torch.set_num_threads(--threads)``),
- the ONNX edge (ONNX Runtime, ``--threads`` intra-op threads), the same way the torch-free
  ``neucodex-edge`` runs it,
- the NIR graph loaded by snnTorch's ``import_from_nir`` (if snnTorch is installed),

and prints the fraction of identical spikes and identical codec packets (``auto`` format, the
checkpoint's learned probabilities), the median per-timestep latency of each edge and their
ratio (measured in this run, batch 1), and the peak RSS of a process that only loads each edge
and runs the samples (``ru_maxrss`` of a child process).

    python bench/edge_export.py --checkpoint zoo:cifar10-resnet18-rb2 --dataset cifar10-demo --samples 200
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import torch

from neucodex import codec
from neucodex.checkpoint import load_checkpoint
from neucodex.evaluate import load_split
from neucodex.export import export_edge
from neucodex.lite import OnnxEdge

CHILD = {
    "pytorch": (
        "import sys, torch; from neucodex.checkpoint import load_checkpoint; torch.set_num_threads({threads});"
        "ck = load_checkpoint({ck!r}); e = ck.model.eval().edge.set_step_mode('s'); x = torch.rand(1, *{shape});"
        "[e(x) for _ in range({steps})]"
    ),
    "onnx": (
        "import sys; [sys.modules.__setitem__(m, None) for m in ('torch', 'spikingjelly', 'tonic')];"
        "import numpy as np; from neucodex.lite import OnnxEdge; e = OnnxEdge({out!r}, {threads});"
        "x = np.random.rand(1, *{shape}).astype(np.float32); [e.step(x) for _ in range({steps})]"
    ),
}


def peak_rss_mb(kind: str, **fmt) -> float:
    """Peak resident memory of a fresh process that loads one edge and steps it: its VmHWM
    (``ru_maxrss`` would count the forked parent's memory too; Linux keeps it across exec)."""
    code = CHILD[kind].format(**fmt) + ";print(open('/proc/self/status').read())"
    status = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="zoo:cifar10-resnet18-rb2")
    ap.add_argument("--dataset", help="dataset name (default: the checkpoint's)")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    ck = load_checkpoint(a.checkpoint)
    cfg = ck.info.experiment()
    if a.dataset:
        cfg = replace(cfg, data=replace(cfg.data, name=a.dataset, root=None, limit=None))
    ds = load_split(cfg, "test", ck.model.T)
    n, T, probs = min(a.samples, len(ds)), ck.info.model.steps, ck.info.probs
    out = export_edge(ck, ["onnx", "nir"], tempfile.mkdtemp(prefix="neucodex-edge-"))
    onnx_edge = OnnxEdge(out, a.threads)
    edge = ck.model.eval().edge.set_step_mode("s")
    net = None
    with contextlib.suppress(ImportError), contextlib.redirect_stdout(io.StringIO()):
        import nir
        from snntorch.import_nir import import_from_nir

        net = import_from_nir(nir.read(str(out / "edge.nir")))

    spikes = same_onnx = same_nir = packets = same_packets = 0
    t_torch, t_onnx = [], []
    for i in range(n):
        x = ds[i][0]
        edge.reset_state()
        onnx_edge.reset()
        if net is not None:
            from snntorch import utils as snn_utils

            snn_utils.reset(net)
        for t in range(T):
            xt = (x[t] if x.dim() == 4 else x).unsqueeze(0)
            t0 = time.perf_counter()
            with torch.no_grad():
                want = edge(xt)[0].numpy()
            t1 = time.perf_counter()
            got = onnx_edge.step(xt.numpy())[0]
            t2 = time.perf_counter()
            t_torch.append(t1 - t0)
            t_onnx.append(t2 - t1)
            spikes += want.size
            same_onnx += int((want == got).sum())
            if net is not None:
                with torch.no_grad():
                    r = net(xt)
                same_nir += int(((r[0] if isinstance(r, tuple) else r)[0].numpy() == want).sum())
            packets += 1
            same_packets += codec.encode(want, timestep=t, channel_probs=probs) == codec.encode(
                got, timestep=t, channel_probs=probs
            )
    edge.reset_state()
    mt, mo = statistics.median(t_torch) * 1e3, statistics.median(t_onnx) * 1e3
    shape = tuple(int(s) for s in ds[0][0].shape[-3:])
    rss_onnx = peak_rss_mb("onnx", out=str(out), threads=a.threads, shape=shape, steps=T * 10)
    rss_torch = peak_rss_mb("pytorch", ck=a.checkpoint, threads=a.threads, shape=shape, steps=T * 10)
    print(
        f"checkpoint {a.checkpoint}: {n} samples x {T} timesteps of {cfg.data.name} (test), "
        f"batch 1, {a.threads} thread(s)"
    )
    print(f"spikes identical, ONNX vs PyTorch:   {same_onnx}/{spikes} = {100 * same_onnx / spikes:.4f}%")
    if net is not None:
        print(f"spikes identical, NIR->snnTorch:     {same_nir}/{spikes} = {100 * same_nir / spikes:.4f}%")
    print(f"codec packets bit-identical (auto):  {same_packets}/{packets} = {100 * same_packets / packets:.3f}%")
    print(f"edge per timestep, median:           PyTorch {mt:.2f} ms, ONNX Runtime {mo:.2f} ms ({mt / mo:.2f}x)")
    print(f"peak RSS of an edge-only process:    PyTorch {rss_torch:.0f} MB, ONNX Runtime {rss_onnx:.0f} MB")
    print(f"export: {', '.join(f'{p.name} {p.stat().st_size / 1e3:.0f} kB' for p in sorted(out.iterdir()))}")


if __name__ == "__main__":
    main()
