"""What a training step reports, and the check that keeps a collapsed model from being stored silently."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..accounting import BitReport


@dataclass
class TrainResult:
    """What a training step produced: the checkpoint, its test figures and the epoch history."""

    checkpoint: str
    model_id: str
    test_accuracy: float
    test_accuracy_at_t: list[float]
    val_accuracy: float | None
    epochs: int
    wall_s: float
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"backbone: test accuracy {self.test_accuracy:.2f}% after {self.epochs} epochs in {self.wall_s:.1f} s "
            f"→ {self.checkpoint}"
        )


@dataclass
class FinetuneResult(TrainResult):
    """A co-inference fine-tune: also the backbone's accuracy at the same T and real-packet bits."""

    point: str = ""
    bottleneck: str = ""
    T: int = 1
    backbone_test_accuracy: float = 0.0
    backbone_val_accuracy: float = 0.0
    val_accuracy_final: float = 0.0
    bits: BitReport | None = None
    code_models: dict | None = None  # the learned entropy models' floors on the training images

    @property
    def drop(self) -> float:
        return self.backbone_test_accuracy - self.test_accuracy

    @property
    def val_drop(self) -> float:
        return self.backbone_val_accuracy - self.val_accuracy_final

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bits"] = self.bits.to_dict() if self.bits else None
        return {**d, "drop": self.drop, "val_drop": self.val_drop}

    def summary(self) -> str:
        b = self.bits
        return (
            f"co-inference: test accuracy {self.test_accuracy:.2f}% after {self.epochs} epochs in "
            f"{self.wall_s:.1f} s (backbone {self.backbone_test_accuracy:.2f}%, drop {self.drop:.2f} pp); "
            f"{b.payload_bits:.0f} payload bits / {b.wire_bytes:.0f} wire bytes per sample, "
            f"{b.vs_spikes or 0:.0f}x vs spikes, {b.vs_float32:.0f}x vs float32, {b.vs_input:.0f}x vs 8-bit input"
            f" → {self.checkpoint}"
        )


def collapse_warning(test_accuracy: float, train_accuracy: float | None, classes: int) -> str:
    """Non-empty when a model evaluates near chance while it trained well above it (eval-mode
    collapse): such a checkpoint must not be stored silently."""
    chance = 100.0 / max(classes, 1)
    if train_accuracy is None or test_accuracy > 1.5 * chance or train_accuracy < 2.5 * chance:
        return ""
    return (
        f"test accuracy {test_accuracy:.1f}% is near chance ({chance:.1f}%) while training accuracy was "
        f"{train_accuracy:.1f}%: the model collapses in eval mode; check the norms' running statistics "
        f"(optim.norm_samples) before using it"
    )
