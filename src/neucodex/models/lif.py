"""A fused multi-step LIF for the CPU: charge, fire and reset over all T in one pass per element.

SpikingJelly's CPU path steps through T in Python, one tensor operation after another (charge,
compare, reset, stack): about eight passes over memory per timestep, forward and backward. This
kernel reads each input once and writes each spike once, with the timestep loop innermost, and
its backward charges again from the saved input (cheaper than writing the potentials in the
forward and reading them back) and runs the time loop in reverse. It covers the neuron every backbone here uses — decay
input, hard reset to 0, reset detached from the graph, ATan surrogate — and computes exactly what
SpikingJelly computes, in the same float32 operations (spikes equal bit for bit, gradients to
float rounding; the tests hold it to both). Under bf16 autocast (the CPU training presets) it
reads bf16 input and writes bf16 spikes and input gradients itself, computing in float32 inside:
what converting around a float32 kernel gives, without those two passes over memory each way.

The kernel is C++ built on first use with ``torch.utils.cpp_extension`` (a C++ compiler and ninja
are needed; the build is cached). Where it cannot be built, or for another configuration, the
neuron falls back to SpikingJelly's own path; :func:`fused_available` says which runs, and
``NEUCODEX_FUSED_LIF=0`` turns it off.
"""

from __future__ import annotations

import logging
import os
import warnings
from functools import cache

import torch
from spikingjelly.activation_based import neuron, surrogate

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

// Elements go in blocks of B: the state of a block stays in a small buffer while the time loop runs
// over it, and the innermost loop runs over contiguous elements, so the compiler vectorizes it —
// once per instruction set (target_clones: the loader picks AVX-512, AVX2 or the baseline).
constexpr int64_t B = 512;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NEUCODEX_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NEUCODEX_CLONES
#endif

NEUCODEX_CLONES
static void charge_fire(const float* __restrict__ xt, float* __restrict__ st, float* __restrict__ hb,
                        float* __restrict__ vb, int64_t n, float tau, float vth) {
  for (int64_t j = 0; j < n; ++j) {
    const float hi = vb[j] + (xt[j] - (vb[j] - 0.0f)) / tau;  // SpikingJelly's order of operations
    const float si = hi >= vth ? 1.0f : 0.0f;
    st[j] = si;
    hb[j] = hi;
    vb[j] = si * 0.0f + (1.0f - si) * hi;
  }
}

NEUCODEX_CLONES
static void surrogate_step(const float* __restrict__ ht, const float* __restrict__ gst, float* __restrict__ gxt,
                           float* __restrict__ carry, int64_t n, float tau, float vth, float scale, float half) {
  for (int64_t j = 0; j < n; ++j) {
    const float hi = ht[j];
    const float z = (hi - vth) * scale;
    const float sg = half / (1.0f + z * z);  // ATan surrogate
    const float reset_grad = 1.0f - (hi >= vth ? 1.0f : 0.0f);  // hard reset, detached
    const float gh = gst[j] * sg + carry[j] * reset_grad;
    gxt[j] = gh / tau;
    carry[j] = gh - gh / tau;
  }
}

// bf16 <-> float32 as PyTorch does it: widening is exact; narrowing rounds to nearest even
// (c10::BFloat16's rule), so a bf16 tensor in and out gives what converting around the float32
// kernel gives, bit for bit, without the two extra passes over memory.
NEUCODEX_CLONES
static void widen(const uint16_t* __restrict__ in, float* __restrict__ out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t u = uint32_t(in[j]) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    out[j] = f;
  }
}

NEUCODEX_CLONES
static void narrow(const float* __restrict__ in, uint16_t* __restrict__ out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    uint32_t u;
    std::memcpy(&u, in + j, sizeof u);
    out[j] = in[j] != in[j] ? uint16_t(0x7FC0) : uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
}

// A [T, N] tensor of float32 or bfloat16, read or written one block of one timestep at a time
// through a float32 buffer (bf16) or in place (float32).
struct Rows {
  void* p;
  bool bf16;
  int64_t N;
  const float* read(int64_t t, int64_t c, int64_t n, float* buf) const {
    if (!bf16) return static_cast<const float*>(p) + t * N + c;
    widen(static_cast<const uint16_t*>(p) + t * N + c, buf, n);
    return buf;
  }
  float* target(int64_t t, int64_t c, float* buf) const {
    return bf16 ? buf : static_cast<float*>(p) + t * N + c;
  }
  void commit(int64_t t, int64_t c, int64_t n, const float* buf) const {
    if (bf16) narrow(buf, static_cast<uint16_t*>(p) + t * N + c, n);
  }
};

static Rows rows(torch::Tensor& a) {
  TORCH_CHECK(a.scalar_type() == torch::kFloat || a.scalar_type() == torch::kBFloat16, "float32 or bfloat16");
  return {a.data_ptr(), a.scalar_type() == torch::kBFloat16, a.size(1)};
}

// x: [T, N] float32 or bfloat16; v0: [N] float32, or empty for a fresh state (all zeros).
// Returns spikes [T, N] in x's dtype and the final v [N] float32. Nothing else is kept for the
// backward: it charges again from x, which costs less than writing h here and reading it there.
std::vector<torch::Tensor> forward(torch::Tensor x, torch::Tensor v0, double tau_d, double vth_d) {
  const int64_t T = x.size(0), N = x.size(1);
  auto s = torch::empty_like(x);
  const bool fresh = v0.numel() == 0;
  auto v = fresh ? torch::empty({N}, x.options().dtype(torch::kFloat)) : v0.clone();
  const float tau = (float) tau_d, vth = (float) vth_d;
  const Rows xs = rows(x), ss = rows(s);
  float* __restrict__ pv = v.data_ptr<float>();
  at::parallel_for(0, N, 4 * B, [&](int64_t b, int64_t e) {
    float vb[B], hb[B], xb[B], sb[B];
    for (int64_t c = b; c < e; c += B) {
      const int64_t n = std::min(B, e - c);
      if (fresh) std::fill(vb, vb + n, 0.0f); else std::copy(pv + c, pv + c + n, vb);
      for (int64_t t = 0; t < T; ++t) {
        float* st = ss.target(t, c, sb);
        charge_fire(xs.read(t, c, n, xb), st, hb, vb, n, tau, vth);
        ss.commit(t, c, n, st);
      }
      std::copy(vb, vb + n, pv + c);
    }
  });
  return {s, v};
}

// gs: [T, N] gradient of the spikes, in x's dtype (the input's gradient comes out in it too);
// gv: [N] gradient of the final v; x, v0: the forward's input and initial state. Per block, the
// charged potentials h of every timestep are recomputed into a buffer (the same float32
// operations as the forward, so the same h bit for bit), then the time loop runs in reverse.
std::vector<torch::Tensor> backward(torch::Tensor gs, torch::Tensor gv, torch::Tensor x, torch::Tensor v0,
                                    double tau_d, double vth_d, double alpha_d) {
  const int64_t T = x.size(0), N = x.size(1);
  auto gx = torch::empty_like(gs);
  auto gv0 = torch::empty_like(gv);
  const float tau = (float) tau_d, vth = (float) vth_d, alpha = (float) alpha_d;
  const float scale = (float) (M_PI / 2.0 * alpha_d), half = alpha / 2.0f;
  const bool fresh = v0.numel() == 0;
  const Rows xs = rows(x), gss = rows(gs), gxs = rows(gx);
  const float* __restrict__ pv0 = fresh ? nullptr : v0.data_ptr<float>();
  const float* __restrict__ pgv = gv.data_ptr<float>();
  float* __restrict__ pg0 = gv0.data_ptr<float>();
  at::parallel_for(0, N, 4 * B, [&](int64_t b, int64_t e) {
    std::vector<float> h(T * B);
    float vb[B], sb[B], carry[B], gb[B], xb[B];
    for (int64_t c = b; c < e; c += B) {
      const int64_t n = std::min(B, e - c);
      if (fresh) std::fill(vb, vb + n, 0.0f); else std::copy(pv0 + c, pv0 + c + n, vb);
      for (int64_t t = 0; t < T; ++t) charge_fire(xs.read(t, c, n, xb), sb, h.data() + t * B, vb, n, tau, vth);
      std::copy(pgv + c, pgv + c + n, carry);  // the final v's gradient enters at t = T - 1
      for (int64_t t = T - 1; t >= 0; --t) {
        float* gxt = gxs.target(t, c, xb);
        surrogate_step(h.data() + t * B, gss.read(t, c, n, gb), gxt, carry, n, tau, vth, scale, half);
        gxs.commit(t, c, n, gxt);
      }
      std::copy(carry, carry + n, pg0 + c);
    }
  });
  return {gx, gv0};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "fused multi-step LIF forward");
  m.def("backward", &backward, "fused multi-step LIF backward");
}
"""


@cache
def _kernel():
    """The compiled kernel, or None where it cannot be built (no compiler, or turned off).

    Built with OpenMP where the compiler has it: ``at::parallel_for`` in an extension runs on one
    thread without it. The extension then shares PyTorch's own OpenMP runtime (the same
    ``libgomp.so.1`` soname, loaded once per process), so its threads are PyTorch's
    (``torch.set_num_threads`` applies). Without OpenMP it is built single-threaded.
    """
    if os.environ.get("NEUCODEX_FUSED_LIF", "1") == "0":
        return None
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level, quiet.level = quiet.level, logging.ERROR  # "no CUDA runtime found" (on import) is not news on a CPU
    error = None
    try:
        for name, omp in (("neucodex_fused_lif_omp", ["-fopenmp"]), ("neucodex_fused_lif", [])):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    from torch.utils.cpp_extension import load_inline

                    return load_inline(
                        name,
                        cpp_sources=_SOURCE,
                        # no fused multiply-add: SpikingJelly's rounding
                        extra_cflags=["-O3", "-ffp-contract=off", *omp],
                        extra_ldflags=omp,
                        verbose=False,
                    )
                except Exception as e:  # noqa: BLE001 — any build failure: try the next, then the reference
                    error = e
    finally:
        quiet.level = level
    # logged, not printed: a user's one-line errors stay one line
    logging.getLogger(__name__).info("fused LIF kernel unavailable (%s); using SpikingJelly's LIF", error)
    return None


def fused_available() -> bool:
    return _kernel() is not None


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v, tau: float, vth: float, alpha: float):
        k = _kernel()
        s, v_last = k.forward(x, v, tau, vth)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(x, v)  # the backward charges again from these
        ctx.consts = (tau, vth, alpha)
        return s, v_last

    @staticmethod
    def backward(ctx, gs, gv):
        x, v0 = ctx.saved_tensors
        gs = torch.zeros_like(x) if gs is None else gs.to(x.dtype).contiguous()
        gv = torch.zeros(x.shape[1]) if gv is None else gv.float().contiguous()
        gx, gv0 = _kernel().backward(gs, gv, x, v0, *ctx.consts)
        return gx, gv0 if ctx.needs_input_grad[1] else None, None, None, None


class FusedLIFNode(neuron.LIFNode):
    """SpikingJelly's ``LIFNode`` (decay input, hard reset to 0, detached reset, ATan) whose
    multi-step forward runs the fused kernel; anything else takes SpikingJelly's path."""

    def _fusable(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and self.decay_input
            and self.v_reset == 0.0
            and self.detach_reset
            and type(self.surrogate_function) is surrogate.ATan
            and not self.store_v_seq
            and x.dim() >= 2
            and _kernel() is not None
        )

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs):
        if args or kwargs or not self._fusable(x_seq):
            return super().multi_step_forward(x_seq, *args, **kwargs)
        T = x_seq.shape[0]
        flat = x_seq.reshape(T, -1)  # float32 or bfloat16 (autocast) go in as they are; the rest as float32
        flat = (flat if flat.dtype in (torch.float32, torch.bfloat16) else flat.float()).contiguous()
        v = self.v
        if isinstance(v, torch.Tensor) and v.shape == x_seq.shape[1:]:
            v = v.reshape(-1).float().contiguous()
        else:  # a fresh state: the kernel starts from zeros (no tensor to allocate and fill)
            v = torch.empty(0)
        s, v_last = _FusedLIF.apply(
            flat, v, float(self.tau), float(self.v_threshold), float(self.surrogate_function.alpha)
        )
        self.v = v_last.reshape(x_seq.shape[1:])
        return s.reshape(x_seq.shape).to(x_seq.dtype)
