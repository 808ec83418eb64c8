"""The PyTorch edge: the checkpoint's head + encoder, single-step, streamed by :class:`StreamingClient`.

The checkpoint holds the whole network, so when the cloud cannot be reached in time a sample can
be answered by the edge itself (decoder + tail run locally: ``fallback="local"``, the default)
or end with ``status="failed"`` (``fallback="none"``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import Checkpoint
from ..errors import InvalidArgumentError
from ..policy import ExitPolicy
from .cloud import CloudModel, CloudSession, open_coinference
from .protocol import policy_from_pb
from .stream import SampleResult, StreamingClient

__all__ = ["EdgeClient", "SampleResult"]


class EdgeClient(StreamingClient):
    """Streams samples through a co-inference checkpoint's edge half to a cloud server.

    ``policy``: the client's early-exit rule sent in ``Open``; ``None`` lets the server apply its
    own (the checkpoint's calibrated one). ``codec_format``: ``auto`` picks the smallest spike
    format per packet; a DNN checkpoint always sends ``uint8``.
    """

    def __init__(
        self,
        checkpoint: str | Path | Checkpoint,
        server: str,
        *,
        token: str | None = None,
        tls_ca: bytes | None = None,
        codec_format: str = "auto",
        policy: ExitPolicy | None = None,
        pipeline: bool = True,
        timeout: float = 10.0,
        retry_deadline: float = 5.0,
        fallback: str = "local",
        want_logits: bool = False,
        stream_age: float = 2.0,
        device: str = "cpu",
    ) -> None:
        ck = open_coinference(checkpoint)
        spiking = ck.model.spiking
        super().__init__(
            server,
            model_id=ck.model_id,
            T=ck.info.model.steps,
            codec_format=codec_format if spiking else "uint8",
            probs=ck.info.probs if spiking else None,  # learned entropy models, if fitted
            context_probs=ck.info.context if spiking else None,
            token=token,
            tls_ca=tls_ca,
            policy=policy,
            pipeline=pipeline,
            timeout=timeout,
            retry_deadline=retry_deadline,
            fallback=fallback,
            fallbacks=("local", "none"),
            want_logits=want_logits,
            stream_age=stream_age,
        )
        self.ck = ck
        self.model = ck.model.to(device).eval()
        self.device = torch.device(device)
        self.edge = self.model.edge
        self.edge.set_step_mode("s")
        self._cloud: CloudModel | None = None  # built on the first fallback

    def _check(self, x: torch.Tensor) -> None:
        expected = 4 if self.ck.info.dataset.get("kind") == "events" else 3
        if x.dim() != expected:
            what = "[T, C, H, W] event frames" if expected == 4 else "[C, H, W] image"
            raise InvalidArgumentError(
                f"infer takes one sample, a {what}; got shape {tuple(x.shape)} — for a batch, call infer per sample"
            )

    def _reset(self) -> None:
        self.edge.reset_state()

    @torch.no_grad()
    def _code(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self.edge((x[t] if x.dim() == 4 else x).unsqueeze(0).to(self.device))[0].cpu()

    @torch.no_grad()
    def _give_up(self, x: torch.Tensor, packets: list[bytes], res: SampleResult) -> None:
        """The cloud could not be reached in time: run decoder + tail here, or fail explicitly."""
        if self.fallback == "none":
            return super()._give_up(x, packets, res)
        res.payload_bits = res.wire_bytes = res.grpc_bytes = 0
        if self._cloud is None:
            self._cloud = CloudModel(self.model, self.device)
        policy = self.policy or (
            policy_from_pb(self.server_policy) if self.server_policy is not None else self.ck.info.policy
        )
        session = CloudSession(self._cloud, policy, self.T, self.probs, self.context_probs)
        session.begin(res.index)
        for t in range(self.T):
            if t == len(packets):
                packets.append(self._compute(x, t, res))
            d = session.step(session.decode(packets[t]))
            res.steps = t + 1
            if d.exit:
                break
        res.prediction, res.confidence, res.status = d.prediction, d.confidence, "fallback"
