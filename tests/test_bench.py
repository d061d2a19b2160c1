"""cvvae.bench: shapes parsing, timing rows, oom rows, the CSV and the CLI on tiny CPU models."""

from __future__ import annotations

import argparse
import csv

import pytest
import torch
from diffusers import AutoencoderKL

from cvvae import bench
from cvvae.models.image_vae import image_vae_kwargs
from cvvae.models.zoo import ImageVAEAutoencoder

# Block types spelled out: as a random-weights config they replace the four of the released SD2.1 VAE.
TINY_IMAGE_VAE = image_vae_kwargs(
    dict(block_out_channels=(32, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8)
)
TINY_CVVAE = dict(ch=8, ch_mult=(1, 2, 2, 2), num_res_blocks=1, norm_num_groups=4, tile_spatial_size=None)


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_parse_shapes():
    shapes = bench.parse_shapes("17x256x256, 97x576x1024@bf16+fp16")
    assert [str(s) for s in shapes] == ["17x256x256", "97x576x1024"]
    assert shapes[0].dtypes is None and shapes[1].dtypes == ("bf16", "fp16")
    with pytest.raises(ValueError, match="FRAMESxHEIGHTxWIDTH"):
        bench.parse_shapes("17x256")


def test_bench_rows_for_tiny_random_models():
    models = [
        {"kind": "image_vae", "config": TINY_IMAGE_VAE},
        {"kind": "uniform_sampling", "config": TINY_IMAGE_VAE},
        {"kind": "cvvae", "config": TINY_CVVAE},
    ]
    shapes = bench.parse_shapes("5x16x16,4x16x16,9x16x16@bf16")
    rows = bench.bench(models, shapes, ["fp32", "bf16"], random_weights=True, repeats=2, log=lambda _: None)
    # per model: fp32 runs two shapes, bf16 all three
    assert len(rows) == 3 * 5
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["model"] for r in ok} == {"image_vae", "uniform_sampling_linear", "cvvae_untiled"}
    for row in ok:
        assert row["weights"] == "random" and row["encode_s"] > 0 and row["decode_s"] > 0
        assert row["frames_per_s"] == pytest.approx(row["frames"] / row["total_s"], rel=1e-2)
        assert row["encode_peak_gib"] == "n/a" and row["output_finite"] is True
    cv = {(r["dtype"], r["frames"]): r for r in rows if r["model"] == "cvvae_untiled"}
    assert cv[("fp32", 5)]["latent_shape"] == "1x4x2x2x2"
    assert cv[("fp32", 4)]["status"].startswith("invalid_frames")
    image = {(r["dtype"], r["frames"]): r for r in rows if r["model"] == "image_vae"}
    assert image[("bf16", 9)]["latent_shape"] == "1x4x9x8x8" and image[("fp32", 4)]["status"] == "ok"


class OutOfMemoryAutoencoder(ImageVAEAutoencoder):
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")


class BrokenAutoencoder(ImageVAEAutoencoder):
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shape mismatch")


def test_oom_is_a_row_and_other_errors_raise():
    vae = AutoencoderKL(**TINY_IMAGE_VAE)
    shape = bench.Shape(5, 16, 16)
    row = bench.bench_case(OutOfMemoryAutoencoder(vae), shape, torch.device("cpu"))
    assert row["status"] == "oom" and "encode_s" not in row
    with pytest.raises(RuntimeError, match="shape mismatch"):
        bench.bench_case(BrokenAutoencoder(vae), shape, torch.device("cpu"))


def test_cli_writes_csv_named_after_environment(tmp_path, capsys):
    torch.manual_seed(0)
    AutoencoderKL(**TINY_IMAGE_VAE).save_pretrained(tmp_path / "sd" / "vae")
    spec = f"image_vae:{tmp_path / 'sd'}?subfolder=vae&frame_batch_size=2"
    args = cli_args("--models", spec, "--shapes", "3x16x16", "--dtypes", "fp32", "--out", str(tmp_path / "o"))
    assert bench.run(args) == 0
    files = list((tmp_path / "o").glob("bench_cpu*_torch*_cudanone.csv"))
    assert len(files) == 1
    with files[0].open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == bench.COLUMNS
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["weights"] == str(tmp_path / "sd")
    assert float(rows[0]["frames_per_s"]) > 0 and rows[0]["encode_peak_gib"] == "n/a"
    assert "image_vae" in capsys.readouterr().out


def test_cli_missing_weights_says_where_to_get_them(tmp_path, capsys):
    args = cli_args("--models", f"svd_vae:{tmp_path}/none?subfolder=vae", "--out", str(tmp_path))
    assert bench.run(args) == 2
    out = capsys.readouterr().out
    assert "stabilityai/stable-video-diffusion-img2vid-xt" in out
    assert not list(tmp_path.glob("*.csv"))


@pytest.mark.gpu
def test_gpu_rows_have_peak_memory_and_cuda_timing():
    models = [{"kind": "image_vae", "config": TINY_IMAGE_VAE}, {"kind": "cvvae", "config": TINY_CVVAE}]
    shapes = bench.parse_shapes("9x64x64")
    rows = bench.bench(
        models, shapes, ["fp32", "bf16"], device="cuda", random_weights=True, log=lambda _: None
    )
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    for row in rows:
        assert isinstance(row["encode_peak_gib"], float) and row["encode_peak_gib"] > 0
        assert row["decode_peak_gib"] > 0 and row["cuda"] != "none"
