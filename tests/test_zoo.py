"""cvvae.models.zoo: adapters round-trip shapes, spec parsing, missing-weight errors, uniform sampling."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from cvvae.dtypes import resolve_dtype
from cvvae.models import CVVAEModel
from cvvae.models.image_vae import build_image_vae
from cvvae.models.svd_init import svd_vae_from_image_vae
from cvvae.models.zoo import (
    CVVAEAutoencoder,
    CVVAEImageAutoencoder,
    ImageVAEAutoencoder,
    SVDAutoencoder,
    UniformSamplingAutoencoder,
    VideoAutoencoder,
    load_autoencoder,
    parse_spec,
)

TINY_IMAGE_VAE = dict(block_out_channels=(32,) * 4, layers_per_block=1, latent_channels=4, norm_num_groups=8)
TINY_CVVAE = dict(ch=8, ch_mult=(1, 2, 2, 2), num_res_blocks=1, norm_num_groups=4, tile_spatial_size=None)


def tiny_image_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return build_image_vae(TINY_IMAGE_VAE).eval()


def tiny_cvvae(seed: int = 0) -> CVVAEModel:
    torch.manual_seed(seed)
    return CVVAEModel(**TINY_CVVAE).eval()


def video(t: int = 9, h: int = 16, w: int = 24, b: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def zoo() -> dict[str, VideoAutoencoder]:
    image_vae = tiny_image_vae()
    cvvae = tiny_cvvae()
    return {
        "cvvae": CVVAEAutoencoder(cvvae),
        "cvvae_image": CVVAEImageAutoencoder(cvvae, frame_batch_size=4),
        "image_vae": ImageVAEAutoencoder(image_vae, frame_batch_size=5),
        "svd_vae": SVDAutoencoder(svd_vae_from_image_vae(image_vae), decode_chunk_size=4),
        "uniform_sampling": UniformSamplingAutoencoder(ImageVAEAutoencoder(image_vae)),
    }


@pytest.mark.parametrize(
    "kind, latent_t",
    [("cvvae", 3), ("cvvae_image", 9), ("image_vae", 9), ("svd_vae", 9), ("uniform_sampling", 3)],
)
def test_round_trip_shapes(zoo, kind, latent_t):
    ae = zoo[kind]
    x = video()
    z = ae.encode(x)
    assert z.shape == (2, ae.latent_channels, latent_t, 16 // 8, 24 // 8)
    assert ae.latent_channels == 4 and ae.spatial_compression == 8
    assert ae.latent_frames(9) == latent_t
    y = ae.decode(z, 9)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert torch.equal(ae.reconstruct(x), y)
    with pytest.raises(ValueError, match="decode to"):
        ae.decode(z, 8)


def test_compression_and_valid_frames(zoo):
    assert zoo["cvvae"].temporal_compression == 4 and zoo["uniform_sampling"].temporal_compression == 4
    assert zoo["image_vae"].temporal_compression == 1 and zoo["cvvae_image"].temporal_compression == 1
    assert zoo["cvvae"].valid_num_frames(16) == 13
    assert zoo["cvvae"].valid_num_frames(17) == 17
    assert zoo["image_vae"].valid_num_frames(16) == 16
    with pytest.raises(ValueError, match="nearest valid counts are 9 or 13"):
        zoo["cvvae"].encode(video(t=10))
    with pytest.raises(ValueError, match="multiples of 8"):
        zoo["image_vae"].encode(video(h=12))


def test_image_vae_adapter_equals_per_frame_decoding(zoo):
    ae = zoo["image_vae"]
    x = video(t=3, b=1)
    with torch.no_grad():
        frame = ae.module.encode(x[:, :, 1]).latent_dist.mode()
        ref = ae.module.decode(frame).sample
    z = ae.encode(x)
    torch.testing.assert_close(z[:, :, 1], frame)
    torch.testing.assert_close(ae.decode(z, 3)[:, :, 1], ref)


def test_cvvae_image_mode_is_per_frame(zoo):
    """Image mode: frame t of the output depends only on frame t of the input."""
    ae = zoo["cvvae_image"]
    x = video(t=5, b=1)
    y = ae.reconstruct(x)
    x2 = x.clone()
    x2[:, :, 3] = -x2[:, :, 3]
    y2 = ae.reconstruct(x2)
    torch.testing.assert_close(y[:, :, :3], y2[:, :, :3])
    assert not torch.allclose(y[:, :, 3], y2[:, :, 3])


def test_svd_chunk_one_equals_image_decoder_at_init(zoo):
    """Right after conversion every chunking decodes like the image VAE."""
    image, svd = zoo["image_vae"], zoo["svd_vae"]
    single = SVDAutoencoder(svd.module, decode_chunk_size=1)
    assert single.name == "svd_vae_chunk1"
    x = video(t=5, b=1)
    z = image.encode(x)
    torch.testing.assert_close(svd.encode(x), z)
    torch.testing.assert_close(single.decode(z, 5), image.decode(z, 5))
    torch.testing.assert_close(svd.decode(z, 5), image.decode(z, 5))


def test_uniform_sampling_keyframes_exact_and_interpolated(zoo):
    ae, image = zoo["uniform_sampling"], zoo["image_vae"]
    assert ae.name == "uniform_sampling_linear"
    x = video(t=9, b=1)
    y = ae.reconstruct(x)
    keys = image.reconstruct(x[:, :, ::4].contiguous())
    torch.testing.assert_close(y[:, :, ::4], keys)
    # frame 1 = 3/4 of keyframe 0 + 1/4 of keyframe 1; frame 6 halfway between keyframes 1 and 2
    torch.testing.assert_close(y[:, :, 1], 0.75 * keys[:, :, 0] + 0.25 * keys[:, :, 1])
    torch.testing.assert_close(y[:, :, 6], 0.5 * keys[:, :, 1] + 0.5 * keys[:, :, 2])
    nearest = UniformSamplingAutoencoder(image, interpolation="nearest")
    yn = nearest.reconstruct(x)
    torch.testing.assert_close(yn[:, :, 3], keys[:, :, 1])
    torch.testing.assert_close(yn[:, :, 1], keys[:, :, 0])


def test_parse_string_spec():
    spec = parse_spec("svd_vae:/w/svd?subfolder=vae&decode_chunk_size=1&frame_batch_size=8")
    assert spec == {
        "kind": "svd_vae",
        "path": "/w/svd",
        "subfolder": "vae",
        "decode_chunk_size": 1,
        "frame_batch_size": 8,
    }
    assert parse_spec("cvvae?random_weights=true&tiling=false") == {
        "kind": "cvvae",
        "random_weights": True,
        "tiling": False,
    }
    assert parse_spec({"kind": "image_vae", "path": "p"})["path"] == "p"
    with pytest.raises(ValueError, match="unknown autoencoder kind"):
        parse_spec("vqgan:/x")
    with pytest.raises(ValueError, match="decode_chunk_size"):
        parse_spec("image_vae:/x?decode_chunk_size=2")
    with pytest.raises(ValueError, match="key=value"):
        parse_spec("image_vae:/x?frame_batch_size")


@pytest.mark.parametrize(
    "kind, repo, subfolder",
    [
        ("cvvae", "AILab-CVC/CV-VAE", "vae3d"),
        ("cvvae_image", "AILab-CVC/CV-VAE", "vae3d_sd3"),
        ("image_vae", "stabilityai/stable-diffusion-2-1-base", "vae"),
        ("uniform_sampling", "stabilityai/stable-diffusion-2-1-base", "vae"),
        ("svd_vae", "stabilityai/stable-video-diffusion-img2vid-xt", "vae"),
    ],
)
def test_missing_path_names_download(tmp_path, kind, repo, subfolder):
    with pytest.raises(FileNotFoundError) as info:
        load_autoencoder(f"{kind}:{tmp_path / 'nowhere'}?subfolder={subfolder}")
    message = str(info.value)
    assert repo in message and subfolder in message and "nowhere" in message
    assert f"--include '{subfolder}/*'" in message


def test_load_saved_models_by_path(tmp_path):
    image_vae = tiny_image_vae()
    image_vae.save_pretrained(tmp_path / "sd" / "vae")
    svd_vae_from_image_vae(image_vae).save_pretrained(tmp_path / "svd" / "vae")
    tiny_cvvae().save_pretrained(tmp_path / "cv" / "vae3d")
    x = video(t=5, b=1)
    image = load_autoencoder(f"image_vae:{tmp_path / 'sd'}?subfolder=vae")
    svd = load_autoencoder({"kind": "svd_vae", "path": str(tmp_path / "svd"), "subfolder": "vae"})
    uniform = load_autoencoder(f"uniform_sampling:{tmp_path / 'sd'}?subfolder=vae&interpolation=nearest")
    cv = load_autoencoder(f"cvvae:{tmp_path / 'cv'}?subfolder=vae3d&chunking=none", dtype="bf16")
    assert uniform.name == "uniform_sampling_nearest"
    assert cv.dtype == torch.bfloat16 and cv.encode(x).dtype == torch.bfloat16
    assert cv.name == "cvvae_untiled"
    torch.testing.assert_close(svd.reconstruct(x), image.reconstruct(x))
    torch.testing.assert_close(image.reconstruct(x), ImageVAEAutoencoder(image_vae).reconstruct(x))
    assert cv.reconstruct(x).shape == x.shape


def test_random_weights_with_config_overrides():
    ae = load_autoencoder({"kind": "cvvae_image", "random_weights": True, "config": TINY_CVVAE})
    assert ae.module.config.ch == 8 and ae.temporal_compression == 1
    same = load_autoencoder({"kind": "cvvae_image", "random_weights": True, "config": TINY_CVVAE})
    torch.testing.assert_close(ae.encode(video(t=1, b=1)), same.encode(video(t=1, b=1)))


def test_resolve_dtype():
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("FP16") is torch.float16
    assert resolve_dtype(torch.float32) is torch.float32
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        resolve_dtype("int8")


def test_sd3_variant_has_16_latent_channels(tmp_path):
    tiny_sd3 = dict(
        block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4, tile_spatial_size=None
    )
    spec = {"kind": "cvvae", "variant": "vae3d_sd3", "random_weights": True, "config": tiny_sd3}
    ae = load_autoencoder(spec)
    assert ae.latent_channels == 16 and ae.temporal_compression == 4
    x = video(t=5, b=1)
    z = ae.encode(x)
    assert z.shape == (1, 16, 2, 2, 3)
    assert ae.decode(z, 5).shape == x.shape
    ae.module.save_pretrained(tmp_path / "vae3d_sd3")
    image_mode = load_autoencoder(f"cvvae_image:{tmp_path}?subfolder=vae3d_sd3")
    assert type(image_mode.module).__name__ == "CVVAESD3Model"
    assert image_mode.encode(x).shape == (1, 16, 5, 2, 3)


def test_a_folder_of_another_model_class_is_named_and_refused(tmp_path):
    from cvvae.models.loading import CheckpointError

    svd_vae_from_image_vae(tiny_image_vae()).save_pretrained(tmp_path / "svd")
    tiny_cvvae().save_pretrained(tmp_path / "cv")
    with pytest.raises(CheckpointError, match="holds a TemporalDecoderVAE, not an image VAE"):
        load_autoencoder(f"image_vae:{tmp_path / 'svd'}")
    with pytest.raises(CheckpointError, match="holds a CVVAEModel, not an SVD-style VAE"):
        load_autoencoder(f"svd_vae:{tmp_path / 'cv'}")


def test_a_cvvae_folder_with_deleted_tensors_lists_them_instead_of_loading_meta_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    from cvvae.models.loading import CheckpointError

    tiny_cvvae().save_pretrained(tmp_path / "cv")
    weights = tmp_path / "cv" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    dropped = sorted(tensors)[:5]
    save_file(
        {k: v for k, v in tensors.items() if k not in dropped} | {"extra.weight": torch.zeros(1)}, weights
    )
    with pytest.raises(CheckpointError, match=r"does not match CVVAEModel: missing tensor\(s\): ") as err:
        load_autoencoder(f"cvvae:{tmp_path / 'cv'}")
    assert all(name in str(err.value) for name in dropped)
    assert "unexpected tensor(s): extra.weight" in str(err.value)


def test_the_missing_weights_hint_names_the_download_command_and_the_documented_folder():
    from cvvae.models.zoo import missing_weights_message

    text = missing_weights_message("cvvae", None, "vae3d")
    assert "hf download AILab-CVC/CV-VAE --include 'vae3d/*' --local-dir data/weights/CV-VAE" in text
    assert "huggingface-cli" not in text


def test_a_missing_run_folder_asks_for_training_not_a_download(tmp_path):
    from cvvae.models.zoo import missing_weights_message

    text = missing_weights_message("cvvae", str(tmp_path / "runs" / "dec_seed2" / "final"), None)
    assert "training run 'dec_seed2'" in text and "cvvae train --variant dec_seed2" in text
    assert "hf download" not in text
