"""Resumable accelerate trainer for CV-VAE, the SVD-style VAE and the small image VAE.

One loop serves the three model kinds (``TrainConfig.kind``): a generator step (objective.GeneratorObjective)
and, once the GAN is active, a discriminator step, alternating or on every step. Everything a run needs to
continue exactly is checkpointed (models, discriminator, optimisers, schedulers, sampler position, RNG
states); starting the same command again resumes from the latest checkpoint.

Run directory: ``run_identity.json`` (what the weights are computed from; a changed config is refused or
restarts, never resumed: ``cvvae.train.run_identity``), ``config.yaml`` (resolved config and deviations from
the paper), ``environment.json``, ``metrics.csv``, ``val_metrics.csv``, ``data_report.json`` (unreadable
files skipped), ``samples/``, ``checkpoints/``, ``final/``. SIGTERM and SIGINT (Ctrl-C) stop after the current
step with a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cvvae.models.image_vae import build_image_vae, load_image_vae
from cvvae.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from cvvae.train.config import DataConfig, ImageVAERunConfig, RunConfig, TrainConfig, to_dict
from cvvae.train.discriminator import NLayerDiscriminator3D
from cvvae.train.loader import PrefetchLoader, to_device
from cvvae.train.loop import StepTimer, StopRequests
from cvvae.train.losses import discriminator_loss, gan_active
from cvvae.train.models import build_video_model
from cvvae.train.objective import GeneratorObjective, TrainableVideoVAE
from cvvae.train.optim import build_adamw, compile_in_place, to_channels_last
from cvvae.train.run_files import CsvLog, data_report, flat_scalars, write_run_files
from cvvae.train.run_identity import prepare_run_dir, run_identity
from cvvae.train.sampling import build_sampler, validation_clips
from cvvae.train.schedule import warmup_cosine
from cvvae.train.validation import save_grid, validation_metrics

METRIC_COLUMNS = [
    "step", "phase", "source", "frames", "lr", "loss", "nll", "rec", "logvar", "kl", "reg_dec", "reg_dec_err",
    "reg_enc", "reg_enc_err", "g_loss", "d_weight", "d_loss", "logits_real", "logits_fake", "sec_per_step",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------ trainer


def check_process_group(num_processes: int) -> None:
    """Refuse a multi-process launch that accelerate runs as independent single processes: they would train
    the same run folder concurrently. On CPUs accelerate forms a (gloo) group only when told to."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and num_processes != launched:
        raise RuntimeError(
            f"{launched} processes were launched but accelerate sees {num_processes}; on CPUs set "
            "ACCELERATE_USE_CPU=true (or use `accelerate launch --cpu`), on GPUs check the CUDA devices"
        )


class Trainer:
    """Train one model kind with the CV-VAE objective; ``fit()`` resumes automatically."""

    def __init__(
        self,
        config: TrainConfig,
        data: DataConfig,
        seed: int,
        run_dir: str | Path,
        model: nn.Module,
        image_vae: nn.Module | None,
        resolved_config: Any,
        accelerator: Any = None,
        report_to: list[Any] | None = None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.config, self.data, self.seed = config, data, seed
        self.run_dir = Path(run_dir)
        # Experiment trackers beside metrics.csv (accelerate names such as "tensorboard", or objects).
        self.report_to = list(report_to or [])
        self.accelerator = accelerator or Accelerator(
            mixed_precision="bf16" if config.precision == "bf16" else "no",
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            log_with=self.report_to or None,
            project_dir=str(self.run_dir / "trackers") if self.report_to else None,
        )
        acc = self.accelerator
        check_process_group(acc.num_processes)
        self.rank = acc.process_index
        torch.manual_seed(seed + self.rank)
        np.random.seed(seed + self.rank)
        if config.grad_checkpointing and hasattr(model, "enable_gradient_checkpointing"):
            model.enable_gradient_checkpointing()
        self.image_vae = image_vae.to(acc.device) if image_vae is not None else None
        # Models sit on the device before their optimisers are built (fused AdamW checks that).
        self.model = TrainableVideoVAE(model, config.kind).to(acc.device)
        self.objective = GeneratorObjective(config, self.image_vae).to(acc.device)
        use_disc = config.loss.disc_enabled
        self.discriminator = (
            NLayerDiscriminator3D(3, config.loss.disc_channels, config.loss.disc_layers).to(acc.device)
            if use_disc
            else None
        )
        if config.channels_last:
            for module in (self.model, self.discriminator, self.image_vae):
                to_channels_last(module)
        if config.compile and acc.device.type == "cuda":
            vae = self.model.vae
            parts = [getattr(vae, "encoder", None), getattr(vae, "decoder", None)]
            compile_in_place(
                *parts,
                self.discriminator,
                self.objective.rec.perceptual,
                retain_graph=use_disc and config.loss.adaptive_weight,
                mode=config.compile_mode,
            )
        self.opt_g = build_adamw(
            config, self.model.named_parameters(), self.objective.trainable_parameters(), config.lr
        )
        schedule = warmup_cosine(config.warmup_steps, config.steps, config.min_lr_ratio)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, schedule)
        if self.discriminator is not None:
            self.opt_d = build_adamw(
                config, self.discriminator.named_parameters(), [], config.disc_lr or config.lr, scaled=False
            )
            self.model, self.discriminator, self.opt_g, self.opt_d = acc.prepare(
                self.model, self.discriminator, self.opt_g, self.opt_d
            )
        else:
            self.opt_d = None
            self.model, self.opt_g = acc.prepare(self.model, self.opt_g)
        sampler = build_sampler(config, data, seed + 1000 * self.rank)
        on_gpu = acc.device.type == "cuda"
        self.sampler = (
            PrefetchLoader(sampler, config.num_workers, config.prefetch_batches, pin_memory=on_gpu)
            if config.num_workers > 0
            else sampler
        )
        # Host-side draws (the psi frame choice) use a CPU generator; the posterior noise is drawn where the
        # model runs, so that no random tensor is copied to the GPU with a wait on every step. On CPU both
        # are one generator, as before.
        self.generator = torch.Generator().manual_seed(seed * 7919 + self.rank)
        self.noise_generator = (
            torch.Generator(device=acc.device).manual_seed(seed * 7919 + self.rank + 1)
            if on_gpu
            else self.generator
        )
        self.step = 0
        self.resolved_config = resolved_config
        self.metrics = CsvLog(self.run_dir / "metrics.csv", METRIC_COLUMNS)
        self.val_log = CsvLog(self.run_dir / "val_metrics.csv")
        self._timer = StepTimer(0)

    # -------------------------------------------------------------------------------- state
    @property
    def unwrapped(self) -> TrainableVideoVAE:
        return self.accelerator.unwrap_model(self.model)

    def state_dict(self) -> dict[str, Any]:
        acc = self.accelerator
        state = {
            "step": self.step,
            "model": self.unwrapped.vae.state_dict(),
            "objective": {k: v for k, v in self.objective.state_dict().items() if "logvar" in k},
            "opt_g": self.opt_g.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sampler": self.sampler.state_dict(),
        }
        if self.discriminator is not None:
            state["discriminator"] = acc.unwrap_model(self.discriminator).state_dict()
            state["opt_d"] = self.opt_d.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        acc = self.accelerator
        self.step = int(state["step"])
        self.unwrapped.vae.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"], strict=False)
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sampler.load_state_dict(state["sampler"])
        if self.discriminator is not None:
            acc.unwrap_model(self.discriminator).load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])

    def _rank_rng(self) -> dict[str, Any]:
        state = rng_state(self.generator)
        if self.noise_generator is not self.generator:
            state["noise_generator"] = self.noise_generator.get_state()
        return state

    def save(self) -> Path:
        acc = self.accelerator
        return save_checkpoint(
            self.run_dir,
            self.step,
            self.state_dict() if acc.is_main_process else {},
            self._rank_rng(),
            self.config.keep_ckpts,
            rank=self.rank,
            barrier=acc.wait_for_everyone,
        )

    def resume(self) -> bool:
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return False
        state, rank_rng = load_checkpoint(path, self.rank)
        self.load_state_dict(state)
        if rank_rng is not None:
            restore_rng_state(rank_rng, self.generator)
            if "noise_generator" in rank_rng and self.noise_generator is not self.generator:
                self.noise_generator.set_state(rank_rng["noise_generator"])
        return True

    # -------------------------------------------------------------------------------- steps
    def _clip(self, params: Any) -> None:
        if self.config.grad_clip is not None:
            self.accelerator.clip_grad_norm_(list(params), self.config.grad_clip)

    def _sync_loose_parameters(self) -> None:
        """Average the learned log-variances' gradients: they live outside the DDP-wrapped model."""
        if self.accelerator.num_processes == 1:
            return
        for p in self.objective.trainable_parameters():
            if p.grad is not None:
                p.grad = self.accelerator.reduce(p.grad, reduction="mean")

    def generator_step(self, video: Tensor) -> dict[str, Tensor]:
        """One autoencoder update; returns detached device scalars (reading them waits for the GPU)."""
        acc = self.accelerator
        disc = acc.unwrap_model(self.discriminator) if self.discriminator is not None else None
        with acc.autocast():
            losses, _ = self.objective(
                self.model, video, self.step, self.generator, disc, self.unwrapped.last_layer(),
                noise_generator=self.noise_generator,
            )  # fmt: skip
        self.opt_g.zero_grad(set_to_none=True)
        acc.backward(losses.total)
        self._sync_loose_parameters()
        self._clip([p for g in self.opt_g.param_groups for p in g["params"]])
        self.opt_g.step()
        return losses.logs

    def discriminator_step(self, video: Tensor) -> dict[str, Tensor]:
        acc = self.accelerator
        with torch.no_grad(), acc.autocast():
            recon = self.model(video, generator=self.noise_generator).recon
        with acc.autocast():
            loss, logs = discriminator_loss(self.discriminator, video, recon, self.config.loss)
        self.opt_d.zero_grad(set_to_none=True)
        acc.backward(loss)
        self._clip(self.discriminator.parameters())
        self.opt_d.step()
        return {"d_loss": loss.detach(), **logs}

    def phases(self, step: int) -> list[str]:
        """Which updates step ``step`` makes: the official alternation once the GAN is on."""
        if self.discriminator is None or not gan_active(self.config.loss, step):
            return ["generator"]
        if self.config.loss.disc_schedule == "every_step":
            return ["generator", "discriminator"]
        return ["generator"] if step % 2 == 0 else ["discriminator"]

    # -------------------------------------------------------------------------------- loop
    def fit(
        self, stop_after: int | None = None, restart: bool = False, if_changed: str = "error"
    ) -> dict[str, Any]:
        """Train to ``config.steps`` (resuming if possible). ``stop_after`` ends early after that many steps
        of this call with a checkpoint, as a SIGTERM would; returns a summary.

        A run folder trained with a different config is refused (``if_changed="error"``) or cleared
        (``"restart"``); ``restart`` clears it in any case (``cvvae.train.run_identity``)."""
        from tqdm.auto import tqdm

        acc, cfg = self.accelerator, self.config
        if acc.is_main_process:
            prepare_run_dir(self.run_dir, run_identity(self.resolved_config), restart, if_changed)  # type: ignore[arg-type]
        acc.wait_for_everyone()
        resumed = self.resume()
        if acc.is_main_process:
            write_run_files(self.run_dir, self.resolved_config, cfg, acc)
            self.metrics.truncate_from(self.step)
            # From step 0 the log starts afresh (an earlier call may have validated step 0 already).
            self.val_log.truncate_from(self.step + 1 if self.step else 0)
        if self.report_to:
            acc.init_trackers(self.run_dir.name, config=flat_scalars(to_dict(self.resolved_config)))
        if cfg.val_at_start and self.step == 0:
            self.validate()  # the starting point of this run, in its own log
        self.model.train()
        self.objective.train()
        # On a terminal a bar; in a log file (workflow jobs) one plain line per logged step instead of a
        # stream of carriage returns.
        self._lines = acc.is_main_process and not sys.stderr.isatty()
        progress = tqdm(
            total=cfg.steps, initial=self.step, disable=not acc.is_main_process or self._lines, desc="train"
        )
        interrupted = False
        self._timer = StepTimer(self.step)
        with StopRequests(self.step, stop_after) as stops:
            try:
                while self.step < cfg.steps:
                    batch = next(self.sampler)
                    video = to_device(batch["video"], acc.device, cfg.channels_last)
                    logs: dict[str, Any] = {"lr": self.sched_g.get_last_lr()[0]}
                    for phase in self.phases(self.step):
                        update = self.generator_step if phase == "generator" else self.discriminator_step
                        logs |= update(video)
                    self.sched_g.step()
                    row = self._log(batch, video, logs)
                    self.step += 1
                    progress.update(1)
                    if row is not None:  # autoencoder and discriminator losses apart: scales differ by 1e4
                        shown = {"ae_loss": row.get("loss"), "disc_loss": row.get("d_loss")}
                        progress.set_postfix({k: v for k, v in shown.items() if v not in (None, "")})
                    if cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.steps:
                        self.validate()
                    if stops.end_of_step(self.step, cfg.steps, cfg.ckpt_every, self.save):
                        interrupted = True
                        break
            finally:
                progress.close()
                if isinstance(self.sampler, PrefetchLoader):
                    self.sampler.close()
                self._write_data_report()
                if self.report_to:
                    acc.end_training()
        summary = {
            "step": self.step,
            "resumed": resumed,
            "skipped_loads": data_report(self.sampler, self.step)["skipped_loads"],
            "interrupted": interrupted,
            "steps_per_s": self._timer.steps_per_s(self.step),
        }
        if not interrupted:
            self.validate()
            self.save()
            self.save_final()
        return summary

    def _log(self, batch: dict[str, Any], video: Tensor, logs: dict[str, Any]) -> dict[str, Any] | None:
        """Write the row of a logged step. Only here are device scalars read, so the GPU is waited for once
        every ``log_every`` steps, not on every step (``sec_per_step`` is the mean wall time over the
        steps since the previous row)."""
        if not self.accelerator.is_main_process or self.step % self.config.log_every:
            return None
        values = {k: float(v) for k, v in logs.items()}  # one host read per value (after the first sync)
        # Mean wall time per step since the previous row, measured after the GPU caught up.
        values["sec_per_step"] = self._timer.seconds_per_step(self.step)
        phase = "+".join(self.phases(self.step))
        row = {"step": self.step, "phase": phase, "source": batch.get("source", ""), "frames": video.shape[2]}
        row |= {k: f"{v:.6g}" for k, v in values.items()}
        self.metrics.append(row)
        if self.report_to:
            self.accelerator.log(values, step=self.step)
        if getattr(self, "_lines", False):
            losses = " ".join(f"{k}={row[k]}" for k in ("loss", "d_loss") if row.get(k) not in (None, ""))
            speed = 1 / values["sec_per_step"]
            # One write per line (end=""): other ranks' summary lines share the pipe (cvvae.train.cli.finish).
            line = f"step {self.step + 1}/{self.config.steps} {losses} {speed:.2f} steps/s\n"
            print(line, end="", flush=True)
        return row

    def _write_data_report(self) -> None:
        if self.accelerator.is_main_process:
            report = json.dumps(data_report(self.sampler, self.step), indent=2)
            (self.run_dir / "data_report.json").write_text(report + "\n")

    def save_final(self) -> None:
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.unwrapped.vae.save_pretrained(self.run_dir / "final")

    # -------------------------------------------------------------------------------- validation
    def validation_clips(self) -> Tensor | None:
        return validation_clips(self.config, self.data, self.seed)

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """PSNR of reconstructions; for CV-VAE also PSNR of D_i(E_v(X)) vs psi(X) and the latent distance
        to E_i(psi(X)). Writes ``val_metrics.csv`` and a PNG grid in ``samples/``."""
        acc = self.accelerator
        if not acc.is_main_process:
            acc.wait_for_everyone()
            return None
        clips = self.validation_clips()
        if clips is None:
            acc.wait_for_everyone()
            return None
        model = self.unwrapped
        model.eval()
        # The frozen image VAE is not prepared by accelerate, so mixed precision must be entered explicitly.
        with acc.autocast():
            metrics = validation_metrics(model, clips, self.config, self.image_vae, self.seed, acc.device)
        row: dict[str, float] = {"step": self.step, **metrics}
        self.val_log.append(row)
        clip = clips[:1].to(acc.device)
        save_grid(self.run_dir / "samples", self.step, clip, model(clip, sample_posterior=False).recon)
        model.train()
        acc.wait_for_everyone()
        return row


# ------------------------------------------------------------------------------------------- entry points


def image_vae_train_config(run: ImageVAERunConfig) -> TrainConfig:
    """The image-VAE pretraining as a ``TrainConfig`` of kind ``image_vae`` (no regularisation)."""
    from cvvae.train.config import LoopConfig, MixtureSourceConfig, OptimizerConfig, RegConfig

    cfg = run.train
    mixture = [MixtureSourceConfig("images", "image", cfg.resolution, cfg.batch_size, 1.0)]
    if cfg.use_video_frames and not cfg.synthetic_data:
        mixture.append(
            MixtureSourceConfig("frames", "video", cfg.resolution, cfg.batch_size, 1.0, num_frames=1)
        )
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(OptimizerConfig)}
    shared |= {f.name: getattr(cfg, f.name) for f in dataclasses.fields(LoopConfig)}
    return TrainConfig(
        **shared, kind="image_vae", steps=cfg.steps, mixture=mixture, synthetic_data=cfg.synthetic_data,
        loss=cfg.loss, reg=RegConfig(lambda_dec=0.0, lambda_enc=0.0), val_clips=cfg.val_images,
        val_num_frames=1, val_resolution=cfg.resolution,
    )  # fmt: skip


def build_trainer(
    run: RunConfig | ImageVAERunConfig, run_dir: str | Path, report_to: list[Any] | None = None
) -> Trainer:
    """The trainer of ``run``: a CV-VAE or the SVD-style VAE against the frozen image VAE (``RunConfig``), or
    the pretraining of the small image VAE (``ImageVAERunConfig``; ``final/`` is its ``save_pretrained``)."""
    if isinstance(run, ImageVAERunConfig):
        torch.manual_seed(run.seed)
        model = build_image_vae(run.model)
        config = image_vae_train_config(run)
        return Trainer(config, run.data, run.seed, run_dir, model, None, run, report_to=report_to)
    image_vae = load_image_vae(run.image_vae_path, run.image_vae_subfolder)
    # Layers the image VAE does not provide (the SVD-style VAE's temporal ones) draw their initial weights
    # from the global generator: seed it, or two runs of one config start from different weights.
    torch.manual_seed(run.seed)
    model = build_video_model(run, image_vae)
    return Trainer(run.train, run.data, run.seed, run_dir, model, image_vae, run, report_to=report_to)


def train(
    run: RunConfig | ImageVAERunConfig,
    run_dir: str | Path,
    stop_after: int | None = None,
    restart: bool = False,
    if_changed: str = "error",
    report_to: list[Any] | None = None,
) -> dict[str, Any]:
    """Train the model ``run`` describes (see ``build_trainer``); resumes from a checkpoint in ``run_dir``
    made with the same config (see ``Trainer.fit`` for ``stop_after``, ``restart`` and ``if_changed``);
    ``report_to`` names experiment trackers beside the CSV logs."""
    trainer = build_trainer(run, run_dir, report_to)
    return trainer.fit(stop_after=stop_after, restart=restart, if_changed=if_changed)


# Image-VAE pretraining has the same entry point: the run config says which model is trained.
train_image_vae = train
