"""The cloud half run single-step for many sessions at once, and one session's sample logic.

Neuron state lives in SpikingJelly memory modules. Each session keeps its own copy (a list of
tensors in :func:`spikingjelly.activation_based.base.named_memories` order); for a step the states
of all sessions in the batch are concatenated along the batch dimension, loaded into the shared
model with the public memory API, run, and split back. A fresh sample starts from the modules'
reset values, materialised at the shapes a probe step records, so a session's first timestep can
be batched with another session's fifth.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from spikingjelly.activation_based import base

from .. import codec
from ..bottleneck import CoInferenceModel
from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import NeucodexError
from ..exit import ExitPolicy
from . import neucodex_pb2 as pb
from .protocol import RuntimeFailure

State = list[torch.Tensor]  # one [1, ...] tensor per memory, in named_memories order


def open_coinference(checkpoint: str | Path | Checkpoint) -> Checkpoint:
    """A co-inference checkpoint whose model this process may step alone (neuron state is per
    model object, so a checkpoint object passed in is copied)."""
    if isinstance(checkpoint, Checkpoint):
        ck = Checkpoint(copy.deepcopy(checkpoint.model), checkpoint.info)
    else:
        ck = load_checkpoint(checkpoint)
    if not ck.info.is_coinference:
        raise RuntimeFailure(
            "this checkpoint has no bottleneck: use a fine-tuned co-inference checkpoint (neucodex finetune)"
        )
    return ck


def policy_from_pb(m: pb.Policy) -> ExitPolicy:
    return ExitPolicy(m.measure or "max_softmax", m.threshold, max(1, m.min_steps), m.max_steps or None)


class CloudModel:
    """Decoder + tail of a co-inference model, stepped over a batch of independent sessions."""

    def __init__(self, model: CoInferenceModel, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cloud = model.cloud
        self.cloud.set_step_mode("s")
        self.code_shape = tuple(model.code_shape)
        self.spiking = model.spiking
        self._initial = self._probe()

    @torch.no_grad()
    def _probe(self) -> State:
        """Run one zero step to learn each memory's shape; keep the reset value at that shape."""
        self.cloud.reset_state()
        self.cloud(torch.zeros(1, *self.code_shape, device=self.device))
        initial = []
        for name, value in base.named_memories(self.cloud):
            owner, _, attr = name.rpartition(".")
            rv = self.cloud.get_submodule(owner).get_reset_value(attr)
            initial.append(rv.clone() if isinstance(rv, torch.Tensor) else torch.full_like(value, float(rv)))
        self.cloud.reset_state()
        return initial

    def new_state(self) -> State:
        return [v.clone() for v in self._initial]

    @torch.no_grad()
    def step(self, codes: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        """One timestep for ``B`` sessions: codes ``[B, C', H', W']`` → (logits ``[B, K]``, new states)."""
        if self._initial:
            base.load_memories(self.cloud, [torch.cat(parts) for parts in zip(*states, strict=True)])
        logits = self.cloud(codes.to(self.device)).float().cpu()
        split = [value.split(1) for value in base.extract_memories(self.cloud)]
        self.cloud.reset_state()
        return logits, [[parts[b] for parts in split] for b in range(len(states))]


@dataclass
class Job:
    """One session's frame waiting for the batcher."""

    code: torch.Tensor  # [1, C', H', W']
    state: State
    future: Future  # → StepResult


@dataclass(frozen=True)
class StepResult:
    logits: torch.Tensor  # [K]
    state: State
    cloud_ms: float  # the batch's model time
    batch: int  # frames run together


class Batcher:
    """One worker thread runs the cloud model; frames arriving together are run together.

    After the first frame it takes whatever else is queued, and waits up to ``max_wait`` for
    more only while fewer frames are in hand than sessions mid-sample (no one else can send).
    ``max_batch=1`` turns dynamic batching off (frames run one by one on the same worker).
    """

    def __init__(self, cloud: CloudModel, max_batch: int = 32, max_wait: float = 0.002) -> None:
        self.cloud = cloud
        self.max_batch = max(1, max_batch)
        self.max_wait = max_wait
        self.active = 0  # sessions with a sample in progress
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="neucodex-batcher", daemon=True)
        self._thread.start()

    def sample_started(self) -> None:
        with self._lock:
            self.active += 1

    def sample_ended(self) -> None:
        with self._lock:
            self.active = max(0, self.active - 1)

    def submit(self, code: torch.Tensor, state: State) -> Future:
        """Queue one session's ``[1, C', H', W']`` code; the future gives a :class:`StepResult`."""
        fut: Future = Future()
        self._queue.put(Job(code, state, fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _collect(self, first: Job) -> list[Job]:
        jobs = [first]
        deadline = time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if len(jobs) >= self.active or remaining <= 0:
                    break
                try:
                    job = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is None:
                self._queue.put(None)
                break
            jobs.append(job)
        return jobs

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = self._collect(first)
            t0 = time.perf_counter()
            try:
                logits, states = self.cloud.step(torch.cat([j.code for j in jobs]), [j.state for j in jobs])
            except Exception as e:  # noqa: BLE001 — handed to every waiting session, the worker goes on
                for j in jobs:
                    j.future.set_exception(e)
                continue
            ms = (time.perf_counter() - t0) * 1000.0
            for b, j in enumerate(jobs):
                j.future.set_result(StepResult(logits[b], states[b], ms, len(jobs)))


class FrameError(NeucodexError):
    """A frame the cloud cannot accept (malformed packet, wrong shape, format or timestep)."""


@dataclass(frozen=True)
class Decision:
    """The cloud's answer after one timestep of a sample."""

    timestep: int  # 0-based
    prediction: int
    confidence: float
    exit: bool
    mean_logits: torch.Tensor  # [K], running mean over the timesteps so far


class CloudSession:
    """One sample at a time, as the cloud runs it: check and decode each frame's packet, step the
    decoder + tail, keep the running sum of logits, decide exit. The server steps through a
    :class:`Batcher`; the edge's fallback steps the same session directly."""

    def __init__(self, cloud: CloudModel, policy: ExitPolicy, T: int, channel_probs: np.ndarray | None = None) -> None:
        self.cloud = cloud
        self.policy = policy
        self.T = T
        self.channel_probs = channel_probs
        self.number: int | None = None
        self.state: State = []
        self.sums: torch.Tensor | None = None
        self.t = 0

    @property
    def active(self) -> bool:
        return self.number is not None

    def begin(self, number: int) -> None:
        self.number, self.state, self.sums, self.t = number, self.cloud.new_state(), None, 0

    def end(self) -> None:
        self.number, self.state, self.sums = None, [], None

    def decode(self, packet: bytes) -> torch.Tensor:
        """The frame's code ``[1, C', H', W']``: shape, format and timestep checked before decoding."""
        try:
            hd = codec.read_header(packet)
            if hd["timestep"] != self.t:
                raise FrameError(f"packet header says timestep {hd['timestep']}, the frame is timestep {self.t}")
            if hd["shape"] != (1, *self.cloud.code_shape):
                raise FrameError(
                    f"code shape {hd['shape'][1:]} does not match the model's {self.cloud.code_shape} "
                    "(one [C', H', W'] map per frame)"
                )
            if (hd["format"] == "uint8") == self.cloud.spiking:
                want = "a spike format" if self.cloud.spiking else "uint8"
                raise FrameError(f"format {hd['format']} sent, model needs {want}")
            return torch.from_numpy(
                codec.decode_packet(
                    packet, channel_probs=self.channel_probs, expected_shape=(1, *self.cloud.code_shape)
                ).array
            )
        except codec.CodecError as e:
            raise FrameError(str(e)) from None

    def record(self, logits: torch.Tensor, state: State) -> Decision:
        """Take one timestep's logits ``[K]`` and the new neuron state; decide."""
        self.state = state
        self.sums = logits if self.sums is None else self.sums + logits
        self.t += 1
        done, conf = self.policy.check(self.sums[None], self.t, self.T)
        mean = self.sums / self.t
        return Decision(self.t - 1, int(mean.argmax()), float(conf[0]), bool(done[0]), mean)

    def step(self, code: torch.Tensor) -> Decision:
        """Step directly (no batcher): the edge's fallback."""
        logits, (state,) = self.cloud.step(code, [self.state])
        return self.record(logits[0], state)
