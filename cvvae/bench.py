"""`cvvae bench`: encode and decode time, peak memory and throughput per autoencoder.

Timing: on CUDA, CUDA events around each call after ``--warmup`` untimed calls, median of ``--repeats``; on
CPU, ``time.perf_counter`` the same way. Peak memory: ``torch.cuda.max_memory_allocated`` during the encode
calls and during the decode calls (absolute, so it includes the weights and the input; the previous call's
output is freed before each call); on CPU it is ``n/a`` (PyTorch keeps no allocator peak there). A case that
runs out of memory is recorded as ``oom`` and the run goes on.

``impl`` says which implementation ran: ``fast`` or ``plain`` for CV-VAE models, whose encoder and decoder
have a fast inference path (:mod:`cvvae.models.fast`, on by default on CUDA) and the modules' own forward
(``--baseline`` adds a ``plain`` row before every ``fast`` one, in the same process); ``n/a`` for the others.

The CSV is named after the environment (``bench_<device>_torch<version>_cuda<version>.csv``) and every row
repeats the environment, so files from different machines can be concatenated.
"""

from __future__ import annotations

import argparse
import csv
import gc
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cvvae.dtypes import dtype_name, resolve_dtype
from cvvae.models.zoo import VideoAutoencoder, load_autoencoder, model_dir, parse_spec

DEFAULT_MODELS = ("cvvae", "cvvae_image", "image_vae", "svd_vae", "uniform_sampling")
COLUMNS = (
    "model",
    "spec",
    "weights",
    "dtype",
    "batch",
    "frames",
    "height",
    "width",
    "latent_shape",
    "encode_s",
    "decode_s",
    "total_s",
    "frames_per_s",
    "encode_peak_gib",
    "decode_peak_gib",
    "repeats",
    "output_finite",
    "status",
    "impl",
    "device",
    "torch",
    "cuda",
    "diffusers",
)
NOT_MEASURED = "n/a"


@dataclass(frozen=True)
class Shape:
    """A benchmark shape ``frames x height x width``, optionally restricted to some dtypes."""

    frames: int
    height: int
    width: int
    dtypes: tuple[str, ...] | None = None

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


def parse_shapes(text: str) -> list[Shape]:
    """``17x256x256,97x576x1024@bf16`` -> shapes; ``@a+b`` limits a shape to dtypes ``a`` and ``b``."""
    shapes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        size, _, only = item.partition("@")
        match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", size)
        if not match:
            raise ValueError(f"shape {item!r} is not FRAMESxHEIGHTxWIDTH[@dtype+dtype], e.g. 17x256x256@bf16")
        dtypes = tuple(dtype_name(resolve_dtype(d)) for d in only.split("+")) if only else None
        shapes.append(Shape(*(int(g) for g in match.groups()), dtypes=dtypes))
    if not shapes:
        raise ValueError("no shapes given")
    return shapes


def environment(device: torch.device) -> dict[str, str]:
    import diffusers

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu-{platform.processor() or platform.machine()}"
    return {
        "device": name,
        "torch": torch.__version__.split("+")[0],
        "cuda": (torch.version.cuda or "none") if device.type == "cuda" else "none",
        "diffusers": diffusers.__version__,
    }


def csv_name(env: dict[str, str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", env["device"]).strip("-").lower()
    return f"bench_{slug}_torch{env['torch']}_cuda{env['cuda']}.csv"


def _is_oom(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "not enough memory" in text)


def _free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def time_call(
    fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int, budget_s: float
) -> tuple[float, Any, int]:
    """Median seconds of ``fn`` over up to ``repeats`` timed calls after ``warmup`` calls, the last result and
    the number of timed calls (fewer than ``repeats`` when the first shows they would exceed ``budget_s``)."""
    result = None
    for _ in range(warmup):
        result = None  # the previous result is freed first: the peak is that of one call
        result = fn()
    times: list[float] = []
    while len(times) < repeats:
        result = None
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            result = fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
        if times[0] * repeats > budget_s:
            break
    return statistics.median(times), result, len(times)


def _peak_gib(device: torch.device) -> float | str:
    if device.type != "cuda":
        return NOT_MEASURED
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def bench_case(
    ae: VideoAutoencoder,
    shape: Shape,
    device: torch.device,
    batch: int = 1,
    warmup: int = 1,
    repeats: int = 3,
    budget_s: float = 30.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Time encode and decode of one random ``batch x 3 x shape`` video; the row's measured columns."""
    row: dict[str, Any] = {
        "batch": batch,
        "frames": shape.frames,
        "height": shape.height,
        "width": shape.width,
    }
    valid = ae.valid_num_frames(shape.frames)
    if valid != shape.frames:
        return {
            **row,
            "status": f"invalid_frames: {ae.name} takes 1+{ae.temporal_compression}k (e.g. {valid})",
        }
    try:
        return {**row, **_measure(ae, shape, device, batch, warmup, repeats, budget_s, seed)}
    except Exception as error:  # an out-of-memory case is a result, not a crash
        if not _is_oom(error):
            raise
        return {**row, "status": "oom"}
    finally:
        _free_memory(device)  # the tensors of the case are gone once _measure returns or raises


def _measure(
    ae: VideoAutoencoder,
    shape: Shape,
    device: torch.device,
    batch: int,
    warmup: int,
    repeats: int,
    budget_s: float,
    seed: int,
) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(seed)
    video = torch.rand(batch, 3, shape.frames, shape.height, shape.width, generator=generator)
    video = (video * 2 - 1).to(device=device, dtype=ae.dtype)
    _reset_peak(device)
    encode_s, latents, n_enc = time_call(lambda: ae.encode(video), device, warmup, repeats, budget_s)
    encode_peak = _peak_gib(device)
    _reset_peak(device)
    decode_s, decoded, n_dec = time_call(
        lambda: ae.decode(latents, shape.frames), device, warmup, repeats, budget_s
    )
    decode_peak = _peak_gib(device)
    total = encode_s + decode_s
    return {
        "latent_shape": "x".join(str(s) for s in latents.shape),
        "encode_s": round(encode_s, 5),
        "decode_s": round(decode_s, 5),
        "total_s": round(total, 5),
        "frames_per_s": round(batch * shape.frames / total, 2),
        "encode_peak_gib": encode_peak,
        "decode_peak_gib": decode_peak,
        "repeats": min(n_enc, n_dec),
        "output_finite": bool(torch.isfinite(decoded).all()),
        "status": "ok",
    }


def bench(
    models: Sequence[str | dict[str, Any]],
    shapes: Sequence[Shape],
    dtypes: Sequence[str],
    device: torch.device | str = "cpu",
    random_weights: bool = False,
    batch: int = 1,
    warmup: int = 1,
    repeats: int = 3,
    budget_s: float = 30.0,
    seed: int = 0,
    log: Callable[[str], None] = print,
    on_row: Callable[[list[dict[str, Any]]], None] | None = None,
    baseline: bool = False,
) -> list[dict[str, Any]]:
    """One row per model x dtype x shape (see ``COLUMNS``). Specs without a path get random weights when
    ``random_weights`` is set; otherwise a missing path raises ``FileNotFoundError`` before anything runs.
    ``on_row`` gets the rows so far after every case (to save partial results of a long run). With
    ``baseline``, models with a fast path also run every case through their plain path first."""
    device = torch.device(device)
    env = environment(device)
    specs = []
    for model in models:
        spec = parse_spec(model)
        if random_weights and not spec.get("path"):
            spec["random_weights"] = True
        if not spec.get("random_weights"):
            model_dir(spec)  # fail on a missing path before spending time on other models
        specs.append(spec)
    rows: list[dict[str, Any]] = []
    for spec, model in zip(specs, models, strict=True):
        weights = "random" if spec.get("random_weights") else str(spec.get("path"))
        for dtype in (dtype_name(resolve_dtype(d)) for d in dtypes):
            cases = [s for s in shapes if s.dtypes is None or dtype in s.dtypes]
            if not cases:
                continue
            ae = load_autoencoder(spec, device=device, dtype=dtype)
            switch = getattr(ae.module, "set_fast_path", None)
            impls: list[tuple[str, bool | None]] = [("n/a", None)]
            if switch is not None:
                impls = [("plain", False), ("fast", None)] if baseline else [(_default_impl(device), None)]
            for shape in cases:
                for impl, mode in impls:
                    if switch is not None:
                        switch(mode)
                    log(f"bench {ae.name} {dtype} {shape} {impl} ...")
                    row = bench_case(ae, shape, device, batch, warmup, repeats, budget_s, seed)
                    rows.append(
                        {
                            "model": ae.name,
                            "spec": str(model),
                            "weights": weights,
                            "dtype": dtype,
                            **row,
                            "impl": impl,
                            **env,
                        }
                    )
                    if on_row is not None:
                        on_row(rows)
            if switch is not None:
                switch(None)
            del ae
            _free_memory(device)
    return rows


def _default_impl(device: torch.device) -> str:
    """What a CV-VAE runs by default (``fast_path=None``): the fast path on CUDA, else its own forward."""
    return "fast" if device.type == "cuda" else "plain"


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    shown = (
        "model",
        "weights",
        "dtype",
        "frames",
        "height",
        "width",
        "encode_s",
        "decode_s",
        "frames_per_s",
        "encode_peak_gib",
        "decode_peak_gib",
        "status",
        "impl",
    )
    table = [[row.get(c, "") for c in shown] for row in rows]
    try:
        from tabulate import tabulate
    except ImportError:  # the GPU image may lack it; the CSV is the result, this is only the printout
        return "\n".join(" | ".join(str(v) for v in line) for line in [list(shown), *table])
    return tabulate(table, headers=shown, tablefmt="github")


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        help="zoo specs 'kind[:path][?key=value&...]' (default: the five study kinds; give paths or "
        "--random-weights)",
    )
    parser.add_argument(
        "--shapes",
        default="17x256x256",
        help="comma-separated FRAMESxHEIGHTxWIDTH, optionally @dtype[+dtype] to limit a shape "
        "(e.g. 17x256x256,97x576x1024@bf16)",
    )
    parser.add_argument("--dtypes", default="fp32", help="comma-separated: fp32, bf16, fp16")
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (cuda when available)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls; the median is reported")
    parser.add_argument(
        "--case-budget",
        type=float,
        default=30.0,
        help="seconds: fewer timed calls when the first shows the repeats would take longer",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="build the released architectures with random weights for specs without a path",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="CV-VAE models: also time every case through the plain path (impl=plain), before the default",
    )
    parser.add_argument("--out", type=Path, default=Path("results/bench"), help="folder of the CSV")
    parser.add_argument(
        "--csv", type=Path, default=None, help="CSV path (default: named after the environment)"
    )


def run(args: argparse.Namespace) -> int:
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    if args.repeats < 1 or args.warmup < 0 or args.batch_size < 1:
        raise SystemExit("--repeats and --batch-size must be >= 1 and --warmup >= 0")
    shapes = parse_shapes(args.shapes)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    path = args.csv or args.out / csv_name(environment(device))
    try:
        rows = bench(
            args.models,
            shapes,
            dtypes,
            device=device,
            random_weights=args.random_weights,
            batch=args.batch_size,
            warmup=args.warmup,
            repeats=args.repeats,
            budget_s=args.case_budget,
            seed=args.seed,
            on_row=lambda so_far: write_csv(so_far, path),
            baseline=args.baseline,
        )
    except FileNotFoundError as error:
        print(f"error: {error}")
        return 2
    write_csv(rows, path)
    print(format_table(rows))
    print(
        f"weights: {'random (architecture only)' if args.random_weights else 'as given by path'}; "
        f"peak memory {'is torch.cuda.max_memory_allocated' if device.type == 'cuda' else 'n/a on CPU'}"
    )
    print(f"wrote {path}")
    return 0
