"""CV-VAE as the ``vae`` of diffusers pipelines, built from tiny random components (no hub download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from diffusers import (  # noqa: E402
    DDIMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UNetSpatioTemporalConditionModel,
)
from model_tester import TINY_CVVAE, TINY_CVVAE_SD3, tiny_model  # noqa: E402
from transformers import (  # noqa: E402
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from cvvae.models import CVVAEModel, CVVAESD3Model  # noqa: E402
from cvvae.pipelines import CVVAEVideoDiffusionPipeline, decode_video_latents  # noqa: E402

TOKENS = 16  # prompt length of the tiny tokenizer and text encoder


def tiny_cvvae() -> CVVAEModel:
    return tiny_model(CVVAEModel, TINY_CVVAE)


def tiny_cvvae_sd3() -> CVVAESD3Model:
    return tiny_model(CVVAESD3Model, TINY_CVVAE_SD3)


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE (bytes that print as themselves, the rest moved past
    255), which every byte-level vocabulary must contain."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols, shifted = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def tiny_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer over single bytes (no merges), read from vocab files written to ``folder``."""
    symbols = _byte_symbols()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols + [s + "</w>" for s in symbols]:
        vocab[symbol] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=TOKENS)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> CLIPTokenizer:
    return tiny_tokenizer(tmp_path_factory.mktemp("clip_tokenizer"))


def tiny_text_encoder(vocab_size: int, projection: bool = False) -> CLIPTextModel:
    torch.manual_seed(0)
    config = CLIPTextConfig(
        projection_dim=16,
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_attention_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def sd_pipeline(vae, tokenizer) -> StableDiffusionPipeline:
    channels = vae.config.latent_channels
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=4,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=tiny_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -------------------------------------------------------------------------------------------- config keys
def test_released_configs_get_the_keys_pipelines_read():
    with torch.device("meta"):
        sd21 = CVVAEModel.from_config(CVVAEModel.released_config())
        sd3 = CVVAESD3Model.from_config(CVVAESD3Model.released_config())
    assert list(sd21.config.block_out_channels) == [128, 256, 512, 512]
    assert sd21.config.latent_channels == 4 and sd21.config.scaling_factor == 0.18215
    assert sd21.spatial_compression_ratio == 8 and sd21.temporal_compression_ratio == 4
    assert sd3.config.latent_channels == 16 and sd3.config.force_upcast
    assert (sd3.config.scaling_factor, sd3.config.shift_factor) == (1.5305, 0.0609)


def test_saved_pipeline_keys_load_back_and_contradictions_are_refused(tmp_path):
    model = tiny_cvvae()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["block_out_channels"] == [8, 16, 16, 16] and saved["latent_channels"] == 4
    loaded = CVVAEModel.from_pretrained(tmp_path)
    assert list(loaded.config.block_out_channels) == [8, 16, 16, 16]
    small = dict(ch=8, ch_mult=(1, 2, 2, 2), num_res_blocks=1, norm_num_groups=4)
    with pytest.raises(ValueError, match="block_out_channels"):
        CVVAEModel(**small, block_out_channels=(8, 16, 32, 32))
    with pytest.raises(ValueError, match="latent_channels"):
        CVVAEModel(**small, latent_channels=16)
    with pytest.raises(ValueError, match="spatial_n_compress"):
        CVVAEModel(**small, spatial_n_compress=16)


# ----------------------------------------------------------------------------------------- image pipeline
@pytest.mark.parametrize("make_vae", [tiny_cvvae, tiny_cvvae_sd3], ids=["cvvae", "cvvae_sd3"])
def test_stable_diffusion_pipeline_with_cvvae_as_vae(make_vae, tokenizer):
    vae = make_vae()
    pipe = sd_pipeline(vae, tokenizer)
    assert pipe.vae_scale_factor == 8
    args = dict(prompt="a red fox", height=32, width=32, num_inference_steps=2)
    image = pipe(**args, generator=torch.Generator().manual_seed(0), output_type="pt").images
    latents = pipe(**args, generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()
    assert latents.shape == (1, vae.config.latent_channels, 4, 4)
    # the pipeline decodes latents / scaling_factor, in image mode (4D in, 4D out)
    with torch.no_grad():
        decoded = vae.decode(latents / vae.config.scaling_factor).sample
        unscaled = vae.decode(latents).sample
    expected = (decoded / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(image, expected)
    assert not torch.allclose(image, (unscaled / 2 + 0.5).clamp(0, 1))


def test_stable_diffusion_3_pipeline_with_cvvae_sd3_as_vae(tokenizer):
    """SD3's pipeline reads latent_channels, block_out_channels, scaling_factor and shift_factor."""
    vae = tiny_cvvae_sd3().eval()
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=4,
        patch_size=1,
        in_channels=16,
        out_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,  # two CLIP encoders of width 16, concatenated
        caption_projection_dim=16,
        pooled_projection_dim=32,  # two CLIP projections of width 16
        pos_embed_max_size=8,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=tiny_text_encoder(len(tokenizer), projection=True),
        tokenizer=tokenizer,
        text_encoder_2=tiny_text_encoder(len(tokenizer), projection=True),
        tokenizer_2=tokenizer,
        text_encoder_3=None,  # the pipeline then uses zero T5 embeddings
        tokenizer_3=None,
    )
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae_scale_factor == 8
    args = dict(prompt="a red fox", height=32, width=32, num_inference_steps=2, max_sequence_length=8)
    image = pipe(**args, generator=torch.Generator().manual_seed(0), output_type="pt").images
    latents = pipe(**args, generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert latents.shape == (1, 16, 4, 4) and image.shape == (1, 3, 32, 32)
    with torch.no_grad():
        decoded = vae.decode(latents / vae.config.scaling_factor + vae.config.shift_factor).sample
    torch.testing.assert_close(image, (decoded / 2 + 0.5).clamp(0, 1))


# ----------------------------------------------------------------------------------------- image to video
@pytest.fixture(scope="module")
def svd_pipeline() -> CVVAEVideoDiffusionPipeline:
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=4,
        in_channels=8,  # noise latents + conditioning image latents, 4 channels each
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=(2, 4),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,  # fps, motion bucket, noise strength: 3 x 8
        num_frames=3,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        timestep_type="continuous",
        use_karras_sigmas=True,
        sigma_min=0.002,
        sigma_max=700.0,
    )
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            intermediate_size=37,
            patch_size=4,
        )
    ).eval()
    pipe = CVVAEVideoDiffusionPipeline(
        vae=tiny_cvvae().eval(),
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def condition_image() -> torch.Tensor:
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def test_video_pipeline_denoises_latent_frames_and_decodes_1_plus_4k_frames(svd_pipeline):
    pipe = svd_pipeline
    args = dict(height=32, width=32, num_frames=9, num_inference_steps=2, decode_chunk_size=2)
    frames = pipe(condition_image(), **args, generator=torch.Generator().manual_seed(0), output_type="pt")
    latents = pipe(
        condition_image(), **args, generator=torch.Generator().manual_seed(0), output_type="latent"
    )
    frames, latents = frames.frames, latents.frames
    assert latents.shape == (1, 3, 4, 4, 4)  # B t c h w: 9 = 1 + 4 * 2 frames are 3 latent frames
    assert frames.shape == (1, 9, 3, 32, 32) and torch.isfinite(frames).all()
    with torch.no_grad():
        video = decode_video_latents(pipe.vae, latents)  # B C T H W
    assert video.shape == (1, 3, 9, 32, 32)
    torch.testing.assert_close(frames, (video.transpose(1, 2) / 2 + 0.5).clamp(0, 1))


def test_video_pipeline_frame_counts(svd_pipeline):
    pipe = svd_pipeline
    assert pipe.latent_frames_for(17) == 5 and pipe.video_frames_for(5) == 17
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        pipe(condition_image(), height=32, width=32, num_frames=8, num_inference_steps=1)
    # left out, the UNet's own num_frames (3 latent frames) sets the length: 9 frames
    out = pipe(condition_image(), height=32, width=32, num_inference_steps=1, output_type="np").frames
    assert out.shape == (1, 9, 32, 32, 3)


def test_decode_video_latents_matches_the_video_mode_of_the_model():
    vae = tiny_cvvae().eval()
    latents = torch.randn(2, 3, 4, 2, 2, generator=torch.Generator().manual_seed(1))  # B t c h w
    with torch.no_grad():
        frames = decode_video_latents(vae, latents)
        direct = vae.decode(latents.transpose(1, 2) / vae.config.scaling_factor).sample
    assert frames.dtype == torch.float32 and frames.shape == (2, 3, 9, 16, 16)
    torch.testing.assert_close(frames, direct)
    with pytest.raises(ValueError, match="B t c h w"):
        decode_video_latents(vae, latents[0])
