"""Set-level generation metrics for the paper-scale profile: FVD and KVD (I3D features), FID (Inception).

No package ships the feature networks, so they come by path: the StyleGAN-V I3D TorchScript
(``i3d_torchscript.pt``, Kinetics-400, the network behind StyleGAN-V's FVD) and the StyleGAN2-ADA Inception
TorchScript (``inception-2015-12-05.pt``). Inputs follow those codebases: videos and images in [-1, 1] are
rounded to uint8 levels and handed over as float in [0, 255] (videos ``B C T H W``), and the networks do their
own rescaling and resizing (I3D: ``rescale=True, resize=True, return_features=True`` -> 400-d pre-softmax
features; Inception: ``return_features=True`` -> 2048-d pool features). FVD and FID are Fréchet distances of
Gaussians fitted to the two feature sets; KVD is the unbiased polynomial-kernel MMD (the KID estimator) on I3D
features. Without a configured file every value is ``n/a`` with the reason, never a substitute network.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cvvae.metrics.stats import frechet_distance_from_features, polynomial_mmd
from cvvae.metrics.weights import format_na

FVD_IMPL = (
    "FVD: StyleGAN-V I3D TorchScript (Kinetics-400, 400-d pre-softmax), uint8-level input, "
    "rescale=True resize=True, Fréchet distance over the whole set"
)
KVD_IMPL = "KVD: unbiased MMD^2, kernel (x.y/d + 1)^3, 100 subsets of <= 1000, on the FVD's I3D features"
FID_IMPL = "FID: StyleGAN2-ADA Inception TorchScript (2048-d pool features), uint8-level input"
I3D_HINT = (
    "the StyleGAN-V I3D TorchScript i3d_torchscript.pt (published with StyleGAN-V); put it anywhere and set "
    "its path as i3d_path"
)
INCEPTION_HINT = (
    "the StyleGAN2-ADA Inception TorchScript inception-2015-12-05.pt (published with StyleGAN2-ADA); set its "
    "path as inception_path"
)


class FeatureNetworkMissing(FileNotFoundError):
    """A feature network for a set-level metric was not configured or not found."""


@dataclass
class SetMetric:
    """A set-level value, or None with the reason it could not be computed."""

    name: str
    value: float | None
    implementation: str
    reason: str | None = None

    def cell(self, digits: int = 2) -> str:
        return (
            f"{self.value:.{digits}f}" if self.value is not None else format_na(self.reason or "not computed")
        )


def load_feature_network(path: str | Path | None, hint: str, device: torch.device | str = "cpu"):
    """``torch.jit.load`` a configured TorchScript file; ``FeatureNetworkMissing`` says what to get."""
    if path is None:
        raise FeatureNetworkMissing(f"no feature network configured: needs {hint}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FeatureNetworkMissing(f"{path} not found: needs {hint}")
    with warnings.catch_warnings():  # the reference networks are TorchScript files; torch now prefers export
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device).eval()


def to_uint8_levels(x: Tensor) -> Tensor:
    """[-1, 1] float -> float in [0, 255] on integer levels (what a saved uint8 frame holds)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round()


def _features(network, batches: Iterable[Tensor], device: torch.device, **kwargs: bool) -> np.ndarray:
    out = []
    with torch.no_grad():
        for batch in batches:
            feats = network(to_uint8_levels(batch).to(device), **kwargs)
            if isinstance(feats, (tuple, list)):
                feats = feats[0]
            out.append(feats.flatten(1).double().cpu().numpy())
    if not out:
        raise ValueError("no samples: the feature set is empty")
    return np.concatenate(out)


def i3d_features(videos: Iterable[Tensor], network, device: torch.device | str = "cpu") -> np.ndarray:
    """I3D features of batches of videos ``B C T H W`` in [-1, 1] (StyleGAN-V's call), ``N 400``."""

    def checked(batches: Iterable[Tensor]) -> Iterable[Tensor]:
        for batch in batches:
            if batch.ndim != 5 or batch.shape[1] != 3:
                raise ValueError(f"I3D takes RGB videos B 3 T H W, got {tuple(batch.shape)}")
            yield batch

    return _features(
        network, checked(videos), torch.device(device), rescale=True, resize=True, return_features=True
    )


def inception_features(images: Iterable[Tensor], network, device: torch.device | str = "cpu") -> np.ndarray:
    """Inception features of batches of images ``B C H W`` in [-1, 1] (StyleGAN2-ADA's call), ``N 2048``."""
    return _features(network, images, torch.device(device), return_features=True)


def fvd_kvd(
    real_videos: Iterable[Tensor],
    fake_videos: Iterable[Tensor],
    i3d_path: str | Path | None,
    device: torch.device | str = "cpu",
) -> dict[str, SetMetric]:
    """FVD and KVD between two sets of videos (iterables of ``B C T H W`` batches in [-1, 1])."""
    try:
        network = load_feature_network(i3d_path, I3D_HINT, device)
    except FeatureNetworkMissing as err:
        return {
            "fvd": SetMetric("fvd", None, FVD_IMPL, str(err)),
            "kvd": SetMetric("kvd", None, KVD_IMPL, str(err)),
        }
    real = i3d_features(real_videos, network, device)
    fake = i3d_features(fake_videos, network, device)
    return {
        "fvd": SetMetric("fvd", frechet_distance_from_features(real, fake), FVD_IMPL),
        "kvd": SetMetric("kvd", polynomial_mmd(real, fake), KVD_IMPL),
    }


def fid(
    real_images: Iterable[Tensor],
    fake_images: Iterable[Tensor],
    inception_path: str | Path | None,
    device: torch.device | str = "cpu",
) -> SetMetric:
    """FID between two sets of images (iterables of ``B C H W`` batches in [-1, 1])."""
    try:
        network = load_feature_network(inception_path, INCEPTION_HINT, device)
    except FeatureNetworkMissing as err:
        return SetMetric("fid", None, FID_IMPL, str(err))
    real = inception_features(real_images, network, device)
    fake = inception_features(fake_images, network, device)
    return SetMetric("fid", frechet_distance_from_features(real, fake), FID_IMPL)
