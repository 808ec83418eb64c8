"""Edge energy: operation counts with firing rates (SpikeBottleNet eq. 7–8), hardware and radio profiles.

Every conv, transposed conv and linear layer is counted per timestep: its dense operation count
(multiply–accumulates a DNN would do) and the firing rate of its input. A layer whose input is
binary spikes costs ``AC × rate × dense`` — eq. 7's SyOPs, ``fr × T × FLOPs`` summed over the
timesteps run; a layer with real-valued input (the first layer of an SNN fed images, every DNN
layer, a classifier after pooling) costs ``MAC × dense``. The first layer of an SNN fed event
frames (``[T, B, 2, H, W]``: two polarities of non-negative event counts) costs accumulates too:
each input event is added into its fan-out, so it costs ``AC × dense × (events per input
element)`` — the same SyOPs rule, with the event rate in place of the firing rate. BN (foldable
into the conv) and neuron updates are not counted, as in the paper.

Scopes: ``full`` (default) counts every layer on the edge — stem, downsample shortcuts, the
bottleneck encoder. ``paper`` follows SpikeBottleNet §4.3: only the convolutions inside the
blocks up to the split point; the first (real-input) conv, downsample shortcuts and the encoder
are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from .errors import NeucodexError
from .models import Backbone
from .profiles import HARDWARE, HardwareProfile, RadioProfile

SCOPES = ("full", "paper")


@dataclass
class LayerOps:
    """One layer's counts per sample: ``dense`` operations per timestep; ``rates`` of its input per
    timestep when that input is binary spikes or event counts (accumulates per dense op; ``None``:
    real-valued input, costs MACs)."""

    stage: str
    name: str
    dense: int
    rates: list[float] | None
    paper: bool  # inside the paper's scope

    def ops(self, steps: int) -> tuple[float, float]:
        """(MACs, ACs) over the first ``steps`` timesteps."""
        if self.rates is None:
            return float(self.dense * steps), 0.0
        return 0.0, float(self.dense * sum(self.rates[:steps]))


def dense_ops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor, per: int) -> int:
    """Dense multiply–accumulates per sample and timestep; ``per`` = samples x timesteps."""
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features * (out.numel() // per // module.out_features)
    k = module.weight.shape[2] * module.weight.shape[3]
    if isinstance(module, nn.ConvTranspose2d):  # every input element scatters to k x C_out / groups outputs
        return inp.numel() // per * k * module.out_channels // module.groups
    return out.numel() // per * k * module.in_channels // module.groups


def is_spikes(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


@torch.no_grad()
def count_ops(model: Backbone, x: torch.Tensor) -> list[LayerOps]:
    """Per-layer counts of ``model`` on input ``x`` (``[B, C, H, W]`` or ``[T, B, C, H, W]``), in order.

    The model runs multi-step in its current train/eval mode; counts are means per sample.
    """
    T = model.T if model.spiking else 1
    B = x.shape[1] if x.dim() == 5 else x.shape[0]
    # event frames ([T, B, 2 polarities, H, W] counts, never negative): the first layer accumulates each event
    events = model.spiking and x.dim() == 5 and x.shape[2] == 2 and bool((x >= 0).all())
    records: list[LayerOps] = []
    first = True
    hooks = []

    def hook_for(stage: str, name: str):
        def hook(module, args, out):
            nonlocal first
            inp = args[0]
            steps = T if model.spiking else 1
            dense = dense_ops(module, inp, out, B * steps)
            spikes = model.spiking and is_spikes(inp)
            rates = inp.reshape(steps, -1).ne(0).float().mean(1).tolist() if spikes else None
            if events and first and not spikes:  # event counts (resized: fractional): events per element
                rates = inp.reshape(steps, -1).float().mean(1).tolist()
            paper = stage in model.split_points and ".shortcut" not in f".{name}" and not first
            first = False
            records.append(LayerOps(stage, name, dense, rates, paper))

        return hook

    for stage, sub in model.stages.named_children():
        for name, m in sub.named_modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                hooks.append(m.register_forward_hook(hook_for(stage, name)))
    mode = model.step_mode
    try:
        model.set_step_mode("m" if model.spiking else "s")
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.reset_state()
        model.set_step_mode(mode)
    return records


@dataclass
class EdgeEnergy:
    """Edge compute up to a point: operation counts and energy (mJ) under a profile."""

    point: str
    macs: float
    acs: float
    energy_mj: float
    steps: int
    layers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _edge_layers(ops: list[LayerOps], model: Backbone, upto: str, scope: str) -> list[LayerOps]:
    if scope not in SCOPES:
        raise NeucodexError(f"unknown scope {scope!r}; choose from {', '.join(SCOPES)}")
    names = model.names()
    if upto not in names:
        raise NeucodexError(f"{upto!r} is not a stage of {model.arch}; split points: {', '.join(model.split_points)}")
    keep = set(names[: names.index(upto) + 1])
    return [o for o in ops if o.stage in keep and (scope == "full" or o.paper)]


def energy(ops: list[LayerOps], profile: HardwareProfile, steps: int = 1) -> tuple[float, float, float]:
    """(MACs, ACs, mJ) of ``ops`` over ``steps`` timesteps."""
    macs = sum(o.ops(steps)[0] for o in ops)
    acs = sum(o.ops(steps)[1] for o in ops)
    return macs, acs, (macs * profile.mac_pj + acs * profile.ac_pj) * 1e-9


def edge_energy(
    model: Backbone,
    ops: list[LayerOps],
    upto: str,
    profile: HardwareProfile,
    scope: str = "full",
    steps: int | None = None,
) -> EdgeEnergy:
    """Energy of running ``model`` up to stage ``upto`` (a split point, or ``encoder``) for ``steps``."""
    steps = steps if steps is not None else (model.T if model.spiking else 1)
    layers = _edge_layers(ops, model, upto, scope)
    macs, acs, mj = energy(layers, profile, steps)
    return EdgeEnergy(upto, macs, acs, mj, steps, [f"{o.stage}.{o.name}" for o in layers])


def per_split_point(model: Backbone, x: torch.Tensor, profile: HardwareProfile, scope: str = "full") -> list[dict]:
    """Edge energy (head only, no bottleneck) at every split point of a backbone."""
    return split_point_rows(model, count_ops(model, x), profile, scope)


def split_point_rows(model: Backbone, ops: list[LayerOps], profile: HardwareProfile, scope: str = "full") -> list[dict]:
    """:func:`per_split_point` from counts already taken: one model run priced under every profile."""
    out = []
    for p in model.split_points:
        e = edge_energy(model, ops, p, profile, scope)
        rb = p.upper() if p.startswith("rb") else None
        out.append({"point": p, "rb": rb, "macs": e.macs, "acs": e.acs, "energy_mj": e.energy_mj})
    return out


@dataclass
class SplitPointEnergy:
    """What ``neucodex energy`` prints: per split point MACs, ACs and mJ of one model."""

    arch: str
    kind: str  # SNN or DNN
    steps: int
    rows: list[dict]
    note: str = ""


def split_point_energy(
    checkpoint: str | None,
    model_name: str = "resnet18",
    *,
    dnn: bool = False,
    dataset: str | None = None,
    samples: int = 16,
    profile: HardwareProfile | None = None,
    scope: str = "full",
    T: int = 4,
    input_size: int = 32,
    num_classes: int = 10,
    in_channels: int = 3,
) -> SplitPointEnergy:
    """Edge energy up to every split point of a trained checkpoint (its firing rates on its test
    samples; a co-inference checkpoint's backbone) or of an untrained model on random input."""

    from .checkpoint import load_checkpoint, read_info
    from .config import load_config
    from .evaluate import load_split, to_model_input
    from .models import create_model

    profile = profile or HARDWARE["45nm"]
    cfg, note = None, ""
    if checkpoint is not None:
        info = read_info(checkpoint)
        ck = load_checkpoint(info.backbone_path if info.is_coinference else checkpoint)
        model, cfg = ck.model, ck.info.experiment()
        if dnn and model.spiking:
            raise NeucodexError("--dnn with an SNN checkpoint: the counts would be the twin's; drop --checkpoint")
    else:
        model = create_model(
            model_name, spiking=not dnn, T=T, input_size=input_size, num_classes=num_classes, in_channels=in_channels
        )
    if dataset:
        base = cfg or load_config("tiny")
        cfg = replace(base, data=replace(base.data, name=dataset, size=model.input_size, limit=None))
    if cfg is not None:
        ds = load_split(cfg, "test", model.T)
        x = to_model_input(torch.stack([ds[i][0] for i in range(min(samples, len(ds)))]), torch.device("cpu"))
    else:
        x = torch.rand(samples, model.in_channels, model.input_size, model.input_size)
    if model.spiking and checkpoint is None:
        model.train()  # batch statistics: an untrained SNN's eval-mode BN leaves every neuron silent
        note = "firing rates of an untrained SNN (batch statistics); pass --checkpoint for a trained model's"
    rows = per_split_point(model, x, profile, scope)
    return SplitPointEnergy(model.arch, "SNN" if model.spiking else "DNN", model.T if model.spiking else 1, rows, note)


@dataclass
class CoInferenceEnergy:
    """Edge energy per sample (mJ) of co-inference against edge-only and cloud-only, under one
    hardware profile and one radio. Compute is in full scope (every layer the edge runs) unless
    named ``paper`` (SpikeBottleNet eq. 7's scope: residual-block convolutions only — no first
    convolution, downsampling shortcuts or encoder, on either side)."""

    co_inference_compute_mj: float
    co_inference_radio_mj: float
    co_inference_mj: float
    co_inference_all_T_mj: float
    edge_only_snn_mj: float
    edge_only_dnn_mj: float  # the DNN twin at this profile's MAC cost
    cloud_only_mj: float  # the radio sending what cloud-only sends (``cloud_bits``)
    reduction_vs_edge_only_snn: float
    reduction_vs_edge_only_dnn: float
    compute_reduction_vs_edge_only_snn: float  # edge compute only, no radio
    co_inference_compute_paper_mj: float
    edge_only_snn_paper_mj: float
    compute_reduction_vs_edge_only_snn_paper: float
    # both again with the backbone's own head (equal unless fine-tuning changed the head)
    compute_reduction_backbone_head: float
    compute_reduction_backbone_head_paper: float
    break_even_nj_per_bit: float  # below this radio cost per bit, co-inference beats edge-only SNN

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class OpCounts:
    """Per-layer counts of a co-inference model, its backbone and the backbone's DNN twin on the
    same input: each model run once, then priced under every profile and scope."""

    co: list[LayerOps]
    backbone: list[LayerOps]
    dnn: list[LayerOps]

    @classmethod
    def of(cls, model: Backbone, backbone: Backbone, dnn: Backbone, x: torch.Tensor) -> OpCounts:
        return cls(count_ops(model, x), count_ops(backbone, x), count_ops(dnn, x))


def coinference_energy(
    model: Backbone,
    counts: OpCounts,
    steps: torch.Tensor,
    bits_exit,
    bits_all,
    radio: RadioProfile,
    cloud_bits: float | None = None,
) -> tuple[dict[str, CoInferenceEnergy], dict[str, list[float]]]:
    """Edge energy per sample of co-inference (compute up to the encoder for the timesteps each
    sample ran, plus the radio for its on-wire bytes) against edge-only SNN and DNN and
    cloud-only, under every registered hardware profile; and each sample's co-inference edge
    energy per profile.

    ``bits_exit`` / ``bits_all``: :class:`~neucodex.accounting.BitReport` with and without early
    exit; ``cloud_bits``: what cloud-only sends per sample (the raw 8-bit input unless given, e.g.
    the best image-codec point's file bits).
    """
    T = model.T
    cloud_bits = bits_exit.input_bits if cloud_bits is None else cloud_bits
    ops_co, ops_bb, ops_dnn = counts.co, counts.backbone, counts.dnn
    # the paper's scope is the backbone's: its block convs (a co-inference model's only split
    # point is its encoder, which the paper leaves out)
    in_scope = {(o.stage, o.name) for o in ops_bb if o.paper}
    ops_co = [replace(o, paper=(o.stage, o.name) in in_scope) for o in ops_co]
    # the same edge had it kept the backbone's head as it fires in the backbone: what the cut and
    # early exit save alone, apart from anything fine-tuning did to the head's spikes
    head = set(model.names()[: model.names().index("encoder")])
    theirs = {(o.stage, o.name): o for o in ops_bb}
    ops_kept = [theirs[(o.stage, o.name)] if o.stage in head else o for o in ops_co]
    energies, per_sample = {}, {}

    def compute_mj(prof: HardwareProfile, scope: str, ops=ops_co) -> tuple[list[float], float, float]:
        """(edge energy after 1..T steps, its mean over the samples' exit steps, edge-only SNN)."""
        per_step = [edge_energy(model, ops, "encoder", prof, scope, s).energy_mj for s in range(1, T + 1)]
        whole = energy([o for o in ops_bb if scope == "full" or o.paper], prof, T)[2]
        return per_step, sum(per_step[int(s) - 1] for s in steps) / len(steps), whole

    radio_co = radio.mj(bits_exit.wire_bytes * 8)
    for hw, prof in HARDWARE.items():
        per_step, compute, snn_only = compute_mj(prof, "full")
        _, compute_paper, snn_only_paper = compute_mj(prof, "paper")
        kept = {scope: compute_mj(prof, scope, ops_kept)[1] for scope in SCOPES}
        dnn_only = energy(ops_dnn, prof, 1)[2]
        co = compute + radio_co
        per_sample[hw] = [
            per_step[int(s) - 1] + radio.mj(8 * b) for s, b in zip(steps, bits_exit.per_sample_wire_bytes, strict=True)
        ]
        energies[hw] = CoInferenceEnergy(
            co_inference_compute_mj=compute,
            co_inference_radio_mj=radio_co,
            co_inference_mj=co,
            co_inference_all_T_mj=per_step[-1] + radio.mj(bits_all.wire_bytes * 8),
            edge_only_snn_mj=snn_only,
            edge_only_dnn_mj=dnn_only,
            cloud_only_mj=radio.mj(cloud_bits),
            reduction_vs_edge_only_snn=1 - co / snn_only,
            reduction_vs_edge_only_dnn=1 - co / dnn_only,
            compute_reduction_vs_edge_only_snn=1 - compute / snn_only,
            co_inference_compute_paper_mj=compute_paper,
            edge_only_snn_paper_mj=snn_only_paper,
            compute_reduction_vs_edge_only_snn_paper=1 - compute_paper / snn_only_paper,
            compute_reduction_backbone_head=1 - kept["full"] / snn_only,
            compute_reduction_backbone_head_paper=1 - kept["paper"] / snn_only_paper,
            break_even_nj_per_bit=(snn_only - compute) * 1e6 / max(bits_exit.wire_bytes * 8, 1e-12),
        )
    return energies, per_sample
