"""Training throughput of the image VAE and the CV-VAE ``dec`` variant: samples/s, steps/s, GPU utilisation.

Two recipes are measured in one run on one GPU:

* ``baseline``: the trainer and ``config/gpu.yaml`` as of commit e369803, exported into a folder that is put
  first on ``PYTHONPATH`` (``git archive e369803 cvvae config | tar -x -C .baseline``);
* ``current``: this checkout's trainer and ``config/gpu.yaml``.

Each measurement runs in its own process on seeded synthetic data, or with ``--data`` on the embedded dataset
(the same for both recipes; each recipe's own loader decodes it), with LPIPS off
and the GAN on from step 0 (the profiles start it later; the discriminator is part of most of a run's steps),
with each recipe's own schedule: the baseline alternates autoencoder and discriminator steps, the current
recipe updates both on every step. ``samples_per_s`` counts the clips and images that trained the
autoencoder; ``steps_per_s`` counts optimisation steps of either kind. The window starts and ends right after
a logged step (where both trainers wait for the GPU), after ``--warmup`` steps.

    python scripts/bench_train.py --baseline .baseline --out results/bench/train_throughput_h200_2.11.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["model", "recipe", "batch", "samples_per_s", "steps_per_s", "gpu_util", "data"]
MODELS = ("image_vae", "cvvae_dec")


class WindowDone(Exception):
    """Raised by the clock once the measured window is over (ends the run without its final steps)."""


class GpuSampler:
    """``nvidia-smi`` utilisation samples (percent) with their times, read in a background thread."""

    def __init__(self, period_ms: int = 200) -> None:
        self.samples: list[tuple[float, float]] = []
        command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        try:
            self.proc = subprocess.Popen(
                [*command, f"-lms={period_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
        except OSError:
            self.proc = None
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.samples.append((time.perf_counter(), float(line.split(",")[0])))
            except ValueError:
                continue

    def mean(self, start: float, end: float) -> float | None:
        values = [v for t, v in self.samples if start <= t <= end]
        return sum(values) / len(values) if values else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()


class Clock:
    """Wraps the trainer's batch source: the time each step starts and the batch it trains on."""

    def __init__(self, inner: Any, first: int, last: int) -> None:
        self.inner, self.first, self.last = inner, first, last
        self.step, self.start, self.end = 0, None, None
        self.batch_sizes: dict[int, int] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __iter__(self) -> Clock:
        return self

    def __next__(self) -> dict[str, Any]:
        if self.step == self.first:
            self.start = time.perf_counter()
        if self.step == self.last:
            self.end = time.perf_counter()
            raise WindowDone
        batch = next(self.inner)
        self.batch_sizes[self.step] = int(batch["video"].shape[0])
        self.step += 1
        return batch


def build(model: str, profile: dict[str, Any], overrides: list[str], top: list[str]) -> tuple[Any, Any]:
    """(train config, trainer factory) of ``model`` with whichever ``cvvae`` is importable; ``overrides``
    are relative to the model's section, ``top`` to the profile."""
    import torch

    from cvvae.train import config as cfg
    from cvvae.train import trainer as tr

    torch.manual_seed(0)
    if model == "image_vae":
        run = cfg.resolve_image_vae_config(profile, [*top, *[f"image_vae.{o}" for o in overrides]])
        train_config = tr.image_vae_train_config(run)
        network, image_vae = tr.build_image_vae(run.model), None
    else:
        run = cfg.resolve_cvvae_config(profile, "dec", [*top, *[f"cvvae.{o}" for o in overrides]])
        image_run = cfg.resolve_image_vae_config(profile, [])
        # Random weights: throughput does not depend on what the frozen image VAE has learned.
        image_vae = tr.build_image_vae(image_run.model).eval().requires_grad_(False)
        train_config, network = run.train, tr.build_video_model(run, image_vae)

    def make(run_dir: Path) -> Any:
        return tr.Trainer(train_config, run.data, run.seed, run_dir, network, image_vae, run)

    return train_config, make


def measure(
    model: str, recipe: str, config: Path, warmup: int, steps: int, extra: list[str], data: Path | None
) -> dict[str, Any]:
    """One row: train ``model`` for ``warmup + steps`` steps and time the last ``steps``, on seeded synthetic
    clips or, with ``data``, on the embedded dataset there (decoded by each recipe's own loader)."""
    import yaml

    profile = yaml.safe_load(config.read_text())
    section = "image_vae" if model == "image_vae" else "cvvae"
    log_every = int(profile[section]["train"].get("log_every", 10))
    warmup = -(-warmup // log_every) * log_every  # windows start and end right after logged steps
    steps = -(-steps // log_every) * log_every
    overrides = [
        "train.loss.lpips=none", f"train.synthetic_data={str(data is None).lower()}", "train.val_every=0",
        "train.ckpt_every=1000000", "train.loss.disc_enabled=true", "train.loss.disc_start=0",
        f"train.steps={warmup + steps + 2}", *extra,
    ]  # fmt: skip
    top = [] if data is None else [f"data.root={data}"]
    train_config, make = build(model, profile, overrides, top)
    sampler = GpuSampler()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make(Path(tmp) / "run")
        clock = Clock(trainer.sampler, warmup + 1, warmup + steps + 1)
        trainer.sampler = clock
        with contextlib.suppress(WindowDone):
            trainer.fit()
        if hasattr(clock.inner, "shutdown"):
            clock.inner.shutdown()
        window = range(warmup + 1, warmup + steps + 1)
        samples = sum(clock.batch_sizes[s] for s in window if "generator" in trainer.phases(s))
    sampler.stop()
    elapsed = clock.end - clock.start
    util = sampler.mean(clock.start, clock.end)
    sizes = "/".join(str(s.batch_size) for s in train_config.mixture)
    return {
        "model": model, "recipe": recipe, "batch": sizes, "samples_per_s": f"{samples / elapsed:.2f}",
        "steps_per_s": f"{steps / elapsed:.3f}", "gpu_util": "" if util is None else f"{util:.0f}",
        "data": "synthetic" if data is None else "embedded",
    }  # fmt: skip


def append_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--baseline", type=Path, help="folder holding e369803's cvvae/ and config/")
    parser.add_argument("--out", type=Path, required=True, help="CSV to append rows to")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--recipes", nargs="+", default=["baseline", "current"])
    parser.add_argument("--data", type=Path, help="embedded dataset folder (default: synthetic clips)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="train.KEY=VALUE (both)")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "RECIPE"), help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # a child process: one measurement with the cvvae on PYTHONPATH
        row = measure(args.one[0], args.one[1], args.config, args.warmup, args.steps, args.extra, args.data)
        append_row(args.out, row)
        print(json.dumps(row), flush=True)
        return 0
    failures = 0
    for model in args.models:
        for recipe in args.recipes:
            # "current+KEY=VALUE[+KEY=VALUE...]" measures the current recipe with more overrides (e.g.
            # channels_last); a value cannot hold a "+".
            base, *overrides = recipe.split("+")
            folder = args.baseline if base == "baseline" else ROOT
            if folder is None:
                parser.error("--baseline is needed for the baseline recipe")
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])
            command = [
                sys.executable, __file__, "--one", model, recipe,
                "--config", str(folder / "config" / "gpu.yaml"),
                "--out", str(args.out), "--warmup", str(args.warmup), "--steps", str(args.steps),
                *(["--data", str(args.data)] if args.data else []),
                *[f"--set={e}" for e in args.extra + overrides],
            ]  # fmt: skip
            failures += subprocess.run(command, env=env, check=False).returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
