"""Forward hooks that read what a training step needs beside the output: tail blocks for hints,
the code for its rate, the edge's spikes for its energy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..bottleneck import CoInferenceModel
from ..energy import dense_ops, is_spikes
from ..entropy import ContextModel
from ..errors import NeucodexError
from ..models import Backbone


class BlockTaps:
    """The latest outputs of a co-inference model's tail blocks and of the same blocks in its
    backbone, for hint distillation: the MSE between them tells every block after the cut what
    it should emit, where the label alone says only what the last one should.

    Why: at an early cut the tail must relearn from a lossy code, and one label per image is a
    thin signal for six blocks; the frozen backbone's own block outputs are a dense one.
    """

    def __init__(self, student: CoInferenceModel, teacher: Backbone) -> None:
        self.names = self.tail_blocks(student, teacher.split_points)
        self.student: dict[str, torch.Tensor] = {}
        self.teacher: dict[str, torch.Tensor] = {}
        self.hooks = [
            model.stages._modules[n].register_forward_hook(self._keeper(store, n))
            for model, store in ((student, self.student), (teacher, self.teacher))
            for n in self.names
        ]

    @staticmethod
    def tail_blocks(
        student: CoInferenceModel,
        split_points: list[str],
        option: str = "finetune.feature_distill",
        hint: str = " (finetune.distill still applies there)",
    ) -> list[str]:
        """The backbone's blocks after the cut; none (at the last block) is one clear error."""
        names = student.names()
        blocks = [n for n in names[names.index("decoder") + 1 :] if n in split_points]
        if not blocks:
            raise NeucodexError(
                f"{option}: no block of {student.arch} follows the cut at {student.point}; set it to 0{hint}"
            )
        return blocks

    @staticmethod
    def _keeper(store: dict, name: str):
        def keep(_module, _inputs, output):
            store[name] = output

        return keep

    def loss(self) -> torch.Tensor:
        """Mean over the tapped blocks of the MSE from the student's output to the teacher's."""
        return torch.stack([F.mse_loss(self.student[n].float(), self.teacher[n].float()) for n in self.names]).mean()

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.student.clear()
        self.teacher.clear()


class CodeFiring:
    """The bottleneck code's mean firing rate in the current training step, for the rate-only
    penalty ``finetune.code_rate_penalty`` (fewer spikes, fewer bits, no entropy model)."""

    def __init__(self, model: CoInferenceModel) -> None:
        self.codes: list[torch.Tensor] = []
        self.hook = model.stages.encoder.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        if module.training:
            self.codes.append(out)

    def rate(self) -> torch.Tensor:
        """The mean over every code element of the last forward pass; clears it."""
        value = torch.cat([c.flatten() for c in self.codes]).mean()
        self.codes.clear()
        return value

    def remove(self) -> None:
        self.hook.remove()
        self.codes.clear()


class CodeRate:
    """The code's bits per sample in the current training step under its learned context model,
    for the rate–distortion loss ``task + λ · bits``.

    Why: without a rate term the code fires at whatever rate classification likes; with it the
    loss trades bits against accuracy directly, and the bits it counts are those the ``context``
    codec sends (the model's probabilities, re-counted on the deployed code, are what it codes with).
    """

    def __init__(self, model: CoInferenceModel) -> None:
        self.model = ContextModel(model.code_shape[0])
        self.code: torch.Tensor | None = None
        self.started = False
        self.hook = model.stages.encoder.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        if module.training and torch.is_grad_enabled():
            self.code = out

    def bits(self) -> torch.Tensor:
        """Mean expected bits per sample of the last training forward pass (all T sent)."""
        code, self.code = self.code, None
        if code is None:
            raise NeucodexError("finetune.rate_penalty: the encoder produced no code in this step")
        if not self.started:  # from the code's own frequencies, on resume as well
            self.model.to(code.device).init_from(code.detach())
            self.started = True
        return self.model.bits(code).mean()

    def remove(self) -> None:
        self.hook.remove()
        self.code = None


class EdgeSpikes:
    """The edge's synaptic operations per dense operation in the current training step: the firing
    rate of the spikes entering each of the edge's layers (head and encoder), weighted by that
    layer's dense operations — eq. 7's SyOPs over their dense count, so λ × this is a penalty
    proportional to the edge's compute energy.

    Why: at an early cut the edge's energy is its head's spikes, which the backbone never had a
    reason to keep few; the first (real-input) layer costs MACs whatever it is given and is left out.
    """

    def __init__(self, model: CoInferenceModel) -> None:
        edge = model.slice(0, model.names().index("encoder") + 1)
        self.terms: list[tuple[int, torch.Tensor]] = []
        self.hooks = [
            m.register_forward_hook(self._keep)
            for m in edge.modules()
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
        ]

    def _keep(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        inp = args[0]
        if module.training and torch.is_grad_enabled() and is_spikes(inp):
            self.terms.append((dense_ops(module, inp, out, 1), inp.float().mean()))

    def rate(self) -> torch.Tensor:
        """The dense-weighted mean input firing rate of the last forward pass; clears it."""
        total = sum(d for d, _ in self.terms)
        value = sum(d * r for d, r in self.terms) / total
        self.terms.clear()
        return value

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.terms.clear()
