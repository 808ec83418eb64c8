"""The fused LIF: spikes and state bit-equal to SpikingJelly's LIF, gradients equal to float
rounding, SpikingJelly's path wherever the kernel does not apply."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import neuron, surrogate

import neucodex as nc
from neucodex.models import lif
from neucodex.models.lif import FusedLIFNode, fused_available

pytestmark = pytest.mark.skipif(not fused_available(), reason="no C++ compiler to build the fused LIF")

KW = dict(tau=2.0, v_threshold=1.0, v_reset=0.0, detach_reset=True, step_mode="m")


def pair(**kw):
    args = {**KW, "surrogate_function": surrogate.ATan(), **kw}
    return neuron.LIFNode(**args), FusedLIFNode(**{**args, "surrogate_function": surrogate.ATan()})


@pytest.mark.parametrize("shape", [(4, 3, 8, 5, 5), (1, 2, 7), (8, 16, 300), (2, 1, 1)])
@pytest.mark.parametrize("tau, vth", [(2.0, 1.0), (1.7, 0.6)])
def test_spikes_state_and_gradients_equal_spikingjelly(shape, tau, vth):
    torch.manual_seed(0)
    ref, fused = pair(tau=tau, v_threshold=vth)
    x = (torch.randn(shape) * 1.5).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    a, b = ref(x), fused(y)
    assert torch.equal(a, b) and 0 < a.mean() < 1  # bit for bit, and real spikes both ways
    assert torch.equal(ref.v, fused.v)
    g = torch.randn_like(a)
    (a * g).sum().backward()
    (b * g).sum().backward()
    torch.testing.assert_close(y.grad, x.grad, rtol=1e-6, atol=1e-7)
    assert x.grad.abs().sum() > 0


def test_state_carries_across_calls_and_reset_clears_it():
    ref, fused = pair()
    x1, x2 = torch.randn(3, 2, 10), torch.randn(3, 2, 10)
    assert torch.equal(torch.cat([ref(x1), ref(x2)]), torch.cat([fused(x1), fused(x2)]))
    ref.reset()
    fused.reset()
    assert torch.equal(ref(x2), fused(x2))


def test_bf16_input_under_autocast_gives_the_reference_spikes():
    ref, fused = pair()
    x = (torch.randn(4, 3, 50) * 2).to(torch.bfloat16)
    a, b = ref(x), fused(x)
    assert b.dtype == torch.bfloat16 and torch.equal(a.float(), b.float())


def test_gradients_flow_through_the_state_carried_from_a_previous_call():
    """Two calls in a row, the state carried between them: the backward charges again from the
    carried state, and the gradients through it (to the first call's input) equal SpikingJelly's."""
    torch.manual_seed(2)
    ref, fused = pair()
    x1, x2 = (torch.randn(2, 3, 700) * 1.5).requires_grad_(True), (torch.randn(2, 3, 700) * 1.5).requires_grad_(True)
    y1 = x1.detach().clone().requires_grad_(True)
    y2 = x2.detach().clone().requires_grad_(True)
    a = torch.cat([ref(x1), ref(x2)])
    b = torch.cat([fused(y1), fused(y2)])
    assert torch.equal(a, b)
    g = torch.randn_like(a)
    (a * g).sum().backward()
    (b * g).sum().backward()
    for r, f in ((x1, y1), (x2, y2)):
        torch.testing.assert_close(f.grad, r.grad, rtol=1e-6, atol=1e-7)
    assert x1.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(4, 3, 8, 5, 5), (2, 1, 1), (3, 1300)])
def test_bf16_runs_in_the_kernel_as_the_float32_kernel_converted_around_it(shape):
    """Under autocast the spikes, state and input gradient come out of the kernel in bf16 directly:
    bit-equal to converting to float32, running the float32 kernel and rounding back (nearest even)."""
    torch.manual_seed(1)
    _, fused = pair()
    _, converted = pair()
    x = (torch.randn(shape) * 1.5).to(torch.bfloat16).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    a = fused(x)
    b = converted(y.float()).to(torch.bfloat16)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b) and torch.equal(fused.v, converted.v)
    g = (torch.randn(shape) * 3).to(torch.bfloat16)
    (a * g).sum().backward()
    (b * g).sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.equal(x.grad, y.grad) and x.grad.abs().sum() > 0


def test_other_neurons_take_spikingjelly_path(monkeypatch):
    """Another surrogate, a soft reset or a kept reset gradient: the kernel is not used."""
    calls = []
    monkeypatch.setattr(lif._FusedLIF, "apply", lambda *a: calls.append(1) or (_ for _ in ()).throw(AssertionError))
    for kw in ({"surrogate_function": surrogate.Sigmoid()}, {"v_reset": None}, {"detach_reset": False}):
        args = {**KW, "surrogate_function": surrogate.ATan(), **kw}
        x = torch.randn(3, 2, 6)
        assert torch.equal(neuron.LIFNode(**args)(x), FusedLIFNode(**args)(x))
    assert calls == []


def test_a_whole_network_gives_the_same_logits_fused_and_not(monkeypatch):
    """A spiking VGG in eval and a training step: the same outputs and gradients with the kernel
    turned off (NEUCODEX_FUSED_LIF=0 takes SpikingJelly's path)."""
    torch.manual_seed(0)
    model = nc.create_model("vgg-tiny", T=3, in_channels=1, input_size=16, widths=(8, 16, 16)).train()
    model.set_step_mode("m")
    x = torch.rand(4, 1, 16, 16)

    def run():
        model.zero_grad()
        out = model(x)
        model.reset_state()
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    fused_out, fused_grads = run()
    monkeypatch.setattr(lif, "_kernel", lambda: None)
    ref_out, ref_grads = run()
    assert torch.equal(fused_out, ref_out)
    for a, b in zip(fused_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
