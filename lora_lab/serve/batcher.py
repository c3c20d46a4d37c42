"""Micro-batching: concurrent requests wait at most `max_wait_ms` and run as one batch of texts.

The event loop never runs the model. Requests queue here; one task takes the first request,
gathers more until the batch holds `max_batch_size` texts or `max_wait_ms` passed (counted from
when the model came free: a request never waits for company longer than that beyond the batch
ahead of it), sorts the
rows by length (inside Engine.predict, via the tokenizer's padding per base) and hands the batch
to the engine on ONE worker thread. Management calls (load, unload, embed) go to the same thread,
so a forward and a `set_adapter` never interleave, and /healthz answers during a long batch.

With max_wait_ms=0 and max_batch_size=1 every request runs alone: the load test's "batching off".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from lora_lab.serve.engine import Engine

T = TypeVar("T")


class QueueFull(Exception):
    """More texts are waiting than the server takes: answered with 503 and Retry-After."""


@dataclass
class _Request:
    name: str
    texts: Sequence[str]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self,
        engine: Engine,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        threads: int | None = None,
        on_batch: Callable[[list[str], list[int], float], None] | None = None,
    ):
        self.engine, self.max_batch_size, self.max_wait = engine, max_batch_size, max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch  # metrics: (each request's model, its texts, the batch's seconds)
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._waiting: dict[str, int] = {}  # texts waiting, per model (the queue-depth gauge)
        self.executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="lora-lab-model",
            initializer=torch.set_num_threads if threads else None,
            initargs=(threads,) if threads else (),
        )
        self._task: asyncio.Task | None = None
        self._last_batch_requests = 0
        self._free_at = 0.0  # when the last batch ended

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn on the model thread (loads, unloads, embeddings): serialized with the batches."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def predict(self, name: str, texts: Sequence[str]) -> torch.Tensor:
        """Probabilities (len(texts), n_labels) for model `name`; waits for its batch."""
        if (waiting := sum(self._waiting.values())) + len(texts) > self.max_queue:
            raise QueueFull(f"{waiting} texts are waiting (max_queue={self.max_queue})")
        request = _Request(name, texts, asyncio.get_running_loop().create_future())
        self._count(request, +1)
        await self.queue.put(request)
        return await request.future

    def waiting_by_adapter(self) -> dict[str, int]:
        return dict(self._waiting)

    def _count(self, request: _Request, sign: int) -> None:
        self._waiting[request.name] = self._waiting.get(request.name, 0) + sign * len(request.texts)

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0].texts)
            # Waiting pays only under load: a lone client's batch stays one request, and the wait would
            # be pure latency. So wait for company only when the last batch had some, or some is queued.
            wait = self.max_wait if self._last_batch_requests > 1 or not self.queue.empty() else 0.0
            # The wait runs from when the model came free, not from the request's arrival: a request
            # queued behind a running batch has waited already, and its company (that batch's clients)
            # comes back only once the batch ends. Anchored on arrival, closed-loop clients split
            # into cohorts that never merge (32 clients: batches of 8 and 24 in turn), each batch
            # paying the fixed cost of a forward (docs/benchmarks.md, serving).
            deadline = max(batch[0].queued_at, self._free_at) + wait
            while size < self.max_batch_size and (left := deadline - time.perf_counter()) > 0:
                try:
                    request = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
                batch.append(request)
                size += len(request.texts)
            while size < self.max_batch_size and not self.queue.empty():  # what arrived meanwhile
                batch.append(self.queue.get_nowait())
                size += len(batch[-1].texts)
            for request in batch:
                self._count(request, -1)
            self._last_batch_requests = len(batch)
            await self._execute(batch)
            self._free_at = time.perf_counter()

    async def _execute(self, batch: list[_Request]) -> None:
        start = time.perf_counter()
        try:
            results = await self.call(self.engine.predict, [(r.name, r.texts) for r in batch])
        except Exception as err:  # a failed batch fails its requests, not the server
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(err)
            return
        for request, probs in zip(batch, results):
            if request.future.done():  # the client went away
                continue
            if probs is None:
                request.future.set_exception(KeyError(request.name))  # unloaded while it waited
            else:
                request.future.set_result(probs)
        if self.on_batch is not None:
            self.on_batch([r.name for r in batch], [len(r.texts) for r in batch], time.perf_counter() - start)
