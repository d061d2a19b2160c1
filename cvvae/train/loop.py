"""What the training loops (CV-VAE, image VAE, LDM) share: stopping early with a checkpoint, and the
timing of the logged steps."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

# Signals that stop a run after the current step, with a checkpoint.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """Ends a loop after the current step on SIGTERM or SIGINT (handled while the ``with`` block runs), or
    once ``stop_after`` steps of this call are done (training in time-limited holds of a machine)."""

    def __init__(self, start_step: int, stop_after: int | None = None) -> None:
        self.start_step, self.stop_after = start_step, stop_after
        self.signalled = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signalled = True

    def end_of_step(self, step: int, total_steps: int, ckpt_every: int, save: Callable[[], Any]) -> bool:
        """After ``step`` steps: ``save()`` when a checkpoint is due or the loop stops; True when the loop
        stops before ``total_steps`` (interrupted: the same command continues from the checkpoint)."""
        stop = self.signalled or (self.stop_after is not None and step - self.start_step >= self.stop_after)
        if step % ckpt_every == 0 or stop:
            save()
        return stop and step < total_steps


class StepTimer:
    """Mean wall time per step over the steps since the previous logged step, and the rate of a call."""

    def __init__(self, step: int) -> None:
        self.start_step, self.started = step, time.perf_counter()
        self._window = (step, self.started)  # (first step, start time) of the current log window

    def seconds_per_step(self, step: int) -> float:
        """For the row of ``step``: the mean over the steps since the previous row (this one included)."""
        first_step, since = self._window
        now = time.perf_counter()
        self._window = (step + 1, now)
        return (now - since) / max(1, step + 1 - first_step)

    def steps_per_s(self, step: int) -> float:
        """Steps per second from the start to ``step`` steps."""
        elapsed = time.perf_counter() - self.started
        return (step - self.start_step) / elapsed if elapsed > 0 else float("nan")
