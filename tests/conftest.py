"""Shared pytest setup: CPU-friendly threading, GPU/slow markers, tiny model configs."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

# Two cores in CI: oversubscription makes tiny convolutions much slower.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def image_vae_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny saved diffusers AutoencoderKL: the frozen image VAE of the training tests."""
    from cvvae.models.image_vae import build_image_vae

    torch.manual_seed(0)
    widths = {"block_out_channels": [8, 8, 16, 16], "norm_num_groups": 4}
    vae = build_image_vae({**widths, "layers_per_block": 1, "latent_channels": 4})
    folder = tmp_path_factory.mktemp("image_vae") / "final"
    vae.save_pretrained(folder)
    return str(folder)


class _WriteRecorder:
    """A write-through stdout (as under PYTHONUNBUFFERED) that keeps each write call apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        if text:  # an empty write sends nothing (print(..., end="") makes one)
            self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.fixture
def record_stdout_writes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Call it in the test body (pytest's own capture replaces ``sys.stdout`` after setup): from then on,
    each ``sys.stdout.write`` call, in order. Processes that share one pipe (the ranks of a distributed run)
    must write each line in one call, or their lines can run into each other."""

    def start() -> list[str]:
        recorder = _WriteRecorder()
        monkeypatch.setattr("sys.stdout", recorder)
        return recorder.writes

    return start
