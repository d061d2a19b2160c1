"""FVD/KVD/FID plumbing with tiny stand-in TorchScript networks (not the real I3D or Inception)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from cvvae.metrics.generation import FeatureNetworkMissing, fid, fvd_kvd, load_feature_network


class TinyStandInI3D(nn.Module):
    """Same call signature as StyleGAN-V's I3D TorchScript; features are per-channel moments of the video."""

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        flat = x.flatten(2)
        return torch.cat([flat.mean(-1), flat.std(-1), flat.abs().amax(-1)], dim=1)


class TinyStandInInception(nn.Module):
    """Same call signature as StyleGAN2-ADA's Inception TorchScript."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        flat = (x / 255.0).flatten(2)
        return torch.cat([flat.mean(-1), flat.std(-1)], dim=1)


def _save(module: nn.Module, path: Path) -> Path:
    # The reference feature networks are TorchScript files, so the stand-ins are too.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(module).save(str(path))
    return path


def _videos(seed: int, shift: float = 0.0, n: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(4, 3, 4, 8, 8, generator=g) * 1.2 - 0.6 + shift).clamp(-1, 1) for _ in range(n)]


def test_fvd_plumbing_with_tiny_standin_network(tmp_path: Path) -> None:
    path = _save(TinyStandInI3D(), tmp_path / "i3d_standin.pt")
    same = fvd_kvd(_videos(0), _videos(0), path)
    assert same["fvd"].value == pytest.approx(0.0, abs=1e-6)
    near = fvd_kvd(_videos(0), _videos(1), path)
    far = fvd_kvd(_videos(0), _videos(1, shift=0.4), path)
    assert 0 < near["fvd"].value < far["fvd"].value
    assert far["kvd"].value > near["kvd"].value
    assert far["fvd"].cell().replace(".", "").isdigit()


def test_fid_plumbing_with_tiny_standin_network(tmp_path: Path) -> None:
    path = _save(TinyStandInInception(), tmp_path / "inception_standin.pt")
    real = [v[:, :, 0] for v in _videos(0)]
    assert fid(real, real, path).value == pytest.approx(0.0, abs=1e-6)
    shifted = [v[:, :, 0] for v in _videos(2, shift=0.3)]
    assert fid(real, shifted, path).value > 0.01


def test_missing_feature_networks_give_na_with_the_reason(tmp_path: Path) -> None:
    result = fvd_kvd(_videos(0), _videos(1), None)
    assert result["fvd"].value is None and result["fvd"].cell().startswith(
        "n/a (no feature network configured"
    )
    missing = fid([torch.zeros(2, 3, 8, 8)], [torch.zeros(2, 3, 8, 8)], tmp_path / "nope.pt")
    assert (
        missing.value is None and "i3d" not in missing.cell() and "inception-2015-12-05.pt" in missing.cell()
    )
    with pytest.raises(FeatureNetworkMissing, match="not found"):
        load_feature_network(tmp_path / "nope.pt", "a hint")
