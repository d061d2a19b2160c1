"""Resumable training of the small latent diffusion model on the frozen image VAE's latents.

Run folder (the conventions of ``cvvae.train``): ``run_identity.json`` (a changed config is refused or
restarts, never resumed), ``config.yaml``, ``metrics.csv`` (step, source, lr, loss, sec_per_step),
``checkpoints/step-N/`` (atomic, with RNG states), ``final/`` (``cvvae.ldm.models``). The scaling factor is
computed once, before step 0, and kept in the checkpoints, so a resumed run uses the same one. SIGTERM and
SIGINT stop after the current step with a checkpoint.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cvvae.ldm.config import LDMRunConfig
from cvvae.ldm.data import centre_crops, training_batches
from cvvae.ldm.models import (
    LDMInfo,
    build_unet,
    save_model,
    training_scheduler,
    vae_downsampling,
)
from cvvae.models.image_vae import load_image_vae
from cvvae.train.checkpoint import latest_checkpoint, load_checkpoint, restore_rng_state, rng_state
from cvvae.train.checkpoint import save_checkpoint as write_checkpoint
from cvvae.train.config import to_dict
from cvvae.train.loop import StepTimer, StopRequests
from cvvae.train.run_files import CsvLog, write_config

METRIC_COLUMNS = ["step", "source", "lr", "loss", "sec_per_step"]
BOOKKEEPING_KEYS = ("log_every", "ckpt_every", "keep_ckpts", "cache_decoded")


def run_identity(run: LDMRunConfig) -> dict[str, Any]:
    """What the weights are computed from: the config minus bookkeeping, with the image VAE and the manifest
    replaced by digests of their bytes."""
    from cvvae.fingerprint import file_digest, folder_digest

    data = to_dict(run)
    for key in BOOKKEEPING_KEYS:
        data["train"].pop(key)
    data.pop("data")
    if run.train.synthetic_data:
        data["data"] = "synthetic"
    else:
        manifest = run.data.manifest_path()
        data["data"] = {
            "manifest_sha256": file_digest(manifest) if manifest.is_file() else f"missing: {manifest}",
            "train_split": run.data.train_split,
        }
    vae_folder = Path(data.pop("image_vae_path")) / (data.pop("image_vae_subfolder") or "")
    data["image_vae_sha256"] = folder_digest(vae_folder)
    return data


@torch.no_grad()
def scaling_factor_from_std(vae: nn.Module, images: Tensor, seed: int, batch_size: int = 32) -> float:
    """1 / std of the posterior samples of ``images`` (SD's ``scale_by_std``: the latents the UNet sees have
    unit variance)."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for part in images.split(batch_size):
        dist = vae.encode(part.to(next(vae.parameters()).device)).latent_dist
        noise = torch.randn(dist.mean.shape, generator=gen).to(dist.mean.device)
        samples.append((dist.mean + dist.std * noise).float().cpu())
    std = torch.cat(samples).flatten().std().item()
    if not std > 0:
        raise ValueError(f"latent std is {std}: cannot compute a scaling factor from these images")
    return 1.0 / std


class EMA:
    """Exponential moving average of a model's parameters, with the usual warm-up of the decay."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for shadow, param in zip(self.shadow, model.parameters(), strict=True):
            shadow.lerp_(param.detach(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for shadow, param in zip(self.shadow, model.parameters(), strict=True):
            param.copy_(shadow)

    def state_dict(self) -> list[Tensor]:
        return self.shadow

    def load_state_dict(self, state: list[Tensor]) -> None:
        for shadow, saved in zip(self.shadow, state, strict=True):
            shadow.copy_(saved)


class LDMTrainer:
    """Train the UNet to denoise the image VAE's scaled latents; ``fit()`` resumes automatically."""

    def __init__(
        self, run: LDMRunConfig, run_dir: str | Path, device: str | torch.device | None = None
    ) -> None:
        self.run, self.cfg = run, run.train
        self.run_dir = Path(run_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(run.seed)
        self.vae = load_image_vae(run.image_vae_path, run.image_vae_subfolder, setting="ldm.image_vae_path")
        self.vae = self.vae.to(self.device)
        self.latent_channels = int(self.vae.config.latent_channels)
        self.latent_size = self.cfg.resolution // vae_downsampling(self.vae)
        self.unet = build_unet(run.model, self.latent_channels, self.latent_size).to(self.device)
        self.scheduler = training_scheduler(run.noise)
        self.optimizer = torch.optim.AdamW(
            self.unet.parameters(), lr=self.cfg.lr, betas=tuple(self.cfg.betas), eps=self.cfg.eps,
            weight_decay=self.cfg.weight_decay,
        )  # fmt: skip
        warmup = self.cfg.warmup_steps
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.ema = EMA(self.unet, self.cfg.ema_decay) if self.cfg.ema_decay > 0 else None
        self.batches = training_batches(self.cfg, run.data, run.seed)
        # Posterior, noise and timestep draws: one generator, checkpointed with the run.
        self.generator = torch.Generator(device=self.device).manual_seed(run.seed * 7919 + 1)
        self.scaling_factor: float | None = None
        self.scaling_source = ""
        self.step = 0

    # -------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "unet": self.unet.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "batches": self.batches.state_dict(),
            "scaling_factor": self.scaling_factor,
            "scaling_source": self.scaling_source,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.unet.load_state_dict(state["unet"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.batches.load_state_dict(state["batches"])
        self.scaling_factor, self.scaling_source = state["scaling_factor"], state["scaling_source"]

    def save(self) -> Path:
        rng = rng_state() | {"ldm_generator": self.generator.get_state()}
        return write_checkpoint(self.run_dir, self.step, self.state_dict(), rng, self.cfg.keep_ckpts)

    def resume(self) -> bool:
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is None:
            return False
        state, rng = load_checkpoint(checkpoint)
        self.load_state_dict(state)
        if rng is not None:
            restore_rng_state(rng)
            self.generator.set_state(rng["ldm_generator"])
        return True

    # -------------------------------------------------------------------------------- steps
    def compute_scaling_factor(self) -> None:
        if self.cfg.scaling_factor is not None:
            self.scaling_factor, self.scaling_source = self.cfg.scaling_factor, "configured"
            return
        if self.cfg.synthetic_data:
            images = next(training_batches(self.cfg, self.run.data, self.run.seed + 17))["images"]
            images = images[: self.cfg.scaling_images]
        else:
            images = centre_crops(
                self.run.data, self.run.data.train_split, self.cfg.resolution, self.cfg.scaling_images,
                video_frames=1 if self.cfg.use_video_frames else 0, seed=self.run.seed,
            )  # fmt: skip
        self.scaling_factor = scaling_factor_from_std(self.vae, images, self.run.seed)
        self.scaling_source = f"1 / std of the posterior samples of {len(images)} training images"

    def loss(self, images: Tensor) -> Tensor:
        """The denoising loss of one batch: MSE of the predicted noise (or velocity) at uniform timesteps."""
        with torch.no_grad():
            dist = self.vae.encode(images.to(self.device)).latent_dist
            eps = torch.randn(dist.mean.shape, generator=self.generator, device=self.device)
            latents = (dist.mean + dist.std * eps) * self.scaling_factor
        noise = torch.randn(latents.shape, generator=self.generator, device=self.device)
        steps = self.scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (latents.shape[0],), generator=self.generator, device=self.device)
        noisy = self.scheduler.add_noise(latents, noise, t)
        if self.run.noise.prediction_type == "epsilon":
            target = noise
        else:
            target = self.scheduler.get_velocity(latents, noise, t)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            pred = self.unet(noisy, t).sample
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    def train_step(self, images: Tensor) -> Tensor:
        loss = self.loss(images)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.lr_schedule.step()
        if self.ema is not None:
            self.ema.update(self.unet, self.step)
        return loss.detach()

    # -------------------------------------------------------------------------------- loop
    def write_run_files(self) -> None:
        synthetic = ["synthetic random images instead of a dataset (smoke run only)"]
        write_config(self.run_dir, self.run, synthetic if self.cfg.synthetic_data else [])

    def fit(
        self, stop_after: int | None = None, restart: bool = False, if_changed: str = "error"
    ) -> dict[str, Any]:
        """Train to ``train.steps`` (resuming when possible); ``stop_after`` ends this call early with a
        checkpoint after that many steps, as SIGTERM would. Returns a summary."""
        from tqdm.auto import tqdm

        from cvvae.train.run_identity import prepare_run_dir

        prepare_run_dir(self.run_dir, run_identity(self.run), restart, if_changed)  # type: ignore[arg-type]
        resumed = self.resume()
        self.write_run_files()
        metrics = CsvLog(self.run_dir / "metrics.csv", METRIC_COLUMNS)
        metrics.truncate_from(self.step)
        if self.scaling_factor is None:
            self.compute_scaling_factor()
        timer = StepTimer(self.step)
        interrupted = False
        self.unet.train()
        progress = tqdm(total=self.cfg.steps, initial=self.step, desc="train-ldm")
        with StopRequests(self.step, stop_after) as stops:
            try:
                while self.step < self.cfg.steps:
                    batch = next(self.batches)
                    lr = self.lr_schedule.get_last_lr()[0]
                    loss = self.train_step(batch["images"])
                    if self.step % self.cfg.log_every == 0:
                        seconds = timer.seconds_per_step(self.step)
                        row = {"step": self.step, "source": batch["source"], "lr": f"{lr:.6g}",
                               "loss": f"{float(loss):.6g}", "sec_per_step": f"{seconds:.6g}"}  # fmt: skip
                        metrics.append(row)
                        progress.set_postfix(loss=row["loss"])
                    self.step += 1
                    progress.update(1)
                    if stops.end_of_step(self.step, self.cfg.steps, self.cfg.ckpt_every, self.save):
                        interrupted = True
                        break
            finally:
                progress.close()
        steps_per_s = timer.steps_per_s(self.step)
        if not interrupted:
            self.save()
            self.save_final()
        return {
            "step": self.step,
            "resumed": resumed,
            "interrupted": interrupted,
            "scaling_factor": self.scaling_factor,
            "steps_per_s": steps_per_s,
        }

    def save_final(self) -> None:
        from cvvae.fingerprint import folder_digest

        unet = self.unet
        if self.ema is not None:  # the averaged weights are the model; the trained ones stay checkpointed
            unet = copy.deepcopy(self.unet)
            self.ema.copy_to(unet)
        vae_folder = Path(self.run.image_vae_path) / (self.run.image_vae_subfolder or "")
        info = LDMInfo(
            scaling_factor=float(self.scaling_factor), scaling_source=self.scaling_source,
            latent_channels=self.latent_channels, latent_size=self.latent_size,
            resolution=self.cfg.resolution, image_vae_sha256=folder_digest(vae_folder), step=self.step,
            ema=self.ema is not None,
        )  # fmt: skip
        save_model(self.run_dir / "final", unet, self.scheduler, info)
        print(json.dumps({"final": str(self.run_dir / "final"), "scaling_factor": info.scaling_factor}))


def train_ldm(
    run: LDMRunConfig,
    run_dir: str | Path,
    stop_after: int | None = None,
    restart: bool = False,
    if_changed: str = "error",
    device: str | None = None,
) -> dict[str, Any]:
    """Train (or resume) the LDM of ``run`` in ``run_dir``; see :meth:`LDMTrainer.fit`."""
    return LDMTrainer(run, run_dir, device).fit(stop_after=stop_after, restart=restart, if_changed=if_changed)
