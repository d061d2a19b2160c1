"""Batches prepared ahead of the training step: a background thread drives the sampler, a thread pool loads
the items of each batch, and batches wait in pinned host memory for a non-blocking copy to the GPU.

The sampler decides every batch from ``(seed, step)``, so prefetching changes when a batch is made, not
which: ``state_dict()`` is the sampler's state right after the last batch the trainer *took*, so a checkpoint
resumes exactly where training was, however far the thread had run ahead.
"""

from __future__ import annotations

import copy
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

_DONE = object()


class PrefetchLoader:
    """Iterator over ``sampler``'s batches, made ``depth`` ahead by a thread (``workers`` item loaders)."""

    def __init__(self, sampler: Any, workers: int, depth: int = 2, pin_memory: bool = False) -> None:
        self.sampler, self.workers, self.depth, self.pin_memory = sampler, workers, max(1, depth), pin_memory
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="cvvae-load") if workers > 1 else None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = copy.deepcopy(sampler.state_dict())

    def __getattr__(self, name: str) -> Any:  # sources, describe(), ... of the wrapped sampler
        if name == "sampler":
            raise AttributeError(name)
        return getattr(self.sampler, name)

    def __iter__(self) -> PrefetchLoader:
        return self

    # -- producer ------------------------------------------------------------------------------------------
    def _produce(self, out: queue.Queue, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                batch = next(self.sampler)
                if self.pin_memory:
                    batch["video"] = batch["video"].pin_memory()
                item = (batch, copy.deepcopy(self.sampler.state_dict()))
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as err:  # handed to the training loop, which raises it
            out.put((_DONE, err))

    def _start(self) -> None:
        if self._executor is not None and hasattr(self.sampler, "executor"):
            self.sampler.executor = self._executor
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=self.depth)
        self._thread = threading.Thread(
            target=self._produce, args=(self._queue, self._stop), name="cvvae-prefetch", daemon=True
        )
        self._thread.start()

    def __next__(self) -> dict[str, Any]:
        if self._thread is None:
            self._start()
        batch, state = self._queue.get()
        if batch is _DONE:
            self.close()
            raise state
        self._state = state
        return batch

    # -- state ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the thread; the sampler is then left wherever the thread had taken it (see state_dict)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread, self._queue = None, None
        # Put the sampler back where training is, so that direct use after close continues correctly.
        self.sampler.load_state_dict(copy.deepcopy(self._state))

    def shutdown(self) -> None:
        self.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.close()
        self.sampler.load_state_dict(state)
        self._state = copy.deepcopy(self.sampler.state_dict())


def to_device(video: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Copy a batch to ``device`` without waiting (pinned source), optionally channels-last(-3d)."""
    video = video.to(device, non_blocking=video.is_pinned())
    if channels_last and video.dim() == 5:
        video = video.contiguous(memory_format=torch.channels_last_3d)
    return video
