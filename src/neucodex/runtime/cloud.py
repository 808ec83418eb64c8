"""The cloud half run single-step for many sessions at once.

Neuron state lives in SpikingJelly memory modules (``_memories``). Each session keeps its own
copy; for a step the states of all sessions in the batch are concatenated along the batch
dimension, swapped into the shared model, run, and split back. A fresh sample starts from the
modules' reset values, materialised at the shapes a probe step records, so a session's first
timestep can be batched with another session's fifth.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import torch
from spikingjelly.activation_based import base

from ..bottleneck import CoInferenceModel

State = list[dict[str, torch.Tensor]]  # per memory module: name → [1, ...] tensor


class CloudModel:
    """Decoder + tail of a co-inference model, stepped over a batch of independent sessions."""

    def __init__(self, model: CoInferenceModel, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cloud = model.cloud
        self.cloud.set_step_mode("s")
        self.code_shape = tuple(model.code_shape)
        self.memories = [m for m in self.cloud.modules() if isinstance(m, base.MemoryModule) and m._memories]
        self._initial = self._probe()

    @torch.no_grad()
    def _probe(self) -> State:
        """Run one zero step to learn each memory's shape; keep the reset value at that shape."""
        self.cloud.reset_state()
        self.cloud(torch.zeros(1, *self.code_shape, device=self.device))
        initial = []
        for m in self.memories:
            entry = {}
            for name, value in m._memories.items():
                rv = m._memories_rv[name]
                entry[name] = rv.clone() if isinstance(rv, torch.Tensor) else torch.full_like(value, float(rv))
            initial.append(entry)
        self.cloud.reset_state()
        return initial

    def new_state(self) -> State:
        return [{k: v.clone() for k, v in entry.items()} for entry in self._initial]

    @torch.no_grad()
    def step(self, codes: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        """One timestep for ``B`` sessions: codes ``[B, C', H', W']`` → (logits ``[B, K]``, new states)."""
        for i, m in enumerate(self.memories):
            for name in m._memories:
                m._memories[name] = torch.cat([s[i][name] for s in states])
        logits = self.cloud(codes.to(self.device)).float().cpu()
        new = [[{} for _ in self.memories] for _ in states]
        for i, m in enumerate(self.memories):
            for name, value in m._memories.items():
                for b, part in enumerate(value.split(1)):
                    new[b][i][name] = part
        self.cloud.reset_state()
        return logits, new


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
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="neucodex-batcher", daemon=True)
        self._thread.start()

    def sample_started(self) -> None:
        with self._lock:
            self.active += 1

    def sample_ended(self) -> None:
        with self._lock:
            self.active = max(0, self.active - 1)

    def submit(self, code: torch.Tensor, state: State) -> Future:
        """Queue one session's ``[1, C', H', W']`` code; the future gives (logits [K], state, ms, batch)."""
        fut: Future = Future()
        self._queue.put((code, state, fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _collect(self, first) -> list:
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
                logits, states = self.cloud.step(torch.cat([j[0] for j in jobs]), [j[1] for j in jobs])
            except Exception as e:  # noqa: BLE001 — handed to every waiting session, the worker goes on
                for j in jobs:
                    j[2].set_exception(e)
                continue
            ms = (time.perf_counter() - t0) * 1000.0
            for b, j in enumerate(jobs):
                j[2].set_result((logits[b], states[b], ms, len(jobs)))
