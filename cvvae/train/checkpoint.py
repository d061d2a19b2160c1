"""Atomic, resumable training checkpoints: ``<run>/checkpoints/step-00000123/``.

A checkpoint is written into a temporary folder and renamed once complete, so a run killed while writing
leaves the previous checkpoint intact. ``state.pt`` holds what all processes share (models, optimisers,
schedulers, sampler, step); ``rng-rank<r>.pt`` holds each process's random-number-generator states.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

PREFIX = "step-"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{PREFIX}*") if (p / "state.pt").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    state: dict[str, Any],
    rank_rng: dict[str, Any],
    keep: int,
    rank: int = 0,
    barrier: Any = None,
) -> Path:
    """Write checkpoint ``step`` atomically and keep the ``keep`` most recent ones.

    ``barrier`` (e.g. ``accelerator.wait_for_everyone``) synchronises processes; rank 0 writes the shared
    state.
    """
    barrier = barrier or (lambda: None)
    folder = checkpoint_dir(run_dir)
    final = folder / f"{PREFIX}{step:08d}"
    tmp = folder / f".tmp-{PREFIX}{step:08d}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(state, tmp / "state.pt")
    barrier()
    torch.save(rank_rng, tmp / f"rng-rank{rank}.pt")
    barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in list_checkpoints(run_dir)[: -max(keep, 1)]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(path: str | Path, rank: int = 0) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(shared state, this rank's RNG state or None when the checkpoint came from fewer processes)."""
    path = Path(path)
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    rng_file = path / f"rng-rank{rank}.pt"
    rank_rng = torch.load(rng_file, weights_only=False) if rng_file.is_file() else None
    return state, rank_rng
