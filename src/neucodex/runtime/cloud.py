"""The cloud half run single-step for many sessions at once, and one session's sample logic.

Neuron state lives in SpikingJelly memory modules. Each session keeps its own copy (a list of
tensors in :func:`spikingjelly.activation_based.base.named_memories` order); for a step the states
of all sessions in the batch are concatenated along the batch dimension, loaded into the shared
model with the public memory API, run, and split back. A fresh sample starts from the modules'
reset values, materialised at the shapes a probe step records, so a session's first timestep can
be batched with another session's fifth.
"""

from __future__ import annotations

import asyncio
import copy
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from spikingjelly.activation_based import base

from .. import codec
from ..bottleneck import CoInferenceModel
from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import NeucodexError
from ..policy import ExitPolicy
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
        initial, self._slots = [], []
        for name, value in base.named_memories(self.cloud):
            owner, _, attr = name.rpartition(".")
            module = self.cloud.get_submodule(owner)
            self._slots.append((module, attr))
            rv = module.get_reset_value(attr)
            initial.append(rv.clone() if isinstance(rv, torch.Tensor) else torch.full_like(value, float(rv)))
        self.cloud.reset_state()
        return initial

    def new_state(self) -> State:
        """A fresh session's state: the reset values themselves, not copies — :meth:`step` only
        reads a state (``torch.cat`` copies it into the model) and returns new tensors."""
        return list(self._initial)

    @torch.no_grad()
    def step(self, codes: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        """One timestep for ``B`` sessions: codes ``[B, C', H', W']`` → (logits ``[B, K]``, new states).

        Every memory is set before the forward pass, so whatever the model held before does not
        matter and nothing is reset after it. A lone session's new state is the model's memories
        themselves (no concatenation, no split): when it steps alone again, setting them is a
        no-op in effect. The neurons compute out of place, so a returned state never changes
        behind its session's back."""
        if len(states) == 1:
            state = states[0]
        else:
            state = [torch.cat(parts) for parts in zip(*states, strict=True)]
        for (module, attr), value in zip(self._slots, state, strict=True):
            setattr(module, attr, value)
        logits = self.cloud(codes.to(self.device, torch.float32)).float().cpu()
        values = [getattr(module, attr) for module, attr in self._slots]
        if len(states) == 1:
            return logits, [values]
        split = [value.split(1) for value in values]
        return logits, [[parts[b] for parts in split] for b in range(len(states))]


@dataclass
class Job:
    """One session's frame waiting for the batcher."""

    session: CloudSession
    code: torch.Tensor  # [1, C', H', W']
    future: asyncio.Future  # → StepResult
    queued: float  # time.monotonic() when it arrived


@dataclass(frozen=True)
class StepResult:
    decision: Decision
    cloud_ms: float  # the batch's model time
    batch: int  # frames run together


class Batcher:
    """Frames of many sessions stepped together, driven by the server's event loop.

    A frame that arrives while a batch runs waits for the next one; otherwise it waits up to
    ``max_wait`` for more only while fewer frames are in hand than sessions mid-sample (no one
    else can send). A batch runs on one model thread, so the loop keeps receiving meanwhile —
    except a lone frame with no other sample open, which runs inline on the loop (no thread
    hand-off). Every batch's exit decisions are made together (:func:`record_batch`).
    ``max_batch=1`` turns dynamic batching off. ``threads``: PyTorch intra-op threads of the
    threads that run the model (OpenMP's setting is per thread; from a thread other than the
    main one, 2 threads were slower than 1 at batch 1 on a 2-core CPU, and no faster at 16).
    """

    def __init__(self, cloud: CloudModel, max_batch: int = 32, max_wait: float = 0.002, threads: int = 1) -> None:
        self.cloud = cloud
        self.max_batch = max(1, max_batch)
        self.max_wait = max_wait
        self.active = 0  # sessions with a sample in progress (changed on the loop only)
        self._pending: list[Job] = []
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self.threads = threads
        self._model = ThreadPoolExecutor(
            1, thread_name_prefix="neucodex-model", initializer=torch.set_num_threads, initargs=(threads,)
        )

    def sample_started(self) -> None:
        self.active += 1

    def sample_ended(self) -> None:
        self.active = max(0, self.active - 1)

    async def step(self, session: CloudSession, code: torch.Tensor) -> StepResult:
        """Run one timestep of ``session`` on its ``[1, C', H', W']`` code; its decision after it."""
        if not self._busy and not self._pending and self.active <= 1:
            # a lone frame with no other sample open: inline on the loop, no thread, no future
            logits, states, ms = self._run_codes(code, [session])
            return StepResult(record_batch([session], logits, states)[0], ms, 1)
        loop = asyncio.get_running_loop()
        job = Job(session, code, loop.create_future(), time.monotonic())
        self._pending.append(job)
        self._kick(loop)
        return await job.future

    def close(self) -> None:
        self._model.shutdown(wait=True, cancel_futures=True)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy or not self._pending:
            return
        if len(self._pending) < min(self.active, self.max_batch):  # others are mid-sample: wait a little
            remaining = self._pending[0].queued + self.max_wait - time.monotonic()
            if remaining > 0:
                self._timer = loop.call_later(remaining, self._kick, loop)
                return
        jobs, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        self._busy = True
        done = loop.run_in_executor(self._model, self._run, jobs)
        done.add_done_callback(lambda f: self._done(loop, jobs, f))

    def _run(self, jobs: list[Job]) -> tuple[torch.Tensor, list[State], float]:
        return self._run_codes(torch.cat([j.code for j in jobs]), [j.session for j in jobs])

    def _run_codes(self, codes: torch.Tensor, sessions: list[CloudSession]) -> tuple[torch.Tensor, list[State], float]:
        t0 = time.perf_counter()
        logits, states = self.cloud.step(codes, [s.state for s in sessions])
        return logits, states, (time.perf_counter() - t0) * 1000.0

    def _done(self, loop: asyncio.AbstractEventLoop, jobs: list[Job], f: asyncio.Future) -> None:
        """The batch's model step ended: decide for it, answer each job, start the next batch."""
        self._busy = False
        try:
            logits, states, ms = f.result()
            decisions = record_batch([j.session for j in jobs], logits, states)
        except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 — to every waiting session; the loop goes on
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(e)
        else:
            for j, d in zip(jobs, decisions, strict=True):
                if not j.future.done():  # a session cancelled meanwhile has nobody waiting
                    j.future.set_result(StepResult(d, ms, len(jobs)))
        self._kick(loop)


class FrameError(NeucodexError):
    """A frame the cloud cannot accept (malformed packet, wrong shape, format or timestep)."""


@dataclass(frozen=True)
class Decision:
    """The cloud's answer after one timestep of a sample."""

    timestep: int  # 0-based
    prediction: int
    confidence: float
    exit: bool
    mean_logits: np.ndarray  # [K] float32, running mean over the timesteps so far


class CloudSession:
    """One sample at a time, as the cloud runs it: check and decode each frame's packet, step the
    decoder + tail, keep the running sum of logits, decide exit. The server steps through a
    :class:`Batcher`; the edge's fallback steps the same session directly."""

    def __init__(
        self,
        cloud: CloudModel,
        policy: ExitPolicy,
        T: int,
        channel_probs: np.ndarray | None = None,
        context_probs: np.ndarray | None = None,
    ) -> None:
        self.cloud = cloud
        self.policy = policy
        self.T = T
        self.channel_probs = channel_probs
        self.context_probs = context_probs
        self.previous: np.ndarray | None = None  # the last decoded map: the context format's past
        self.number: int | None = None
        self.state: State = []
        self.sums: np.ndarray | None = None  # [K] float32: the logits summed over the sample's timesteps
        self.t = 0

    @property
    def active(self) -> bool:
        return self.number is not None

    def begin(self, number: int) -> None:
        self.number, self.state, self.sums, self.t = number, self.cloud.new_state(), None, 0
        self.previous = None

    def end(self) -> None:
        self.number, self.state, self.sums, self.previous = None, [], None, None

    def decode(self, packet: bytes) -> torch.Tensor:
        """The frame's code ``[1, C', H', W']`` (0/1 uint8 for a spiking model): shape, format and
        timestep checked before decoding, the header parsed and CRC-checked once."""
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
            dtype = np.uint8 if self.cloud.spiking else np.float32  # bits: the model step converts the batch
            array = codec.decode_payload(
                hd, self.channel_probs, dtype, self.context_probs, self.previous if self.t else None
            ).array
            self.previous = array
            return torch.from_numpy(array)
        except codec.CodecError as e:
            raise FrameError(str(e)) from None

    def step(self, code: torch.Tensor) -> Decision:
        """Step directly (no batcher): the edge's fallback."""
        logits, states = self.cloud.step(code, [self.state])
        return record_batch([self], logits, states)[0]


def record_batch(sessions: list[CloudSession], logits: torch.Tensor, states: list[State]) -> list[Decision]:
    """Each session takes its row of one step's logits ``[B, K]`` and its new neuron state; the
    exit decisions are made together, one policy check per (policy, T) group in the batch. NumPy
    throughout (a few small torch ops cost more than the whole decision at batch 1), in float32 as
    ``ExitPolicy.decide`` computes offline, so online and offline decisions stay equal."""
    ts = []
    for s, state in zip(sessions, states, strict=True):
        s.state = state
        s.t += 1
        ts.append(s.t)
    x = logits.numpy()
    if len(sessions) == 1:  # a lone frame: no stack
        sums = x if sessions[0].sums is None else x + sessions[0].sums
    else:
        zero = np.zeros(x.shape[1:], np.float32)
        sums = x + np.stack([zero if s.sums is None else s.sums for s in sessions])  # one add for all
    for s, row in zip(sessions, sums, strict=True):
        s.sums = row
    steps = np.asarray(ts)
    means = sums / steps.astype(np.float32)[:, None]  # as ExitPolicy.decide divides: float32 by the step count
    groups: dict[tuple[ExitPolicy, int], list[int]] = {}
    for b, s in enumerate(sessions):
        groups.setdefault((s.policy, s.T), []).append(b)
    if len(groups) == 1:  # the usual case: one policy for the whole batch, no gather and scatter
        (policy, T), _ = groups.popitem()
        d, c = policy.check(means, steps, T)
        done, conf = d.tolist(), c.tolist()
    else:
        done, conf = [False] * len(sessions), [0.0] * len(sessions)
        for (policy, T), idx in groups.items():
            d, c = policy.check(means[idx], steps[idx], T)
            for b, db, cb in zip(idx, d.tolist(), c.tolist(), strict=True):
                done[b], conf[b] = db, cb
    preds = means.argmax(-1).tolist()
    return [Decision(t - 1, p, c, d, m) for t, p, c, d, m in zip(ts, preds, conf, done, means, strict=True)]
