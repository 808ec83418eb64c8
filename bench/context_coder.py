"""The context coder against the entropy floors of a shipped code, on held-out images.

For each co-inference checkpoint: run its edge on held-out images (stratified by class), code every
timestep of every sample with the learned models the checkpoint ships, and print, in bits per
sample with all T sent:

- ``context`` / ``context-ac`` / ``auto``: real payload bytes × 8 from the codec;
- the cross-entropy of the code under the shipped (training-set) context model: an ideal coder's
  bits with the same model;
- ``H(s_t | s_t-1)`` and ``H(p)`` counted on these held-out codes themselves: the floors a coder
  with the held-out statistics (known in advance, which no real coder has) would reach.

    python bench/context_coder.py --root cifar10-train-jpg.tar.gz [--samples 2000] zoo:cifar10-resnet18-v3-rb1-c16s2 …

Target (issue #38): the coder within 5% of H(s_t | context) on held-out images.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from neucodex import codec
from neucodex.checkpoint import load_checkpoint
from neucodex.data import stratified
from neucodex.entropy import conditional_entropy, context_counts
from neucodex.evaluate import load_split, to_model_input, with_data


@torch.no_grad()
def held_out_codes(ref: str, root: str, samples: int) -> tuple[np.ndarray, object]:
    """``[T, N, C, H, W]`` uint8 codes of ``samples`` held-out test images, and the checkpoint."""
    ck = load_checkpoint(ref)
    cfg = with_data(ck.info.experiment(), None, root)
    ds = stratified(load_split(cfg, "test", ck.model.T), samples)
    edge = ck.model.eval().edge
    edge.set_step_mode("m")
    out = []
    for i in range(0, len(ds), 100):
        x = torch.stack([ds[j][0] for j in range(i, min(i + 100, len(ds)))])
        out.append(edge(to_model_input(x, torch.device("cpu"))).to(torch.uint8).numpy())
        ck.model.reset_state()
    return np.concatenate(out, 1), ck


def coded_bits(code: np.ndarray, fmt: str, probs, context) -> float:
    """Payload bits per sample, every timestep of every sample one packet (headers left out)."""
    T, N = code.shape[:2]
    total = 0
    for b in range(N):
        for t in range(T):
            pkt = codec.encode(
                code[t, b],
                fmt,
                timestep=t,
                channel_probs=probs,
                context_probs=context,
                previous=code[t - 1, b] if t else None,
            )
            total += len(pkt) - codec.HEADER_BYTES
    return 8 * total / N


def cross_entropy(code: np.ndarray, context: np.ndarray) -> float:
    """Bits per sample of the code under the context model ``p[k, c]`` (an ideal coder)."""
    c = np.asarray(context, np.float64)
    T = code.shape[0]
    bits = 0.0
    for t in range(T):
        k = np.full(code[t].shape, 2) if t == 0 else code[t - 1].astype(np.int64)
        p = c[k, np.arange(code.shape[2])[None, :, None, None]]
        s = code[t].astype(np.float64)
        bits += float(-(s * np.log2(p) + (1 - s) * np.log2(1 - p)).sum())
    return bits / code.shape[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--root", required=True, help="the imagefolder archive holding the held-out test split")
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    print(
        f"{'checkpoint':<40} {'context':>8} {'ctx-ac':>8} {'auto':>8} {'x-ent':>8} {'H(s|prev)':>9} {'H(p)':>8} "
        f"{'ctx/H':>6} {'auto/H':>6}"
    )
    for ref in args.checkpoints:
        code, ck = held_out_codes(ref, args.root, args.samples)
        probs, context = ck.info.probs, ck.info.context
        if context is None:
            print(f"{ref}: ships no context model (neucodex codemodels)")
            continue
        n = code.shape[1]
        h_ctx, h_p = (h / n for h in conditional_entropy(*context_counts(torch.from_numpy(code))))
        small = code[0, 0].size <= codec.AC_MAX_ELEMENTS
        ctx = coded_bits(code, "context", probs, context)
        ac = coded_bits(code, "context-ac", probs, context) if small else float("nan")
        auto = coded_bits(code, "auto", probs, context)
        print(
            f"{ref:<40} {ctx:>8.1f} {ac:>8.1f} {auto:>8.1f} {cross_entropy(code, context):>8.1f} {h_ctx:>9.1f} "
            f"{h_p:>8.1f} {min(ctx, ac if small else ctx) / h_ctx:>6.3f} {auto / h_ctx:>6.3f}   ({n} samples)"
        )


if __name__ == "__main__":
    main()
