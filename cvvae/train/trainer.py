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

import csv
import dataclasses
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cvvae.models.image_vae import build_image_vae, load_image_vae
from cvvae.per_frame import decode_frames, encode_frames
from cvvae.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from cvvae.train.config import DataConfig, ImageVAERunConfig, RunConfig, TrainConfig, dump_yaml, to_dict
from cvvae.train.discriminator import NLayerDiscriminator3D
from cvvae.train.loader import PrefetchLoader, to_device
from cvvae.train.losses import discriminator_loss, gan_active
from cvvae.train.objective import GeneratorObjective, TrainableVideoVAE
from cvvae.train.optim import build_adamw, compile_in_place, to_channels_last
from cvvae.train.regularization import regularization_targets, regularized_latents
from cvvae.train.run_identity import prepare_run_dir, run_identity

# Signals that stop a run after the current step, with a checkpoint.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

METRIC_COLUMNS = [
    "step", "phase", "source", "frames", "lr", "loss", "nll", "rec", "logvar", "kl", "reg_dec", "reg_dec_err",
    "reg_enc", "reg_enc_err", "g_loss", "d_weight", "d_loss", "logits_real", "logits_fake", "sec_per_step",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------ schedule


def warmup_cosine(warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """lr factor: linear warm-up to 1, cosine decay to ``min_lr_ratio`` at ``total_steps``, flat after."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# ------------------------------------------------------------------------------------------------ data


class SyntheticMixture:
    """Seeded smooth random clips shaped like the configured mixture (throughput smoke runs, no dataset).

    Same interface as ``cvvae.data.MixtureSampler``: infinite ``{"source", "video"}`` batches, state dicts.
    """

    def __init__(self, sources: list[Any], seed: int) -> None:
        self.sources, self.seed, self.step = sources, seed, 0
        weights = np.array([s.weight for s in sources], dtype=np.float64)
        self.cumulative = np.cumsum(weights / weights.sum())

    def __iter__(self) -> SyntheticMixture:
        return self

    def __next__(self) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.step])
        source = self.sources[min(int(np.searchsorted(self.cumulative, rng.random())), len(self.sources) - 1)]
        frames = source.num_frames if source.kind == "video" else 1
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        low = max(1, source.resolution // 8)
        coarse = torch.randn(source.batch_size * frames, 3, low, low, generator=generator)
        video = torch.nn.functional.interpolate(coarse, size=source.resolution, mode="bilinear").tanh()
        video = video.unflatten(0, (source.batch_size, frames)).transpose(1, 2).contiguous()
        self.step += 1
        return {"source": source.name, "video": video}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])


def build_sampler(config: TrainConfig, data: DataConfig, seed: int) -> Any:
    """The joint image/video mixture of ``config.mixture`` (or its synthetic stand-in); with
    ``config.cache_decoded`` its sources share one in-memory cache of decoded files."""
    if config.synthetic_data:
        return SyntheticMixture(config.mixture, seed)
    from cvvae.data import ImageDataset, MixtureSampler, MixtureSource, VideoClipDataset
    from cvvae.data.datasets import DecodedCache

    cache = DecodedCache() if config.cache_decoded else None

    manifest = data.manifest_path()
    if not manifest.is_file():
        raise FileNotFoundError(
            f"training manifest {manifest} not found: build the embedded dataset with `cvvae data embedded "
            f"--config PROFILE.yaml --out {data.root}`, point data.root to a folder with a manifest.csv, "
            "or set cvvae.train.synthetic_data=true for a throughput smoke run"
        )
    sources = []
    for src in config.mixture:
        if src.kind == "image":
            dataset = ImageDataset.from_manifest(
                manifest, data.train_split, src.resolution, src.crop, seed, on_error="skip"
            )
        else:
            dataset = VideoClipDataset.from_manifest(
                manifest, data.train_split, src.num_frames, src.stride, src.resolution, src.crop, seed, "skip"
            )
        sources.append(MixtureSource(src.name, dataset.use_cache(cache), src.batch_size, src.weight))
    return MixtureSampler(sources, seed=seed)


# ------------------------------------------------------------------------------------------------ run files


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def math_backends() -> dict[str, Any]:
    """The numerical libraries that decide floating-point results on this machine (BLAS, oneDNN, SIMD)."""
    lines = [line.strip(" -") for line in torch.__config__.show().splitlines()]

    def find(*needles: str) -> str:
        return next((line for line in lines if any(n in line for n in needles)), "n/a")

    blas = find("BLAS_INFO=")
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": blas.split("BLAS_INFO=", 1)[1].split(",")[0] if "BLAS_INFO=" in blas else blas,
        "mkl": find("Math Kernel Library"),
        "onednn": find("MKL-DNN", "oneDNN"),
        "openmp": find("OpenMP"),
    }


def environment_info(accelerator: Any) -> dict[str, Any]:
    import accelerate
    import diffusers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "accelerate": accelerate.__version__,
        "numpy": np.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        **math_backends(),
        "num_processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
    }
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        import lpips

        info["lpips"] = getattr(lpips, "__version__", "installed")
    except ImportError:
        info["lpips"] = None
    return info


def deviations(config: TrainConfig) -> list[str]:
    """Where this run departs from the paper's recipe (written to config.yaml)."""
    out = []
    if config.loss.lpips == "none" or config.loss.lpips_weight == 0:
        out.append("perceptual (LPIPS) term off: reconstruction loss is pixel-only")
    if config.synthetic_data:
        out.append("synthetic random data instead of a dataset (throughput smoke run only)")
    if config.precision != "fp32":
        out.append(f"{config.precision} autocast instead of fp32")
    if config.kind == "cvvae" and config.reg.distance != "l2":
        out.append(f"regularisation distance {config.reg.distance} instead of the paper's squared error")
    return out


class CsvLog:
    """Append rows to a CSV; on resume, rows from steps >= the resume step are dropped first."""

    def __init__(self, path: Path, columns: list[str] | None = None) -> None:
        self.path, self.columns = path, columns

    def truncate_from(self, step: int) -> None:
        if not self.path.is_file():
            return
        with self.path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            self.columns = self.columns or list(rows[0])
        kept = [r for r in rows if int(r["step"]) < step]
        self._write(kept, mode="w")

    def append(self, row: dict[str, Any]) -> None:
        self.columns = self.columns or list(row)
        self._write([row], mode="a")

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        new = mode == "w" or not self.path.is_file()
        with self.path.open(mode, newline="") as fh:
            writer = csv.DictWriter(fh, self.columns, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerows(rows)


# ------------------------------------------------------------------------------------------------ models


def build_video_model(run: RunConfig, image_vae: nn.Module) -> nn.Module:
    kind = run.train.kind
    if kind == "svd_vae":
        from cvvae.models.svd_init import svd_vae_from_image_vae

        return svd_vae_from_image_vae(image_vae)
    from cvvae.models import CVVAEModel, inflate_from_image_vae

    if run.init_path:
        from cvvae.models.loading import check_class, load_pretrained_strict

        check_class(run.init_path, ("CVVAEModel",), "a CV-VAE (cvvae.init_path)")
        return load_pretrained_strict(CVVAEModel, run.init_path, **run.model)
    return inflate_from_image_vae(image_vae, **run.model)


# ------------------------------------------------------------------------------------------------ trainer


def _flat_scalars(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A resolved config as ``a.b.c -> scalar`` (what trackers accept as hyperparameters)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_scalars(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


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
            compile_in_place(*parts, self.discriminator, self.objective.rec.perceptual)
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
        self._stop_requested = False
        self._window = (0, time.perf_counter())  # (first step, start time) of the current log window

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
    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        self._stop_requested = True

    def write_run_files(self) -> None:
        if not self.accelerator.is_main_process:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resolved = to_dict(self.resolved_config)
        resolved["deviations"] = deviations(self.config)
        dump_yaml(resolved, self.run_dir / "config.yaml")
        info = environment_info(self.accelerator)
        (self.run_dir / "environment.json").write_text(json.dumps(info, indent=2))

    def data_report(self) -> dict[str, Any]:
        """Unreadable training files met so far, per mixture source (they were skipped, not trained on)."""
        # MixtureSampler's sources carry datasets; the synthetic stand-in reads no files.
        sources = [s for s in getattr(self.sampler, "sources", []) if hasattr(s, "dataset")]
        per_source = {
            source.name: {
                "skipped_loads": int(getattr(source.dataset, "skipped", 0)),
                "bad_files": sorted(getattr(source.dataset, "bad_paths", ())),
            }
            for source in sources
        }
        return {"step": self.step, "skipped_loads": sum(v["skipped_loads"] for v in per_source.values()),
                "sources": per_source}  # fmt: skip

    def _write_data_report(self) -> None:
        if self.accelerator.is_main_process:
            (self.run_dir / "data_report.json").write_text(json.dumps(self.data_report(), indent=2) + "\n")

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
        self.write_run_files()
        if acc.is_main_process:
            self.metrics.truncate_from(self.step)
            # From step 0 the log starts afresh (an earlier call may have validated step 0 already).
            self.val_log.truncate_from(self.step + 1 if self.step else 0)
        if self.report_to:
            acc.init_trackers(self.run_dir.name, config=_flat_scalars(to_dict(self.resolved_config)))
        if cfg.val_at_start and self.step == 0:
            self.validate()  # the starting point of this run, in its own log
        previous = {sig: signal.signal(sig, self._on_stop_signal) for sig in STOP_SIGNALS}
        self.model.train()
        self.objective.train()
        start_step, started = self.step, time.perf_counter()
        # On a terminal a bar; in a log file (workflow jobs) one plain line per logged step instead of a
        # stream of carriage returns.
        self._lines = acc.is_main_process and not sys.stderr.isatty()
        progress = tqdm(
            total=cfg.steps, initial=self.step, disable=not acc.is_main_process or self._lines, desc="train"
        )
        interrupted = False
        try:
            self._window = (self.step, time.perf_counter())
            while self.step < cfg.steps:
                batch = next(self.sampler)
                video = to_device(batch["video"], acc.device, cfg.channels_last)
                logs: dict[str, Any] = {"lr": self.sched_g.get_last_lr()[0]}
                for phase in self.phases(self.step):
                    logs |= (
                        self.generator_step(video) if phase == "generator" else self.discriminator_step(video)
                    )
                self.sched_g.step()
                row = self._log(batch, video, logs)
                self.step += 1
                progress.update(1)
                if row is not None:  # autoencoder and discriminator losses apart: their scales differ by 1e4
                    shown = {"ae_loss": row.get("loss"), "disc_loss": row.get("d_loss")}
                    progress.set_postfix({k: v for k, v in shown.items() if v not in (None, "")})
                if cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.steps:
                    self.validate()
                stop = self._stop_requested or (
                    stop_after is not None and self.step - start_step >= stop_after
                )
                if self.step % cfg.ckpt_every == 0 or stop:
                    self.save()
                if stop and self.step < cfg.steps:
                    interrupted = True
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            progress.close()
            if isinstance(self.sampler, PrefetchLoader):
                self.sampler.close()
            self._write_data_report()
            if self.report_to:
                acc.end_training()
        elapsed = time.perf_counter() - started
        summary = {
            "step": self.step,
            "resumed": resumed,
            "skipped_loads": self.data_report()["skipped_loads"],
            "interrupted": interrupted,
            "steps_per_s": (self.step - start_step) / elapsed if elapsed > 0 else float("nan"),
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
        first_step, since = getattr(self, "_window", (self.step, time.perf_counter()))
        now = time.perf_counter()
        values["sec_per_step"] = (now - since) / max(1, self.step + 1 - first_step)
        self._window = (self.step + 1, now)
        phase = "+".join(self.phases(self.step))
        row = {"step": self.step, "phase": phase, "source": batch.get("source", ""), "frames": video.shape[2]}
        row |= {k: f"{v:.6g}" for k, v in values.items()}
        self.metrics.append(row)
        if self.report_to:
            self.accelerator.log(values, step=self.step)
        if getattr(self, "_lines", False):
            losses = " ".join(f"{k}={row[k]}" for k in ("loss", "d_loss") if row.get(k) not in (None, ""))
            speed = 1 / values["sec_per_step"]
            print(f"step {self.step + 1}/{self.config.steps} {losses} {speed:.2f} steps/s", flush=True)
        return row

    def save_final(self) -> None:
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.unwrapped.vae.save_pretrained(self.run_dir / "final")

    # -------------------------------------------------------------------------------- validation
    def validation_clips(self) -> Tensor | None:
        cfg = self.config
        if cfg.synthetic_data:
            source = cfg.mixture[-1]
            frames = cfg.val_num_frames if self.config.kind != "image_vae" else 1
            spec = type(source)(name="val", kind="video", resolution=cfg.val_resolution, num_frames=frames)
            spec.batch_size = cfg.val_clips
            return next(SyntheticMixture([spec], self.seed + 99991))["video"]
        from cvvae.data import ImageDataset, VideoClipDataset

        manifest = self.data.manifest_path()
        try:
            if self.config.kind == "image_vae":
                dataset = ImageDataset.from_manifest(
                    manifest, self.data.val_split, cfg.val_resolution, "center", self.seed, on_error="skip"
                )
            else:
                dataset = VideoClipDataset.from_manifest(
                    manifest, self.data.val_split, cfg.val_num_frames, 1, cfg.val_resolution, "center",
                    self.seed, "skip",
                )  # fmt: skip
        except (FileNotFoundError, ValueError) as err:
            print(f"validation skipped: {err}")
            return None
        items = [dataset[i]["video"] for i in range(min(cfg.val_clips, len(dataset)))]
        return torch.stack(items) if items else None

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
        reg = self.config.reg
        row: dict[str, float] = {"step": self.step}
        psnrs, dec_psnrs, distances = [], [], []
        # The frozen image VAE is not prepared by accelerate, so mixed precision must be entered explicitly.
        with acc.autocast():
            self._validate_clips(clips, reg, psnrs, dec_psnrs, distances)
        row["psnr_video"] = float(np.mean(psnrs))
        if dec_psnrs:
            row["psnr_image_decoder_vs_psi"] = float(np.mean(dec_psnrs))
            for key in ("mse", "cosine", "frechet"):
                if key in distances[0]:
                    row[f"latent_{key}"] = float(np.mean([d[key] for d in distances]))
        self.val_log.append(row)
        self._save_grid(
            clips[:1].to(acc.device), model(clips[:1].to(acc.device), sample_posterior=False).recon
        )
        model.train()
        acc.wait_for_everyone()
        return row

    def _validate_clips(self, clips: Tensor, reg: Any, psnrs: list, dec_psnrs: list, distances: list) -> None:
        """Fill the three lists with per-clip PSNR, image-decoder PSNR vs psi(X) and latent distances."""
        from cvvae.metrics.latent import latent_distance
        from cvvae.metrics.reconstruction import psnr_per_frame

        acc, model = self.accelerator, self.unwrapped
        for clip in clips.split(1):
            clip = clip.to(acc.device)
            out = model(clip, sample_posterior=False)
            psnrs.append(psnr_per_frame(out.recon.float().clamp(-1, 1), clip).mean().item())
            if self.config.kind == "cvvae" and self.image_vae is not None:
                gen = torch.Generator().manual_seed(self.seed)
                targets = regularization_targets(clip, reg, gen)
                latents = regularized_latents(out.latents, reg.mapping)
                decoded = decode_frames(self.image_vae, latents).float().clamp(-1, 1)
                dec_psnrs.append(psnr_per_frame(decoded, targets).mean().item())
                reference = encode_frames(self.image_vae, targets, use_mode=True)
                distances.append(latent_distance(latents.float(), reference.float()))

    def _save_grid(self, clip: Tensor, recon: Tensor) -> None:
        from torchvision.utils import save_image

        folder = self.run_dir / "samples"
        folder.mkdir(exist_ok=True)
        frames = torch.cat([clip[0].transpose(0, 1), recon[0].float().clamp(-1, 1).transpose(0, 1)])
        save_image(frames * 0.5 + 0.5, folder / f"step-{self.step:08d}.png", nrow=clip.shape[2])


# ------------------------------------------------------------------------------------------- entry points


def train(
    run: RunConfig,
    run_dir: str | Path,
    stop_after: int | None = None,
    restart: bool = False,
    if_changed: str = "error",
    report_to: list[Any] | None = None,
) -> dict[str, Any]:
    """Train a CV-VAE (or the SVD-style VAE) as ``run`` says; resumes from a checkpoint in ``run_dir`` made
    with the same config (see ``Trainer.fit`` for ``restart`` and ``if_changed``); ``report_to`` names
    experiment trackers beside the CSV logs."""
    image_vae = load_image_vae(run.image_vae_path, run.image_vae_subfolder)
    # Layers the image VAE does not provide (the SVD-style VAE's temporal ones) draw their initial weights
    # from the global generator: seed it, or two runs of one config start from different weights.
    torch.manual_seed(run.seed)
    model = build_video_model(run, image_vae)
    trainer = Trainer(run.train, run.data, run.seed, run_dir, model, image_vae, run, report_to=report_to)
    return trainer.fit(stop_after=stop_after, restart=restart, if_changed=if_changed)


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


def train_image_vae(
    run: ImageVAERunConfig,
    run_dir: str | Path,
    stop_after: int | None = None,
    restart: bool = False,
    if_changed: str = "error",
    report_to: list[Any] | None = None,
) -> dict[str, Any]:
    """Pretrain the small image VAE (diffusers ``AutoencoderKL``); ``final/`` is its ``save_pretrained``."""
    torch.manual_seed(run.seed)
    model = build_image_vae(run.model)
    config = image_vae_train_config(run)
    trainer = Trainer(config, run.data, run.seed, run_dir, model, None, run, report_to=report_to)
    return trainer.fit(stop_after=stop_after, restart=restart, if_changed=if_changed)
