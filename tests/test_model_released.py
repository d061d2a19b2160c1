"""Checks against the released CV-VAE weights (GPU; set CVVAE_RELEASED_DIR to the downloaded repository).

Download https://huggingface.co/AILab-CVC/CV-VAE (folders ``vae3d`` and ``vae3d_v1-1``) and run
``CVVAE_RELEASED_DIR=/path/to/CV-VAE pytest tests/test_model_released.py -m gpu -q -s``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cvvae.models import CVVAEModel

RELEASED = os.environ.get("CVVAE_RELEASED_DIR")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not RELEASED, reason="set CVVAE_RELEASED_DIR to the downloaded AILab-CVC/CV-VAE folder"
    ),
]


def smooth_video(t: int, h: int, w: int) -> torch.Tensor:
    tt, yy, xx = torch.meshgrid(
        torch.linspace(0, 1, t), torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij"
    )
    frames = [
        torch.sin(3 * xx + 2 * tt) * torch.cos(2 * yy),
        torch.cos(2 * xx * yy + tt),
        0.5 * torch.sin(4 * yy),
    ]
    return torch.stack(frames)[None].cuda()


@pytest.mark.parametrize("subfolder", ["vae3d", "vae3d_v1-1"])
def test_released_weights_load_and_tiles_stay_close(subfolder):
    folder = Path(RELEASED)
    if not (folder / subfolder).is_dir():
        pytest.skip(f"{folder / subfolder} not downloaded")
    model, info = CVVAEModel.from_pretrained(folder, subfolder=subfolder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    model = model.cuda().eval()
    x = smooth_video(17, 640, 640)  # larger than one 576-px tile
    with torch.no_grad():
        tiled = model(x).sample
        model.disable_tiling()
        untiled = model(x).sample
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(x).sample.float()
    psnr = lambda a, b: (10 * torch.log10(4 / (a - b).pow(2).mean())).item()  # noqa: E731
    print(
        f"{subfolder}: recon PSNR {psnr(untiled, x):.2f} dB, tiled vs untiled {psnr(tiled, untiled):.2f} dB, "
        f"bf16 vs fp32 {psnr(bf16, untiled):.2f} dB"
    )
    assert (tiled - untiled).abs().max() < 0.5
    assert psnr(bf16, untiled) > 35
